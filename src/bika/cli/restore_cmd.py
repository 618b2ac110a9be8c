"""`bika restore`: put a backup (or part of it) into a database or a file, after a preflight,
then prove every restored table's rows arrived. Exit 0 only when all of that holds.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import (
    BarColumn,
    Progress,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

from bika.cli.app import STATE, IdentityOption, PgBinOption, RepoOption, app, open_repository
from bika.crypto import load_identities
from bika.errors import ConfigError, RestoreError
from bika.operations.restore import (
    DATA_KINDS,
    Finding,
    PreflightRefused,
    RestoreFailed,
    RestoreOptions,
    RestorePlan,
    RestoreStep,
    StepProgress,
    export_backup,
    plan_restore,
    restore_backup,
)
from bika.postgres.connection import ConnInfo
from bika.repository import Manifest, Repository
from bika.stream import Progress as BytesProgress
from bika.units import size

_MARKS = {"ok": "[green]ok[/]   ", "warn": "[yellow]warn[/] ", "error": "[red]error[/]"}


@app.command("restore")
def restore(
    backup_id: Annotated[
        str | None, typer.Argument(help="backup id or a unique prefix (or use --latest/--before)")
    ] = None,
    to: Annotated[str | None, typer.Option("--to", help="target postgresql:// URL")] = None,
    to_file: Annotated[
        Path | None,
        typer.Option(
            "--to-file", help="write out.sql (plain SQL) or out.dump (custom archive) instead"
        ),
    ] = None,
    latest: Annotated[bool, typer.Option("--latest", help="the newest backup")] = False,
    before: Annotated[
        str | None,
        typer.Option(
            "--before", help='newest backup started before this UTC time, "2026-11-20 14:00"'
        ),
    ] = None,
    repo: RepoOption = None,
    identity: IdentityOption = None,
    create: Annotated[bool, typer.Option("--create", help="create the target database")] = False,
    clean: Annotated[
        bool, typer.Option("--clean", help="drop the backup's objects in the target first")
    ] = False,
    force: Annotated[
        bool,
        typer.Option("--force", help="restore into an older server / with too little free space"),
    ] = False,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="print the plan and the preflight; change nothing")
    ] = False,
    schema: Annotated[
        list[str] | None, typer.Option("--schema", help="restore only this schema (repeatable)")
    ] = None,
    table: Annotated[
        list[str] | None,
        typer.Option("--table", help="restore only this table, with its sequences (repeatable)"),
    ] = None,
    exclude_table: Annotated[
        list[str] | None, typer.Option("--exclude-table", help="leave this table out (repeatable)")
    ] = None,
    schema_only: Annotated[
        bool, typer.Option("--schema-only", help="definitions only, no rows")
    ] = False,
    data_only: Annotated[
        bool, typer.Option("--data-only", help="rows only, into existing tables")
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
    """Restore a backup into a database (or a file) and check every table's exact row count."""
    if (to is None) == (to_file is None):
        raise ConfigError("give exactly one of --to postgresql://… and --to-file FILE")
    if sum((backup_id is not None, latest, before is not None)) != 1:
        raise ConfigError("name the backup: give an id, --latest, or --before TIME")
    settings = STATE.settings(repo=repo, identity=identity, pg_bin_dir=pg_bin_dir)
    repository = open_repository(settings)
    manifest = repository.manifest(_pick(repository, backup_id, latest, before))
    identities = load_identities(settings.require_identity())
    options = RestoreOptions(
        jobs=jobs,
        clean=clean,
        create=create,
        no_owner=no_owner,
        pg_bin_dir=settings.pg_bin_dir,
        temp_dir=temp_dir,
        force=force,
        dry_run=dry_run,
        schemas=schema or [],
        tables=table or [],
        exclude_tables=exclude_table or [],
        schema_only=schema_only,
        data_only=data_only,
    )
    destination: ConnInfo | Path = ConnInfo.parse(to) if to is not None else Path(str(to_file))
    shown = destination.redacted() if isinstance(destination, ConnInfo) else str(destination)
    STATE.say(f"{'planning' if dry_run else 'restoring'} {manifest.id} into {shown}")
    plan = plan_restore(repository, manifest, destination, identities, options)
    if dry_run:
        _print_plan(manifest, plan, options)
        if plan.blocked:
            raise PreflightRefused(plan)
        return
    for finding in plan.findings:
        if finding.level == "warn":
            STATE.say(f"warning: {finding.message}")
    if plan.blocked:
        raise PreflightRefused(plan)
    with _phases(manifest) as (on_bytes, on_step):
        try:
            if isinstance(destination, Path):
                exported = export_backup(
                    repository,
                    manifest,
                    destination,
                    identities,
                    options,
                    on_bytes,
                    plan=plan,
                    on_step=on_step,
                )
            else:
                report = restore_backup(
                    repository,
                    manifest,
                    destination,
                    identities,
                    options,
                    on_bytes,
                    plan=plan,
                    on_step=on_step,
                )
        except RestoreFailed as exc:
            for error in exc.errors:
                STATE.err.print(f"  [red]error[/] {error}", markup=True, highlight=False)
            raise
    if isinstance(destination, Path):
        STATE.out.print(
            f"wrote {exported.path} ({exported.format}, {size(exported.size)}, mode 0600)"
            f" from {manifest.id} in {exported.seconds:.1f}s"
        )
        return
    table_view = Table(title="restored tables", title_justify="left")
    for column in ("table", "backup", "restored", ""):
        table_view.add_column(
            column, justify="right" if column in ("backup", "restored") else "left"
        )
    for check in report.checks:
        if not check.rows_compared:
            table_view.add_row(
                check.table,
                "",
                "exists" if check.ok else "missing",
                "ok" if check.ok else "MISSING",
            )
            continue
        restored = "missing" if check.restored is None else f"{check.restored:,}"
        table_view.add_row(
            check.table, f"{check.expected:,}", restored, "ok" if check.ok else "DIFFERS"
        )
    if not STATE.quiet:
        STATE.out.print(table_view)
    bad = [c for c in report.checks if not c.ok]
    if bad:
        first = bad[0]
        raise RestoreError(
            f"restore of {manifest.id} finished but {len(bad)} table(s) differ from the backup,"
            f" e.g. {first.table}: {first.restored if first.restored is not None else 'missing'}"
            f" rows restored, {first.expected} in the backup"
        )
    what = "tables exist" if schema_only else "row counts match"
    STATE.out.print(
        f"restored {manifest.id}: {len(report.checks)} tables, all {what} ({report.seconds:.1f}s)"
    )


def _pick(repository: Repository, backup_id: str | None, latest: bool, before: str | None) -> str:
    if latest:
        return repository.latest()
    if before is not None:
        return repository.before(parse_time(before))
    assert backup_id is not None
    return repository.resolve(backup_id)


def parse_time(text: str) -> datetime:
    """ "2026-11-20 14:00", "2026-11-20T14:00:00Z", "2026-11-20": UTC unless an offset says."""
    try:
        when = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ConfigError(
            f'--before {text!r} is not a time; write it as "2026-11-20 14:00" (UTC)'
        ) from None
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)


def _print_plan(manifest: Manifest, plan: RestorePlan, options: RestoreOptions) -> None:
    out = STATE.out
    out.print(
        f"plan: {manifest.id} ({manifest.kind}, started"
        f" {manifest.started_at:%Y-%m-%d %H:%M:%S} UTC) into {plan.destination}"
        " — dry run, nothing changes"
    )
    out.print("preflight:")
    for finding in plan.findings:
        _print_finding(finding)
    if plan.create_database and plan.facts is not None:
        out.print(f"create database {plan.facts.database!r}")
    drops = plan.drops(options)
    if drops:
        out.print(
            f"drop first (--clean), {len(drops)} that exist in the target:"
            f" {', '.join(e.name for e in drops)}"
        )
    creates = plan.creates
    if creates:
        view = Table(title=f"create: {len(creates)} entries", title_justify="left")
        for column in ("id", "type", "schema", "name", "owner"):
            view.add_column(column)
        for entry in creates:
            view.add_row(
                str(entry.dump_id), entry.desc, entry.namespace or "-", entry.tag, entry.owner or ""
            )
        out.print(view)
    if plan.tables or plan.loads:
        rows = sum(t.rows for t in plan.tables)
        view = Table(title=f"load: {len(plan.tables)} tables, {rows:,} rows", title_justify="left")
        view.add_column("table")
        view.add_column("rows", justify="right")
        for table in plan.tables:
            view.add_row(table.qualified, f"{table.rows:,}")
        others = [e for e in plan.loads if e.desc in DATA_KINDS and e.desc != "TABLE DATA"]
        for entry in others:
            view.add_row(entry.name, "")
        out.print(view)
    for entry, why in plan.selection.left_out:
        out.print(f"left out: {entry.name} — {why}")


def _print_finding(finding: Finding) -> None:
    STATE.out.print(f"  {_MARKS[finding.level]} {finding.message}", markup=True, highlight=False)


@contextmanager
def _phases(manifest: Manifest) -> Iterator[tuple[BytesProgress | None, StepProgress | None]]:
    """Two bars on a terminal: bytes decrypted, then (or meanwhile) pg_restore's entries."""
    if not STATE.interactive:
        yield None, None
        return
    plain = manifest.artifacts["database"].plain_size
    with Progress(
        TextColumn("{task.description:<12}"),
        BarColumn(),
        TaskProgressColumn(),
        TextColumn("{task.fields[detail]}"),
        TimeElapsedColumn(),
        console=STATE.err,
        transient=True,
    ) as bars:
        read = bars.add_task("decrypt", total=plain, detail="")
        load = bars.add_task("pg_restore", total=None, detail="waiting for the archive")

        def on_bytes(done: int, stored: int) -> None:
            bars.update(read, completed=done, detail=f"{size(done)} of {size(plain)}")

        def on_step(step: RestoreStep) -> None:
            bars.update(load, total=step.total, completed=step.done, detail=step.doing[:60])

        yield on_bytes, on_step
