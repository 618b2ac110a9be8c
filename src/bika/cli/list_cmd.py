"""`bika list` and `bika show`: what the repository holds, read from manifests only.

Neither needs a key. --json output is stable and documented in docs/FORMAT.md.
"""

from __future__ import annotations

import json
from typing import Any

import click
from rich.markup import escape
from rich.table import Table

from bika.cli.app import STATE, app, json_option, open_repository, repo_option
from bika.repository import Manifest, Repository
from bika.repository.drills import DrillRecord, drill_history, drill_summary, latest_drills
from bika.units import size


def summary(manifest: Manifest, drill: DrillRecord | None = None) -> dict[str, Any]:
    """One backup in `list --json`; `drill` is its newest drill, if any."""
    return {
        "id": manifest.id,
        "kind": manifest.kind,
        "label": manifest.label,
        "started_at": manifest.started_at.isoformat(),
        "finished_at": manifest.finished_at.isoformat(),
        "duration_seconds": round((manifest.finished_at - manifest.started_at).total_seconds(), 3),
        "database": manifest.source.database,
        "server_version": manifest.source.server_version,
        "pg_dump_version": manifest.source.pg_dump_version,
        "database_size": manifest.source.database_size,
        "stored_size": manifest.stored_size,
        "plain_size": manifest.plain_size,
        "tables": len(manifest.tables),
        "rows": manifest.total_rows,
        "roles": manifest.roles.status,
        "drill": drill_summary(drill),
    }


def proven(drill: DrillRecord | None) -> str:
    """The "proven" column: when the newest drill passed (✓) or failed (✗), or never."""
    if drill is None:
        return "never"
    return f"{'✓' if drill.passed else '✗'} {drill.finished_at:%Y-%m-%d}"


def _open(repo: str | None) -> Repository:
    return open_repository(STATE.settings(repo=repo))


@app.command("list")
@repo_option
@json_option
def list_backups(repo: str | None, as_json: bool) -> None:
    """List the repository's backups, oldest first."""
    repository = _open(repo)
    manifests = repository.manifests()
    drills = latest_drills(repository)
    if as_json:
        payload = {
            "repository": repository.url,
            "backups": [summary(m, drills.get(m.id)) for m in manifests],
        }
        STATE.out.print_json(json.dumps(payload))
        return
    print_backups(repository, manifests, drills)


def print_backups(
    repository: Repository,
    manifests: list[Manifest] | None = None,
    drills: dict[str, DrillRecord] | None = None,
) -> None:
    """The human table of `bika list` (also shown at the end of `bika demo`)."""
    manifests = repository.manifests() if manifests is None else manifests
    drills = latest_drills(repository) if drills is None else drills
    if not manifests:
        STATE.say(f"{repository.url} holds no backups yet")
        return
    table = Table(title=f"backups in {repository.url}", title_justify="left")
    for column in (
        "id",
        "kind",
        "started (UTC)",
        "took",
        "database",
        "tables",
        "rows",
        "dumped",
        "stored",
        "proven",
        "label",
    ):
        table.add_column(
            column,
            justify="right" if column in ("tables", "rows", "dumped", "stored", "took") else "left",
        )
    for m in manifests:
        took = (m.finished_at - m.started_at).total_seconds()
        table.add_row(
            m.id,
            m.kind,
            f"{m.started_at:%Y-%m-%d %H:%M:%S}",
            f"{took:.1f}s",
            m.source.database,
            str(len(m.tables)),
            f"{m.total_rows:,}",
            size(m.plain_size),
            size(m.stored_size),
            proven(drills.get(m.id)),
            m.label or "",
        )
    STATE.out.print(table)


@app.command("show")
@click.argument("backup_id", metavar="ID")
@repo_option
@json_option
def show(backup_id: str, repo: str | None, as_json: bool) -> None:
    """Show one backup's manifest: source, artifacts, and every table's exact rows."""
    repository = _open(repo)
    manifest = repository.manifest(repository.resolve(backup_id))
    if as_json:
        STATE.out.print_json(manifest.to_json())
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
        out.print(escape(f"scope       {' '.join(scope.options())}"))
        if scope.tables_without_data:
            names = ", ".join(t.qualified for t in scope.tables_without_data)
            out.print(escape(f"            rows left out of {names}: restored empty"))
    if manifest.large_objects.count:
        out.print(
            f"large objs  {manifest.large_objects.count} ({size(manifest.large_objects.bytes)})"
        )
    artifacts = Table(title="artifacts", title_justify="left")
    for column in ("name", "key", "content", "plain", "stored", "stored sha256"):
        artifacts.add_column(column)
    for name, a in manifest.artifacts.items():
        artifacts.add_row(
            name,
            a.key,
            a.content,
            size(a.plain_size),
            size(a.stored_size),
            a.stored_sha256[:16] + "…",
        )
    out.print(artifacts)
    tables = Table(title=f"tables ({len(manifest.tables)})", title_justify="left")
    for column in ("schema", "table", "rows", "data", "sha256"):
        tables.add_column(column, justify="right" if column in ("rows", "data") else "left")
    for t in manifest.tables:
        tables.add_row(t.schema_, t.name, f"{t.rows:,}", size(t.bytes), t.sha256[:16] + "…")
    out.print(tables)
    _print_drills(drill_history(repository, manifest.id))


def _print_drills(history: list[DrillRecord]) -> None:
    if not history:
        STATE.out.print("drills      never: prove it restores with 'bika drill ID'")
        return
    table = Table(title=f"drills ({len(history)})", title_justify="left")
    for column in ("finished (UTC)", "result", "on", "restore (RTO)", "verify", "restored", ""):
        table.add_column(column, justify="right" if column in ("verify", "restored") else "left")
    for record in history:
        if record.problems:
            detail = record.problems[0] + (
                f" (+{len(record.problems) - 1} more)" if len(record.problems) > 1 else ""
            )
        else:
            skipped = sum(1 for t in record.tables if t.status == "skipped")
            detail = f"{record.tables_checked} tables, {record.objects_checked} objects" + (
                f"; {skipped} tables skipped" if skipped else ""
            )
        table.add_row(
            f"{record.finished_at:%Y-%m-%d %H:%M:%S}",
            "✓ passed" if record.passed else "✗ FAILED",
            f"{record.target.kind} {record.target.server_version}",
            f"{record.restore_seconds:.1f}s",
            f"{record.verify_seconds:.1f}s",
            size(record.restored_size or 0),
            detail,
        )
    STATE.out.print(table)
