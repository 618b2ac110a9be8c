"""`bika backup`: dump a database into the repository and print the new backup's id.

Nothing is listed until the manifest is written; a failure leaves no visible backup.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import click

from bika.cli import json_shapes
from bika.cli.app import (
    STATE,
    app,
    db_option,
    json_option,
    logged,
    note_backups,
    open_repository,
    pg_bin_option,
    repo_option,
)
from bika.cli.progress import stream_progress
from bika.cli.render import print_json
from bika.cli.supabase_cmd import project_extras, reachable_database
from bika.operations.backup import BackupOptions, expected_dump_size, take_backup
from bika.postgres.connection import ConnInfo
from bika.repository import Manifest, Repository
from bika.repository.manifest import KINDS
from bika.units import count, size

F = TypeVar("F", bound=Callable[..., Any])


def backup_options(default_kind: str) -> Callable[[F], F]:
    """bika backup's options (--repo, --db, --kind, --label, --compression-level, --pg-bin-dir
    and the scope), shared with `bika run`, which takes the same backup before its command."""

    def decorate(func: F) -> F:
        for option in reversed(
            [
                repo_option,
                db_option,
                click.option(
                    "--kind",
                    type=click.Choice(KINDS),
                    default=default_kind,
                    show_default=True,
                    help="what the backup is for; kinds have their own retention",
                ),
                click.option("--label", metavar="TEXT", help="free text kept in the manifest"),
                click.option(
                    "--compression-level",
                    type=click.IntRange(1, 22),
                    metavar="1-22",
                    help="zstd level (default 3) [env: BIKA_COMPRESSION_LEVEL]",
                ),
                pg_bin_option,
                click.option(
                    "--schema",
                    multiple=True,
                    metavar="PATTERN",
                    help="only schemas matching (pg_dump -n)",
                ),
                click.option(
                    "--exclude-schema",
                    multiple=True,
                    metavar="PATTERN",
                    help="leave schemas out (pg_dump -N)",
                ),
                click.option(
                    "--table",
                    multiple=True,
                    metavar="PATTERN",
                    help="only tables matching (pg_dump -t)",
                ),
                click.option(
                    "--exclude-table",
                    multiple=True,
                    metavar="PATTERN",
                    help="leave tables out (pg_dump -T)",
                ),
                click.option(
                    "--exclude-table-data",
                    multiple=True,
                    metavar="PATTERN",
                    help="keep these tables' definitions, not their rows",
                ),
            ]
        ):
            func = option(func)
        return func

    return decorate


@app.command("backup")
@backup_options(default_kind="manual")
@click.option(
    "--physical",
    is_flag=True,
    help="the whole cluster with pg_basebackup, for point-in-time recovery (needs"
    " archive_command = 'bika wal push %p')",
)
@click.option(
    "--incremental",
    is_flag=True,
    help="with --physical: only what changed since the newest physical backup (PostgreSQL 17+"
    " with summarize_wal = on); restore combines the chain",
)
@json_option
def backup(as_json: bool, physical: bool, incremental: bool, **options: Any) -> None:
    """Back up a database: pg_dump → zstd → age → repository.

    The scope options are repeatable, take pg_dump's patterns (also [backup] in bika.toml) and
    are recorded in the manifest, so that drills and monitoring know what was left out."""
    if physical:
        _physical(as_json, incremental=incremental, **options)
        return
    if incremental:
        raise click.UsageError("--incremental needs --physical (logical backups are whole)")
    repository, manifest = backed_up(**options)
    if as_json:
        print_json(json_shapes.backup_result(repository, manifest))
    else:
        STATE.out.print(manifest.id)


def _physical(as_json: bool, **options: Any) -> None:
    from bika.cli.physical_cmd import physical_backup

    scoped = [name for name in _SCOPE if options.get(name)]
    if scoped or options.get("kind") != "manual" or options.get("compression_level"):
        given = (scoped or ["kind" if options.get("kind") != "manual" else "compression_level"])[0]
        raise click.UsageError(
            f"--physical backs up the whole cluster; --{given.replace('_', '-')} is for"
            " logical backups"
        )
    repository, manifest = logged("backup")(physical_backup)(**options)
    if as_json:
        print_json(json_shapes.physical_backup_result(repository, manifest))
    else:
        STATE.out.print(manifest.id)


_SCOPE = ("schema", "exclude_schema", "table", "exclude_table", "exclude_table_data")


@logged("backup")
def backed_up(
    repo: str | None,
    db: str | None,
    kind: str,
    label: str | None,
    compression_level: int | None,
    pg_bin_dir: str | None,
    schema: tuple[str, ...],
    exclude_schema: tuple[str, ...],
    table: tuple[str, ...],
    exclude_table: tuple[str, ...],
    exclude_table_data: tuple[str, ...],
) -> tuple[Repository, Manifest]:
    """Take one backup as `bika backup` does (progress, notes, run log, heartbeat and alert)."""
    settings = STATE.settings(
        repo=repo,
        database_url=db,
        compression_level=compression_level,
        pg_bin_dir=pg_bin_dir,
        **{
            "backup.schema": list(schema),
            "backup.exclude_schema": list(exclude_schema),
            "backup.table": list(table),
            "backup.exclude_table": list(exclude_table),
            "backup.exclude_table_data": list(exclude_table_data),
        },
    )
    repository = open_repository(settings)
    conn = reachable_database(settings, ConnInfo.parse(settings.require_database_url()))
    options = BackupOptions(
        kind=kind,
        label=label,
        compression_level=settings.compression_level,
        compression_threads=settings.compression_threads,
        pg_bin_dir=settings.pg_bin_dir,
        storage_class=settings.storage.storage_class(kind),
        scope=settings.backup.scope(),
        profile=settings.profile,
        role_classes=settings.storage.classes,
        extras=project_extras(settings),
    )
    STATE.say(f"backing up {conn.redacted()} into {repository.url}")
    expected = expected_dump_size(repository, conn) if STATE.interactive else None
    with stream_progress("dumped", "stored", expected_plain=expected) as progress:
        manifest = take_backup(repository, conn, options, progress)
    if manifest.profile == "supabase":
        STATE.say("profile: supabase (the project's own schemas, data and custom roles)")
    elif not manifest.scope.whole:
        STATE.say(f"scope: {' '.join(manifest.scope.options())}")
    note_backups(manifest.id, kind=kind, stored_bytes=manifest.stored_size)
    if manifest.functions is not None:
        where = manifest.functions.commit or "the folder"
        STATE.say(f"edge functions: {manifest.functions.files} files from {where}")
    if manifest.secrets is not None:
        STATE.say(f"secrets: {len(manifest.secrets.entries)} values kept (encrypted)")
    if manifest.roles.status == "skipped":
        STATE.say(f"note: roles not saved: {manifest.roles.detail}")
    seconds = (manifest.finished_at - manifest.started_at).total_seconds()
    STATE.say(
        f"backup {manifest.id}: {count(len(manifest.tables))} tables,"
        f" {count(manifest.total_rows)} rows,"
        f" {size(manifest.plain_size)} dumped → {size(manifest.stored_size)} stored"
        f" in {seconds:.1f}s",
        backup_id=manifest.id,
    )
    return repository, manifest
