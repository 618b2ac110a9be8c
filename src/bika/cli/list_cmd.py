"""`bika list` and `bika show`: what the repository holds, read from manifests only.

Neither needs a key. --json output is stable and documented in docs/FORMAT.md.
"""

from __future__ import annotations

from datetime import datetime

import click

from bika.cli import json_shapes
from bika.cli.app import STATE, app, json_option, open_repository, repo_option
from bika.cli.render import Column, print_json, print_table
from bika.errors import BackupNotFound
from bika.repository import DamagedBackup, Manifest, Repository, physical
from bika.repository.drills import DrillRecord, drill_history, latest_drills
from bika.repository.physical import PhysicalDrill, PhysicalManifest
from bika.units import count, size


def proven(drill: DrillRecord | None) -> str:
    """The "proven" column: when the newest drill passed (✓) or failed (✗), or never."""
    if drill is None:
        return "never"
    return proven_at(drill.passed, drill.finished_at)


def proven_at(passed: bool, when: datetime) -> str:
    return f"{'✓' if passed else '✗'} {when:%Y-%m-%d}"


def _open(repo: str | None) -> Repository:
    return open_repository(STATE.settings(repo=repo))


@app.command("list")
@repo_option
@json_option
def list_backups(repo: str | None, as_json: bool) -> None:
    """List the repository's backups, oldest first."""
    repository = _open(repo)
    manifests, damaged = repository.scan()
    drills = latest_drills(repository)
    bases, base_drills = physical.scan_with_drills(repository)
    if as_json:
        print_json(
            json_shapes.list_result(repository, manifests, drills, damaged, bases, base_drills)
        )
        return
    if manifests or damaged or not bases:
        print_backups(repository, manifests, drills, damaged)
    if bases:
        print_physical(repository, bases, base_drills)


def print_backups(
    repository: Repository,
    manifests: list[Manifest] | None = None,
    drills: dict[str, DrillRecord] | None = None,
    damaged: list[DamagedBackup] | None = None,
) -> None:
    """The human table of `bika list` (also shown at the end of `bika demo`)."""
    if manifests is None:
        manifests, damaged = repository.scan()
    drills = latest_drills(repository) if drills is None else drills
    for bad in damaged or []:
        STATE.fail(f"DAMAGED {bad.backup_id}: {bad.reason}", backup_id=bad.backup_id)
    if not manifests and not damaged:
        STATE.say(f"{repository.url} holds no backups yet")
        return
    # every id whole, as restic shows its snapshot ids: it is what show and restore take
    columns = [
        Column("id"),
        Column("kind"),
        Column("started (UTC)"),
        Column("took", right=True),
        Column("database"),
        Column("tables", right=True),
        Column("rows", right=True),
        Column("dumped", right=True),
        Column("stored", right=True),
        Column("proven"),
        Column("label"),
    ]
    rows = [
        [
            m.id,
            m.kind,
            f"{m.started_at:%Y-%m-%d %H:%M:%S}",
            f"{(m.finished_at - m.started_at).total_seconds():.1f}s",
            m.source.database,
            count(len(m.tables)),
            count(m.total_rows),
            size(m.plain_size),
            size(m.stored_size),
            proven(drills.get(m.id)),
            m.label or "",
        ]
        for m in manifests
    ]
    print_table(STATE.out, columns, rows, title=f"backups in {repository.url}")


def print_physical(
    repository: Repository,
    bases: list[PhysicalManifest],
    drills: dict[str, PhysicalDrill],
) -> None:
    """The physical base backups, as a table of their own: they restore with restore --physical
    to a point in time, and an incremental names the backup it builds on."""
    columns = [
        Column("id"),
        Column("kind"),
        Column("started (UTC)"),
        Column("took", right=True),
        Column("PostgreSQL"),
        Column("tli", right=True),
        Column("LSN range"),
        Column("data", right=True),
        Column("stored", right=True),
        Column("proven"),
        Column("label"),
    ]
    rows = []
    for m in bases:
        drill = drills.get(m.id)
        kind = f"incremental of {m.parent}" if m.parent else m.kind
        rows.append(
            [
                m.id,
                kind,
                f"{m.started_at:%Y-%m-%d %H:%M:%S}",
                f"{(m.finished_at - m.started_at).total_seconds():.1f}s",
                m.source.server_version,
                str(m.wal.timeline),
                f"{m.wal.start_lsn}–{m.wal.stop_lsn}",
                size(m.artifacts["base"].plain_size),
                size(sum(a.stored_size for a in m.artifacts.values())),
                "never" if drill is None else proven_at(drill.passed, drill.finished_at),
                m.label or "",
            ]
        )
    print_table(STATE.out, columns, rows, title=f"physical backups in {repository.url}")


@app.command("show")
@click.argument("backup_id", metavar="ID")
@repo_option
@json_option
def show(backup_id: str, repo: str | None, as_json: bool) -> None:
    """Show one backup's manifest: source, artifacts, and every table's exact rows."""
    repository = _open(repo)
    try:
        resolved = repository.resolve(backup_id)
    except BackupNotFound:
        found = physical.resolve(repository, backup_id) if backup_id.strip() else None
        if found is None:
            raise
        show_physical(repository, found, as_json)
        return
    manifest = repository.manifest(resolved)
    history = drill_history(repository, manifest.id)
    if as_json:
        print_json(json_shapes.show_result(manifest, history))
        return
    s = manifest.source
    out = STATE.out
    out.print(f"backup      {manifest.id}")
    out.print(
        f"kind        {manifest.kind}" + (f"  label: {manifest.label}" if manifest.label else "")
    )
    out.print(
        f"started     {manifest.started_at:%Y-%m-%d %H:%M:%S} UTC, took "
        f"{(manifest.finished_at - manifest.started_at).total_seconds():.1f}s"
    )
    out.print(
        f"source      database {s.database}, PostgreSQL {s.server_version}, "
        f"host #{s.host_hash[:8]}, size {size(s.database_size or 0)}"
    )
    out.print(
        f"made by     pg_dump {s.pg_dump_version} ({manifest.tool}); restore needs "
        f"pg_restore {s.pg_dump_version.split('.')[0]} or newer"
    )
    out.print(
        f"roles       {manifest.roles.status}"
        + (f" ({manifest.roles.detail})" if manifest.roles.detail else "")
    )
    scope = manifest.scope
    if scope.whole:
        out.print("scope       the whole database")
    else:
        out.print(f"scope       {' '.join(scope.options())}")
        if scope.tables_without_data:
            names = ", ".join(t.qualified for t in scope.tables_without_data)
            out.print(f"            rows left out of {names}: restored empty")
    if manifest.large_objects.count:
        out.print(
            f"large objs  {count(manifest.large_objects.count)}"
            f" ({size(manifest.large_objects.bytes)})"
        )
    _print_project(manifest)
    print_table(
        out,
        [
            Column("name"),
            Column("key"),
            Column("content"),
            Column("plain", right=True),
            Column("stored", right=True),
            Column("stored sha256"),
        ],
        [
            [
                name,
                a.key,
                a.content,
                size(a.plain_size),
                size(a.stored_size),
                a.stored_sha256[:16] + "…",
            ]
            for name, a in manifest.artifacts.items()
        ],
        title="artifacts",
    )
    print_table(
        out,
        [
            Column("schema"),
            Column("table"),
            Column("rows", right=True),
            Column("data", right=True),
            Column("sha256"),
        ],
        [
            [t.schema_, t.name, count(t.rows), size(t.bytes), t.sha256[:16] + "…"]
            for t in manifest.tables
        ],
        title=f"tables ({len(manifest.tables)})",
    )
    _print_drills(history)


def _print_drills(history: list[DrillRecord]) -> None:
    if not history:
        STATE.out.print("drills      never: prove it restores with 'bika drill ID'")
        return
    rows = []
    for record in history:
        if record.problems:
            detail = record.problems[0] + (
                f" (+{len(record.problems) - 1} more)" if len(record.problems) > 1 else ""
            )
        else:
            skipped = sum(1 for t in record.tables if t.status == "skipped")
            detail = (
                f"{count(record.tables_checked)} tables, {count(record.objects_checked)} objects"
                + (f"; {skipped} tables skipped" if skipped else "")
            )
        rows.append(
            [
                f"{record.finished_at:%Y-%m-%d %H:%M:%S}",
                "✓ passed" if record.passed else "✗ FAILED",
                f"{record.target.kind} {record.target.server_version}",
                f"{record.restore_seconds:.1f}s",
                f"{record.verify_seconds:.1f}s",
                size(record.restored_size or 0),
                detail,
            ]
        )
    columns = [
        Column("finished (UTC)"),
        Column("result"),
        Column("on"),
        Column("restore (RTO)", right=True),
        Column("verify", right=True),
        Column("restored", right=True),
        Column(""),
    ]
    print_table(STATE.out, columns, rows, title=f"drills ({len(history)})")


def _print_project(manifest: Manifest) -> None:
    """A Supabase project's artifacts, by name: functions' origin, secrets' names."""
    out = STATE.out
    if (functions := manifest.functions) is not None:
        origin = f"git commit {functions.commit}" if functions.commit else "the folder on disk"
        if functions.uncommitted:
            origin += " (changes not committed then are not in it)"
        out.print(
            f"functions   {functions.files} files from {origin}: {', '.join(functions.paths)}"
        )
    if (secrets := manifest.secrets) is not None:
        names = ", ".join(e.name for e in secrets.entries) or "none"
        out.print(f"secrets     {len(secrets.entries)} values kept (encrypted): {names}")
        if secrets.unset:
            out.print(f"            not set when it ran: {', '.join(secrets.unset)}")
    if (project := manifest.project_config) is not None:
        out.print(
            f"project     {project.project_ref}: {len(project.parts)} configuration parts,"
            f" {project.functions} deployed functions, {project.secrets} secret names"
            + (f"; not readable: {', '.join(project.unreadable)}" if project.unreadable else "")
        )


def show_physical(repository: Repository, backup_id: str, as_json: bool) -> None:
    """`bika show ID` of a physical base backup: source, WAL range, chain, artifacts, drills."""
    manifest = physical.read(repository, backup_id)
    history = physical.drill_history(repository, backup_id)
    if as_json:
        print_json(json_shapes.physical_show_result(manifest, history))
        return
    out = STATE.out
    s = manifest.source
    out.print(f"backup      {manifest.id}")
    out.print(
        f"kind        {manifest.kind} (physical)"
        + (f"  label: {manifest.label}" if manifest.label else "")
    )
    if manifest.chain:
        out.print(f"builds on   {' → '.join(manifest.chain)} (restore combines them)")
    out.print(
        f"started     {manifest.started_at:%Y-%m-%d %H:%M:%S} UTC, took "
        f"{(manifest.finished_at - manifest.started_at).total_seconds():.1f}s"
    )
    out.print(
        f"source      PostgreSQL {s.server_version}, system identifier {s.system_identifier},"
        f" host #{s.host_hash[:8]}"
    )
    out.print(f"made by     pg_basebackup {s.pg_basebackup_version} ({manifest.tool})")
    w = manifest.wal
    out.print(
        f"WAL         timeline {w.timeline}, LSN {w.start_lsn} to {w.stop_lsn}"
        f" (segments {w.start_segment}..{w.stop_segment})"
    )
    out.print(f"files       {count(manifest.files)}")
    print_table(
        out,
        [
            Column("name"),
            Column("key"),
            Column("content"),
            Column("plain", right=True),
            Column("stored", right=True),
            Column("stored sha256"),
        ],
        [
            [
                name,
                a.key,
                a.content,
                size(a.plain_size),
                size(a.stored_size),
                a.stored_sha256[:16] + "…",
            ]
            for name, a in manifest.artifacts.items()
        ],
        title="artifacts",
    )
    if not history:
        out.print("drills      never: prove it restores with 'bika drill --physical ID'")
        return
    print_table(
        out,
        [
            Column("finished (UTC)"),
            Column("result"),
            Column("on"),
            Column("RTO", right=True),
            Column("RPO", right=True),
            Column("recovered to"),
            Column(""),
        ],
        [
            [
                f"{d.finished_at:%Y-%m-%d %H:%M:%S}",
                "✓ passed" if d.passed else "✗ FAILED",
                f"PostgreSQL {d.server_version}",
                f"{d.rto_seconds:.1f}s",
                "?" if d.rpo_seconds is None else f"{d.rpo_seconds:.0f}s",
                d.recovered_to or "",
                d.problems[0] if d.problems else f"{count(d.tables)} tables, {count(d.rows)} rows",
            ]
            for d in history
        ],
        title=f"drills ({len(history)})",
    )
