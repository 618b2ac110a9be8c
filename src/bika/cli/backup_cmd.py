"""`bika backup`: dump a database into the repository and print the new backup's id.

Nothing is listed until the manifest is written; a failure leaves no visible backup.
"""

from __future__ import annotations

from typing import Annotated

import typer

from bika.cli.app import STATE, PgBinOption, RepoOption, app, open_repository
from bika.cli.progress import stream_progress
from bika.errors import ConfigError
from bika.operations.backup import BackupOptions, take_backup
from bika.postgres.connection import ConnInfo
from bika.repository.manifest import KINDS
from bika.units import size


@app.command("backup")
def backup(
    repo: RepoOption = None,
    db: Annotated[
        str | None,
        typer.Option("--db", help="postgresql:// URL [env: BIKA_DATABASE_URL, DATABASE_URL]"),
    ] = None,
    kind: Annotated[
        str, typer.Option("--kind", help="manual, daily, weekly, monthly, pre-migration")
    ] = "manual",
    label: Annotated[
        str | None, typer.Option("--label", help="free text kept in the manifest")
    ] = None,
    compression_level: Annotated[
        int | None, typer.Option("--compression-level", help="zstd level 1-22 (default 3)")
    ] = None,
    pg_bin_dir: PgBinOption = None,
) -> None:
    """Back up a database: pg_dump → zstd → age → repository."""
    if kind not in KINDS:
        raise ConfigError(f"--kind {kind!r} is not one of {', '.join(KINDS)}")
    settings = STATE.settings(
        repo=repo, database_url=db, compression_level=compression_level, pg_bin_dir=pg_bin_dir
    )
    repository = open_repository(settings)
    conn = ConnInfo.parse(settings.require_database_url())
    options = BackupOptions(
        kind=kind,
        label=label,
        compression_level=settings.compression_level,
        compression_threads=settings.compression_threads,
        pg_bin_dir=settings.pg_bin_dir,
        storage_class=settings.storage.storage_class(kind),
    )
    STATE.say(f"backing up {conn.redacted()} into {repository.url}")
    with stream_progress("dumped", "stored") as progress:
        manifest = take_backup(repository, conn, options, progress)
    if manifest.roles.status == "skipped":
        STATE.say(f"note: roles not saved: {manifest.roles.detail}")
    seconds = (manifest.finished_at - manifest.started_at).total_seconds()
    STATE.say(
        f"backup {manifest.id}: {len(manifest.tables)} tables, {manifest.total_rows} rows,"
        f" {size(manifest.plain_size)} dumped → {size(manifest.stored_size)} stored"
        f" in {seconds:.1f}s"
    )
    STATE.out.print(manifest.id)
