"""Comparing a restored database with its backup: every table's rows and content hash with the
manifest's, every object of the archive's table of contents with the restored catalog, and the
notes that explain what could not be compared. Pure but for the catalog reads.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal

from bika.postgres import catalog, fingerprint
from bika.postgres.archive import ArchiveToc, TocEntry
from bika.postgres.connection import ConnInfo
from bika.postgres.toc import CATALOG_KINDS, NOT_CATALOGED_KINDS, sequence_set
from bika.repository import Manifest
from bika.repository.drills import DrillTarget, ObjectResult, TableResult


@dataclass
class DrillFindings:
    """What a drill found: the results it records, its problems (any fails it) and notes."""

    tables: list[TableResult] = field(default_factory=list)
    objects: list[ObjectResult] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    objects_checked: int = 0


def tables_to_check(
    manifest: Manifest, toc: ArchiveToc, skipped: dict[int, str], findings: DrillFindings
) -> list[tuple[str, str]]:
    """The manifest's tables to fingerprint, biggest first; those needing a missing extension
    are recorded as skipped instead."""
    data_entries = {(e.namespace or "", e.tag): e for e in toc.entries if e.desc == "TABLE DATA"}
    check = []
    for table in manifest.tables:
        key = (table.schema_, table.name)
        entry = data_entries.get(key)
        if entry is not None and entry.dump_id in skipped:
            findings.tables.append(
                TableResult(
                    schema=table.schema_,
                    name=table.name,
                    status="skipped",
                    expected_rows=table.rows,
                    expected_sha256=table.sha256,
                    detail=f"needs extension {skipped[entry.dump_id]}, missing on the drill server",
                )
            )
            continue
        check.append((key, table.bytes))
    return fingerprint.table_order(check)


def output_settings(manifest: Manifest, findings: DrillFindings) -> dict[str, str]:
    settings = dict(manifest.source.output_settings)
    if not settings:
        findings.notes.append(
            "the backup did not record its session's TimeZone, bytea_output and lc_monetary:"
            " the drill server's were used (timestamptz, bytea or money columns may differ if"
            " the source's were other)"
        )
    return settings


def judge_tables(
    manifest: Manifest, report: fingerprint.FingerprintReport, findings: DrillFindings
) -> None:
    findings.notes.extend(report.notes)
    for table in manifest.tables:
        got = report.tables.get((table.schema_, table.name))
        if got is None:
            continue
        result = table_result(
            table.schema_, table.name, table.rows, table.sha256, got.rows, got.sha256, got.problem
        )
        if result.status != "ok":
            findings.tables.append(result)
            findings.problems.append(f"table {result.qualified}: {result.detail}")


def judge_left_out(
    conn: ConnInfo, manifest: Manifest, toc: ArchiveToc, findings: DrillFindings
) -> None:
    """The tables the backup's scope kept without their rows must come back empty (one that
    does not come back at all is a missing TABLE, found with the schema)."""
    tables = {(e.namespace or "", e.tag) for e in toc.entries if e.desc == "TABLE"}
    left_out = [
        (t.schema_, t.name)
        for t in manifest.scope.tables_without_data
        if (t.schema_, t.name) in tables
    ]
    if not left_out:
        return
    for (schema, name), rows in catalog.exact_rows(conn, left_out).items():
        if rows:
            result = TableResult(
                schema=schema,
                name=name,
                status="differs",
                expected_rows=0,
                rows=rows,
                expected_sha256="",
                detail=f"{rows} rows restored, none in the backup (its scope left them out)",
            )
            findings.tables.append(result)
            findings.problems.append(f"table {result.qualified}: {result.detail}")
    findings.notes.append(
        f"the backup's scope left the rows of {len(left_out)} table(s) out on purpose"
        f" ({', '.join(f'{s}.{n}' for s, n in left_out)}): restored empty"
    )


def table_result(
    schema: str,
    name: str,
    expected_rows: int,
    expected_sha256: str,
    rows: int,
    sha256: str,
    problem: str | None,
) -> TableResult:
    """Compare one table's recomputed fingerprint with the manifest's, saying what differs."""
    status: Literal["ok", "differs", "missing", "unreadable"] = "ok"
    detail = ""
    got_rows: int | None = rows
    got_sha: str | None = sha256
    if problem == "does not exist":
        status, detail, got_rows, got_sha = "missing", "not in the restored database", None, None
    elif problem is not None:
        status, detail, got_rows, got_sha = "unreadable", f"COPY failed: {problem}", None, None
    elif rows != expected_rows:
        status = "differs"
        detail = f"{rows} rows restored, {expected_rows} in the backup"
    elif sha256 != expected_sha256:
        status = "differs"
        detail = (
            f"same {rows} rows but different content (sha256 {sha256[:12]}…, the backup's"
            f" {expected_sha256[:12]}…)"
        )
    return TableResult(
        schema=schema,
        name=name,
        status=status,
        expected_rows=expected_rows,
        rows=got_rows,
        expected_sha256=expected_sha256,
        sha256=got_sha,
        detail=detail,
    )


def compare_schema(
    conn: ConnInfo,
    manifest: Manifest,
    toc: ArchiveToc,
    skipped: dict[int, str],
    findings: DrillFindings,
) -> None:
    # names in signatures are qualified the way pg_dump's were: relative to an empty path
    with catalog.catalog_session(conn, as_dumped=True) as db:
        objects, problems, checked = compare_objects(
            toc.entries, db.objects(), skipped, db.sequence_state
        )
        restored = db.large_objects()
    findings.objects += objects
    findings.problems += problems
    findings.objects_checked = checked
    if restored != manifest.large_objects.count:
        findings.problems.append(
            f"large objects: {restored} restored, {manifest.large_objects.count} in the backup"
        )
    others: dict[str, int] = {}
    for entry in toc.entries:
        if entry.desc not in CATALOG_KINDS and entry.desc not in NOT_CATALOGED_KINDS:
            others[entry.desc] = others.get(entry.desc, 0) + 1
    if others:
        listed = ", ".join(f"{n} {kind}" for kind, n in sorted(others.items()))
        findings.notes.append(f"entries of kinds the drill does not compare: {listed}")


def compare_objects(
    entries: Sequence[TocEntry],
    present: dict[str, set[tuple[str, str]]],
    skipped: dict[int, str],
    sequence_state: Callable[[str], tuple[int, bool] | None],
) -> tuple[list[ObjectResult], list[str], int]:
    """The TOC's objects against those present in the restored database: (objects missing,
    differing or skipped; problems; how many were compared)."""
    objects: list[ObjectResult] = []
    problems: list[str] = []
    checked = 0
    for entry in entries:
        kind = CATALOG_KINDS.get(entry.desc)
        if kind is None and entry.desc != "SEQUENCE SET":
            continue
        schema = entry.namespace or None
        if entry.dump_id in skipped:
            objects.append(_object(entry, "skipped", f"needs extension {skipped[entry.dump_id]}"))
            continue
        checked += 1
        if entry.desc == "SEQUENCE SET":
            problem = _sequence_problem(entry, sequence_state)
            if problem is not None:
                objects.append(
                    _object(entry, "differs" if "value" in problem else "missing", problem)
                )
                problems.append(f"sequence {schema}.{entry.tag}: {problem}")
            continue
        assert kind is not None
        key = ("" if kind in ("SCHEMA", "EXTENSION") else entry.namespace or "", entry.tag)
        if key not in present.get(kind, set()):
            what = {
                "MATERIALIZED VIEW DATA": "not populated",
                "TABLE ATTACH": "not attached to its parent",
                "ROW SECURITY": "row level security not enabled",
            }.get(entry.desc, "missing")
            objects.append(_object(entry, "missing", what))
            problems.append(f"{entry.name}: {what} in the restored database")
    return objects, problems, checked


def _object(
    entry: TocEntry, status: Literal["missing", "differs", "skipped"], detail: str
) -> ObjectResult:
    return ObjectResult(
        kind=entry.desc,
        schema=entry.namespace or None,
        name=entry.tag,
        status=status,
        detail=detail,
    )


def _sequence_problem(
    entry: TocEntry, state: Callable[[str], tuple[int, bool] | None]
) -> str | None:
    setval = sequence_set(entry)
    if setval is None:
        return None  # an archive entry bika cannot read: nothing to compare against
    name, value, is_called = setval
    expected = (value, is_called)
    got = state(name)
    if got is None:
        return "missing"
    if got != expected:
        return (
            f"value {got[0]} (is_called {str(got[1]).lower()}), the backup set {expected[0]}"
            f" (is_called {str(expected[1]).lower()})"
        )
    return None


def explain_skipped(
    toc: ArchiveToc,
    missing_extensions: list[str],
    skipped: dict[int, str],
    target: DrillTarget,
    findings: DrillFindings,
) -> None:
    if not missing_extensions:
        return
    by_id = {e.dump_id: e for e in toc.entries}
    for extension in missing_extensions:
        needing = [
            by_id[i]
            for i, ext in skipped.items()
            if ext == extension and by_id[i].desc != "EXTENSION"
        ]
        shown = ", ".join(e.name for e in needing[:6])
        more = f" and {len(needing) - 6} more" if len(needing) > 6 else ""
        findings.notes.append(
            f"extension {extension} is not available on the drill server (PostgreSQL"
            f" {target.server_version}, {target.kind}): not restored, and"
            f" {len(needing)} object(s) that need it were skipped"
            + (f": {shown}{more}" if needing else "")
            + "; drill on a server that has it (--target) to check them"
        )
