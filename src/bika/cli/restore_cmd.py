"""`bika restore`: put a backup into a database, then prove every table's rows arrived.

Exit 0 only when pg_restore reported no error and every row count matches the manifest.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from bika.cli.app import STATE, IdentityOption, PgBinOption, RepoOption, app
from bika.cli.progress import stream_progress
from bika.crypto import load_identities
from bika.errors import ConfigError, RestoreError
from bika.operations.restore import RestoreOptions, restore_backup
from bika.postgres.connection import ConnInfo
from bika.repository import Repository
from bika.storage import open_storage


@app.command("restore")
def restore(
    backup_id: Annotated[str, typer.Argument(help="backup id, a unique prefix, or 'latest'")],
    to: Annotated[str, typer.Option("--to", help="target postgresql:// URL")],
    repo: RepoOption = None,
    identity: IdentityOption = None,
    create: Annotated[bool, typer.Option("--create", help="create the target database")] = False,
    clean: Annotated[
        bool, typer.Option("--clean", help="drop the backup's objects in the target first")
    ] = False,
    jobs: Annotated[int, typer.Option("--jobs", "-j", help="parallel pg_restore jobs")] = 1,
    no_owner: Annotated[
        bool, typer.Option("--no-owner", help="skip ownership and grants (roles may be missing)")
    ] = False,
    temp_dir: Annotated[
        Path | None, typer.Option("--temp-dir", help="where --jobs puts its temporary file")
    ] = None,
    pg_bin_dir: PgBinOption = None,
) -> None:
    """Restore a backup into a database and check every table's exact row count."""
    if jobs < 1:
        raise ConfigError("--jobs must be 1 or more")
    settings = STATE.settings(repo=repo, identity=identity, pg_bin_dir=pg_bin_dir)
    repository = Repository.open(open_storage(settings.require_repo()))
    manifest = repository.manifest(repository.resolve(backup_id))
    identities = load_identities(settings.require_identity())
    target = ConnInfo.parse(to)
    options = RestoreOptions(
        jobs=jobs,
        clean=clean,
        create=create,
        no_owner=no_owner,
        pg_bin_dir=settings.pg_bin_dir,
        temp_dir=temp_dir,
    )
    STATE.say(f"restoring {manifest.id} into {target.redacted()}")
    with stream_progress("restored", "read") as progress:
        report = restore_backup(repository, manifest, target, identities, options, progress)
    table = Table(title="row counts", title_justify="left")
    for column in ("table", "backup", "restored", ""):
        table.add_column(column, justify="right" if column in ("backup", "restored") else "left")
    for check in report.checks:
        restored = "missing" if check.restored is None else f"{check.restored:,}"
        table.add_row(check.table, f"{check.expected:,}", restored, "ok" if check.ok else "DIFFERS")
    if not STATE.quiet:
        STATE.out.print(table)
    bad = [c for c in report.checks if not c.ok]
    if bad:
        first = bad[0]
        raise RestoreError(
            f"restore of {manifest.id} finished but {len(bad)} table(s) differ from the backup,"
            f" e.g. {first.table}: {first.restored if first.restored is not None else 'missing'}"
            f" rows restored, {first.expected} in the backup"
        )
    STATE.out.print(
        f"restored {manifest.id}: {len(report.checks)} tables, all row counts match"
        f" ({report.seconds:.1f}s)"
    )
