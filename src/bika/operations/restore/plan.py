"""What a restore will do, as plain values: the options asked for, the archive entries chosen,
the target's facts and the preflight's findings. Deciding and checking happen elsewhere.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path

from bika.findings import Finding
from bika.postgres import binaries
from bika.postgres.archive import ArchiveToc, TocEntry
from bika.postgres.pg_restore import adapts_sql
from bika.postgres.target import TargetFacts
from bika.postgres.toc import DATA_KINDS, RELATIONS, SETUP_KINDS
from bika.repository import TableStats


@dataclass
class RestoreOptions:
    jobs: int = 1
    clean: bool = False
    create: bool = False
    no_owner: bool = False
    pg_bin_dir: str | None = None
    temp_dir: Path | None = None
    # the archive already decrypted to a file (stored_archive.ArchiveCopy): --jobs reads it
    archive_file: Path | None = None
    force: bool = False  # restore into an older server, or with too little free space
    dry_run: bool = False  # plan and preflight only: nothing is created, dropped or loaded
    schemas: list[str] = field(default_factory=list)
    tables: list[str] = field(default_factory=list)
    exclude_tables: list[str] = field(default_factory=list)
    schema_only: bool = False
    data_only: bool = False

    @property
    def selective(self) -> bool:
        return bool(self.schemas or self.tables or self.exclude_tables)


def entries_of(finding: Finding) -> frozenset[int]:
    """The dump ids of the selected entries that raise a preflight finding (its facts'
    "entries"): leaving them out of the restore settles it."""
    return frozenset(finding.facts.get("entries", ()))


@dataclass
class Selection:
    """The archive entries a restore runs, in archive order, and those it leaves out."""

    entries: list[TocEntry]
    whole: bool  # no --schema/--table/--exclude-table: the whole backup
    use_list: bool  # pg_restore needs a --use-list (the selection differs from the archive)
    left_out: list[tuple[TocEntry, str]] = field(default_factory=list)
    missing: list[tuple[TocEntry, TocEntry]] = field(default_factory=list)  # (entry, needs)
    unmatched: list[str] = field(default_factory=list)
    dependents: list[TocEntry] = field(default_factory=list)  # views --clean also recreates
    # types, functions, schemas, sequences… the selection needs and the target lacks
    prerequisites: list[TocEntry] = field(default_factory=list)

    @property
    def work(self) -> list[TocEntry]:
        return [e for e in self.entries if e.desc not in SETUP_KINDS]


@dataclass
class RestorePlan:
    backup_id: str
    destination: str
    toc: ArchiveToc
    selection: Selection
    findings: list[Finding]
    facts: TargetFacts | None
    tables: list[TableStats]  # whose rows are loaded (and checked afterwards)
    tool_version: str
    rows_before: dict[tuple[str, str], int | None] = field(default_factory=dict)

    @property
    def blocked(self) -> list[Finding]:
        return [f for f in self.findings if f.level == "error"]

    @property
    def create_database(self) -> bool:
        return self.facts is not None and not self.facts.database_exists

    @property
    def creates(self) -> list[TocEntry]:
        return [e for e in self.selection.work if e.desc not in DATA_KINDS]

    @property
    def loads(self) -> list[TocEntry]:
        return [e for e in self.selection.work if e.desc in DATA_KINDS]

    @property
    def adapts_sql(self) -> bool:
        """pg_restore writes SQL the target's server rejects: bika adapts it on the way."""
        return self.facts is not None and adapts_sql(
            binaries.major(self.tool_version), self.facts.server_major
        )

    def drops(self, options: RestoreOptions) -> list[TocEntry]:
        """What --clean drops: the selection's relations and schemas the target already has."""
        if not options.clean or self.facts is None:
            return []
        present = self.facts.present
        return [
            e
            for e in self.creates
            if e.dump_id in present and (e.desc in RELATIONS or e.desc == "SCHEMA")
        ]


def exclude_entries(plan: RestorePlan, ids: Iterable[int], reason: str) -> RestorePlan:
    """The plan without the archive entries `ids`, listed as left out for `reason`.

    A finding raised by those entries alone is dropped, and the tables whose data they hold
    are no longer checked. What depends on the entries stays: pass it in `ids` as well."""
    gone = set(ids)
    selection = plan.selection
    leaving = [e for e in selection.entries if e.dump_id in gone]
    kept = replace(
        selection,
        entries=[e for e in selection.entries if e.dump_id not in gone],
        use_list=selection.use_list or bool(leaving),
        left_out=selection.left_out + [(e, reason) for e in leaving],
        missing=[(e, dep) for e, dep in selection.missing if e.dump_id not in gone],
        dependents=[e for e in selection.dependents if e.dump_id not in gone],
        prerequisites=[e for e in selection.prerequisites if e.dump_id not in gone],
    )
    findings = []
    for finding in plan.findings:
        ids = entries_of(finding)
        if ids and ids <= gone:
            continue
        if ids:
            finding = replace(finding, facts={**finding.facts, "entries": sorted(ids - gone)})
        findings.append(finding)
    loaded = {(e.namespace or "", e.tag) for e in kept.entries if e.desc == "TABLE DATA"}
    tables = [t for t in plan.tables if (t.schema_, t.name) in loaded]
    return replace(plan, selection=kept, findings=findings, tables=tables)
