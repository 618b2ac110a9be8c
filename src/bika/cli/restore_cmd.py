"""`bika restore`: put a backup (or part of it) into a database or a file, after a preflight,
then prove every restored table's rows arrived. Exit 0 only when all of that holds.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import click
from rich.progress import (
    BarColumn,
    Progress,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
)
from rich.text import Text

from bika.cli import json_shapes
from bika.cli import supabase_restore_view as supabase
from bika.cli.app import (
    STATE,
    app,
    identity_option,
    json_option,
    logged,
    note_backups,
    open_repository,
    pg_bin_option,
    repo_option,
)
from bika.cli.physical_cmd import physical_restore_options
from bika.cli.render import Cell, Column, cell, print_json, print_table, text
from bika.crypto import load_identities
from bika.errors import ConfigError, RestoreFailed
from bika.findings import Finding
from bika.operations.restore import (
    PreflightRefused,
    RestoreOptions,
    RestorePlan,
    RowsDiffer,
    TableCheck,
    export_backup,
    plan_restore,
    restore_backup,
)
from bika.postgres.connection import ConnInfo
from bika.postgres.pg_restore import RestoreStep, StepProgress
from bika.postgres.toc import DATA_KINDS
from bika.repository import Manifest, Repository
from bika.stream import Progress as BytesProgress
from bika.units import count, size

_MARKS = {"ok": ("ok   ", "green"), "warn": ("warn ", "yellow"), "error": ("error", "red")}


@app.command("restore")
@click.argument("backup_id", required=False, metavar="[ID]")
@click.option("--to", metavar="URL", help="target postgresql:// URL")
@click.option(
    "--to-file",
    type=click.Path(path_type=Path),
    metavar="FILE",
    help="write FILE.sql (plain SQL) or FILE.dump (custom archive) instead",
)
@click.option("--latest", is_flag=True, help="the newest backup")
@click.option(
    "--before",
    metavar="TIME",
    help='the newest backup started before this UTC time, e.g. "2026-11-20 14:00"',
)
@repo_option
@identity_option
@click.option("--create", is_flag=True, help="create the target database")
@click.option("--clean", is_flag=True, help="drop the backup's objects in the target first")
@click.option(
    "--force", is_flag=True, help="restore into an older server / with too little free space"
)
@click.option("--dry-run", is_flag=True, help="print the plan and the preflight; change nothing")
@click.option(
    "--schema", multiple=True, metavar="NAME", help="restore only this schema (repeatable)"
)
@click.option(
    "--table",
    multiple=True,
    metavar="SCHEMA.NAME",
    help="restore only this table, with its sequences (repeatable)",
)
@click.option(
    "--exclude-table",
    multiple=True,
    metavar="SCHEMA.NAME",
    help="leave this table out (repeatable)",
)
@click.option("--schema-only", is_flag=True, help="definitions only, no rows")
@click.option("--data-only", is_flag=True, help="rows only, into existing tables")
@click.option(
    "--jobs",
    "-j",
    type=click.IntRange(min=1),
    default=1,
    metavar="N",
    help="parallel pg_restore jobs",
)
@click.option("--no-owner", is_flag=True, help="skip ownership and grants (roles may be missing)")
@click.option(
    "--temp-dir",
    type=click.Path(path_type=Path),
    metavar="DIR",
    help="where --jobs puts its temporary file",
)
@click.option(
    "--profile",
    type=click.Choice(["postgres", "supabase"]),
    help="supabase: into a Supabase project, only the user's objects (default: the backup's)",
)
@pg_bin_option
@click.option(
    "--artifact",
    type=click.Choice(("functions", "env")),
    help="restore a project artifact instead: functions (--to-dir), env (--to-file)",
)
@click.option(
    "--to-dir",
    type=click.Path(path_type=Path, file_okay=False),
    metavar="DIR",
    help="--artifact functions: unpack into DIR (new or empty); --physical: the new data"
    " directory (empty or absent)",
)
@physical_restore_options
@logged("restore")
@json_option
def restore(
    backup_id: str | None,
    to: str | None,
    to_file: Path | None,
    latest: bool,
    before: str | None,
    repo: str | None,
    identity: Path | None,
    create: bool,
    clean: bool,
    force: bool,
    dry_run: bool,
    schema: tuple[str, ...],
    table: tuple[str, ...],
    exclude_table: tuple[str, ...],
    schema_only: bool,
    data_only: bool,
    jobs: int,
    no_owner: bool,
    temp_dir: Path | None,
    profile: str | None,
    pg_bin_dir: str | None,
    artifact: str | None,
    to_dir: Path | None,
    as_json: bool,
) -> None:
    """Restore a backup into a database (or a file) and check every table's exact row count."""
    if artifact is not None or to_dir is not None:
        if to is not None:
            raise ConfigError("--artifact writes files: give --to-dir or --to-file, not --to")
        _restore_artifact(
            backup_id, latest, before, repo, identity, artifact, to_dir, to_file, as_json
        )
        return
    if (to is None) == (to_file is None):
        raise ConfigError("give exactly one of --to postgresql://… and --to-file FILE")
    named = sum((backup_id is not None, latest, before is not None))
    if named == 0:
        raise ConfigError("name the backup: give an id, --latest, or --before TIME")
    if named > 1:
        raise ConfigError(
            "name the backup once: give an id, --latest or --before TIME, not several"
        )
    settings = STATE.settings(repo=repo, identity=identity, pg_bin_dir=pg_bin_dir)
    repository = open_repository(settings)
    manifest = repository.manifest(_pick(repository, backup_id, latest, before))
    note_backups(manifest.id)
    identities = load_identities(settings.require_identity())
    if (profile or _profile(settings.profile, manifest)) == "supabase":
        supabase.refuse_options(
            to_file=to_file, create=create, force=force, dry_run=dry_run, schema=schema,
            table=table, exclude_table=exclude_table, schema_only=schema_only,
            data_only=data_only, jobs=jobs > 1, no_owner=no_owner,
        )  # fmt: skip
        assert to is not None
        project = ConnInfo.parse(to)
        note_backups(to="database", target_host_hash=project.host_hash(), profile="supabase")
        supabase.restore_supabase(
            repository, manifest, project, identities, clean=clean,
            pg_bin_dir=settings.pg_bin_dir, as_json=as_json,
        )  # fmt: skip
        return
    options = RestoreOptions(
        jobs=jobs,
        clean=clean,
        create=create,
        no_owner=no_owner,
        pg_bin_dir=settings.pg_bin_dir,
        temp_dir=temp_dir,
        force=force,
        dry_run=dry_run,
        schemas=list(schema),
        tables=list(table),
        exclude_tables=list(exclude_table),
        schema_only=schema_only,
        data_only=data_only,
    )
    destination: ConnInfo | Path = ConnInfo.parse(to) if to is not None else Path(str(to_file))
    shown = destination.redacted() if isinstance(destination, ConnInfo) else str(destination)
    note_backups(
        to="file" if isinstance(destination, Path) else "database",
        target_host_hash=destination.host_hash() if isinstance(destination, ConnInfo) else None,
        dry_run=dry_run,
    )
    STATE.say(f"{'planning' if dry_run else 'restoring'} {manifest.id} into {shown}")
    plan = plan_restore(repository, manifest, destination, identities, options)
    if dry_run:
        if as_json:
            print_json(json_shapes.restore_result(manifest, shown, plan.findings, None, True))
        else:
            _print_plan(manifest, plan, options)
        if plan.blocked:
            raise PreflightRefused(plan)
        return
    for finding in plan.findings:
        if finding.level == "warn":
            STATE.say(f"warning: {finding.message}")
    if plan.blocked:
        if as_json:
            print_json(json_shapes.restore_result(manifest, shown, plan.findings, None))
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
                STATE.err.print(Text.assemble("  ", cell("error", "red"), " ", cell(error)))
            raise
        except RowsDiffer as exc:
            if as_json:
                print_json(json_shapes.restore_result(manifest, shown, plan.findings, exc.report))
            elif not STATE.quiet:
                print_checks(exc.report.checks, "restored tables")
            raise
    result = exported if isinstance(destination, Path) else report
    if as_json:
        print_json(json_shapes.restore_result(manifest, shown, plan.findings, result))
    if isinstance(destination, Path):
        if as_json:
            return
        STATE.out.print(
            f"wrote {exported.path} ({exported.format}, {size(exported.size)}, mode 0600)"
            f" from {manifest.id} in {exported.seconds:.1f}s"
        )
        return
    if as_json:
        return
    if not STATE.quiet:
        print_checks(report.checks, "restored tables")
    what = "tables exist" if schema_only else "row counts match"
    STATE.out.print(
        f"restored {manifest.id}: {len(report.checks)} tables, all {what} ({report.seconds:.1f}s)"
    )


def print_checks(checks: list[TableCheck], title: str) -> None:
    """Every restored table's rows next to the backup's (also shown by `bika demo`)."""
    rows = [
        [check.table, "", "exists" if check.ok else "missing", "ok" if check.ok else "MISSING"]
        if not check.rows_compared
        else [
            check.table,
            count(check.expected),
            "missing" if check.restored is None else count(check.restored),
            "ok" if check.ok else "DIFFERS",
        ]
        for check in checks
    ]
    columns = [Column("table"), Column("backup", right=True), Column("restored", right=True)]
    print_table(STATE.out, [*columns, Column("")], rows, title=title)


def _restore_artifact(
    backup_id: str | None,
    latest: bool,
    before: str | None,
    repo: str | None,
    identity: Path | None,
    artifact: str | None,
    to_dir: Path | None,
    to_file: Path | None,
    as_json: bool,
) -> None:
    """--artifact functions|env: a project artifact (cli/supabase_cmd.py), not the database."""
    from bika.cli.supabase_cmd import restore_artifact

    if artifact is None:
        raise ConfigError("--to-dir goes with --artifact functions")
    if sum((backup_id is not None, latest, before is not None)) != 1:
        raise ConfigError("name the backup once: give an id, --latest, or --before TIME")
    settings = STATE.settings(repo=repo, identity=identity)
    repository = open_repository(settings)
    manifest = repository.manifest(_pick(repository, backup_id, latest, before))
    note_backups(manifest.id, to=artifact)
    identities = load_identities(settings.require_identity())
    unpacked = restore_artifact(repository, manifest, identities, artifact, to_dir, to_file)
    if as_json:
        print_json(json_shapes.artifact_restore_result(manifest.id, unpacked))


def _profile(setting: str, manifest: Manifest) -> str:
    """The profile a restore takes when --profile is not given: the setting's, else the
    backup's."""
    return setting if setting != "auto" else manifest.profile


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
        print_table(
            out,
            [
                Column("id", right=True),
                Column("type"),
                Column("schema"),
                Column("name"),
                Column("owner"),
            ],
            [[str(e.dump_id), e.desc, e.namespace or "-", e.tag, e.owner or ""] for e in creates],
            title=f"create: {len(creates)} entries",
        )
    if plan.tables or plan.loads:
        loaded = count(sum(t.rows for t in plan.tables))
        rows: list[list[Cell]] = [[t.qualified, count(t.rows)] for t in plan.tables]
        others = [e for e in plan.loads if e.desc in DATA_KINDS and e.desc != "TABLE DATA"]
        rows += [[entry.name, ""] for entry in others]
        print_table(
            out,
            [Column("table"), Column("rows", right=True)],
            rows,
            title=f"load: {len(plan.tables)} tables, {loaded} rows",
        )
    for entry, why in plan.selection.left_out:
        out.print(f"left out: {entry.name} — {why}")


def _print_finding(finding: Finding) -> None:
    mark, style = _MARKS[finding.level]
    STATE.out.print(Text.assemble("  ", cell(mark, style), " ", cell(finding.message)))


@contextmanager
def _phases(manifest: Manifest) -> Iterator[tuple[BytesProgress | None, StepProgress | None]]:
    """Two bars on a terminal: bytes decrypted, then (or meanwhile) pg_restore's entries."""
    if not STATE.interactive:
        yield None, None
        return
    plain = manifest.artifacts["database"].plain_size
    with Progress(
        TextColumn("{task.description:<12}", markup=False),
        BarColumn(),
        TaskProgressColumn(),
        # pg_restore names the table it loads, which may look like markup or hold escapes
        TextColumn("{task.fields[detail]}", markup=False),
        TimeElapsedColumn(),
        console=STATE.err,
        transient=True,
    ) as bars:
        read = bars.add_task("decrypt", total=plain, detail="")
        load = bars.add_task("pg_restore", total=None, detail="waiting for the archive")

        def on_bytes(done: int, stored: int) -> None:
            bars.update(read, completed=done, detail=f"{size(done)} of {size(plain)}")

        def on_step(step: RestoreStep) -> None:
            bars.update(load, total=step.total, completed=step.done, detail=text(step.doing)[:60])

        yield on_bytes, on_step
