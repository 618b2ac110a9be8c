"""Restoring a backup into a database or a file: preflight, plan, pg_restore, then the proof.

A restore either ends with every restored table's exact row count matching the manifest, or
fails loudly naming what went wrong; "errors ignored on restore" is a failure, never a warning.
"""

from __future__ import annotations

import bisect
import contextlib
import os
import re
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, Literal

import pyrage
from psycopg import sql

from bika.errors import (
    BackupNotFound,
    BikaError,
    ConfigError,
    DumpError,
    IdentityError,
    IntegrityError,
    RestoreError,
)
from bika.postgres import binaries, catalog
from bika.postgres.connection import ConnInfo
from bika.postgres.preflight import (
    RELATIONS,
    ArchiveToc,
    TargetFacts,
    TocEntry,
    disk_free,
    inspect_target,
    read_toc,
    writable_folder,
)
from bika.postgres.process import Child, run
from bika.repository import Artifact, Manifest, Repository, TableStats
from bika.stream import Progress, decode

DISK_MARGIN = 64 << 20

# Entries pg_restore handles itself whatever the selection (session settings, the database).
SETUP_KINDS = frozenset({"ENCODING", "STDSTRINGS", "SEARCHPATH", "DATABASE", "DATABASE PROPERTIES"})
DATA_KINDS = frozenset(
    {"TABLE DATA", "SEQUENCE SET", "BLOB", "BLOBS", "BLOB METADATA", "MATERIALIZED VIEW DATA"}
)
LARGE_OBJECT_KINDS = frozenset({"BLOB", "BLOBS", "BLOB METADATA"})
# Entries that exist only for the object they depend on: a selected table brings its own.
ATTACHED_KINDS = frozenset(
    {
        "TABLE DATA",
        "SEQUENCE OWNED BY",
        "SEQUENCE SET",
        "DEFAULT",
        "CONSTRAINT",
        "CHECK CONSTRAINT",
        "FK CONSTRAINT",
        "INDEX",
        "INDEX ATTACH",
        "TABLE ATTACH",
        "TRIGGER",
        "POLICY",
        "ROW SECURITY",
        "RULE",
        "COMMENT",
        "SECURITY LABEL",
        "ACL",
        "STATISTICS DATA",
        "MATERIALIZED VIEW DATA",
        "PUBLICATION TABLE",
    }
)
# Prerequisites whose presence in the target inspect_target can tell.
CHECKED_KINDS = frozenset({"SCHEMA", "EXTENSION", "TYPE", "DOMAIN", "FUNCTION", "PROCEDURE"})

# pg_restore 17+ starts every session with this; servers before 17 reject it (it is the only
# statement of pg_restore 18 that PostgreSQL 15 refuses, see docs/RESTORE-options.md).
TRANSACTION_TIMEOUT = b"SET transaction_timeout = 0;\n"
PORTABLE_TRANSACTION_TIMEOUT = (
    b"DO $$BEGIN IF current_setting('server_version_num')::int >= 170000"
    b" THEN SET transaction_timeout = 0; END IF; END$$;\n"
)
TRANSACTION_TIMEOUT_SINCE = 17

Level = Literal["ok", "warn", "error"]


@dataclass
class RestoreOptions:
    jobs: int = 1
    clean: bool = False
    create: bool = False
    no_owner: bool = False
    pg_bin_dir: str | None = None
    temp_dir: Path | None = None
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


@dataclass(frozen=True)
class Finding:
    """One preflight result: what was checked, and for a warning or error what to do."""

    level: Level
    check: str
    message: str


@dataclass(frozen=True)
class RestoreStep:
    """pg_restore's progress: `done` of `total` archive entries, and what it is doing now."""

    done: int
    total: int
    doing: str


StepProgress = Callable[[RestoreStep], None]


@dataclass
class TableCheck:
    table: str
    expected: int
    restored: int | None
    rows_compared: bool = True  # False after --schema-only: the table must only exist

    @property
    def ok(self) -> bool:
        if not self.rows_compared:
            return self.restored is not None
        return self.restored == self.expected


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


@dataclass
class RestoreReport:
    backup_id: str
    target: str
    seconds: float
    checks: list[TableCheck] = field(default_factory=list)
    preflight: list[Finding] = field(default_factory=list)
    plan: RestorePlan | None = None
    dry_run: bool = False

    @property
    def ok(self) -> bool:
        return all(check.ok for check in self.checks)

    @property
    def warnings(self) -> list[Finding]:
        return [f for f in self.preflight if f.level == "warn"]


@dataclass
class ExportReport:
    backup_id: str
    path: Path
    format: Literal["sql", "dump"]
    size: int
    seconds: float
    preflight: list[Finding] = field(default_factory=list)
    plan: RestorePlan | None = None
    dry_run: bool = False


class PreflightRefused(RestoreError):
    """The preflight found something that would make the restore fail or do harm."""

    def __init__(self, plan: RestorePlan) -> None:
        self.plan = plan
        messages = [f.message for f in plan.blocked]
        super().__init__(f"restore of {plan.backup_id} refused: " + "; ".join(messages))


class RestoreFailed(RestoreError):
    """pg_restore (or psql) reported errors; `errors` holds each, for people to read."""

    def __init__(self, message: str, errors: list[str]) -> None:
        super().__init__(message)
        self.errors = errors


# -- entry points ------------------------------------------------------------------------


def plan_restore(
    repo: Repository,
    manifest: Manifest,
    target: ConnInfo | Path,
    identities: list[object],
    options: RestoreOptions,
) -> RestorePlan:
    """Read the archive's TOC and the target's state; decide and check, changing nothing."""
    _check_options(options, target)
    artifact = manifest.artifacts["database"]
    label = f"{manifest.id}/database"
    check_identity(repo, artifact.key, identities, label)
    pg_restore = binaries.tool("pg_restore", binaries.find_bin_dir(options.pg_bin_dir))
    tool_version = binaries.tool_version(pg_restore)
    toc = read_archive_toc(repo, artifact, identities, label)
    if isinstance(target, Path):
        facts = None
        destination = str(target)
        selection = select(toc, options, None)
    else:
        facts = inspect_target(target, toc)
        destination = target.redacted()
        selection = select(toc, options, facts.present)
    loaded = {(e.namespace or "", e.tag) for e in selection.entries if e.desc == "TABLE DATA"}
    tables = (
        [] if options.schema_only else [t for t in manifest.tables if (t.schema_, t.name) in loaded]
    )
    rows_before: dict[tuple[str, str], int | None] = {}
    if options.data_only and isinstance(target, ConnInfo) and facts and facts.database_exists:
        rows_before = catalog.exact_rows(target, [(t.schema_, t.name) for t in tables])
    plan = RestorePlan(
        manifest.id, destination, toc, selection, [], facts, tables, tool_version, rows_before
    )
    if isinstance(target, Path):
        plan.findings = preflight_file(manifest, plan, options, target)
    else:
        plan.findings = preflight(manifest, plan, options)
    return plan


def restore_backup(
    repo: Repository,
    manifest: Manifest,
    target: ConnInfo,
    identities: list[object],
    options: RestoreOptions,
    progress: Progress | None = None,
    *,
    plan: RestorePlan | None = None,
    on_step: StepProgress | None = None,
) -> RestoreReport:
    """Restore into a database after a preflight; with options.dry_run only plan and check."""
    started = time.monotonic()
    plan = plan or plan_restore(repo, manifest, target, identities, options)
    if plan.blocked:
        raise PreflightRefused(plan)
    report = RestoreReport(
        manifest.id,
        target.redacted(),
        0.0,
        preflight=plan.findings,
        plan=plan,
        dry_run=options.dry_run,
    )
    if options.dry_run:
        report.seconds = time.monotonic() - started
        return report
    pg_restore = binaries.tool("pg_restore", binaries.find_bin_dir(options.pg_bin_dir))
    created = _create_target(target) if plan.create_database else False
    try:
        _load(repo, manifest, target, identities, options, plan, pg_restore, progress, on_step)
    except BaseException as exc:
        if created:
            note = _drop_created(target)
            if isinstance(exc, RestoreFailed):
                raise RestoreFailed(f"{exc}; {note}", exc.errors) from exc
            if isinstance(exc, BikaError):
                raise type(exc)(f"{exc}; {note}") from exc
        raise
    report.checks = _checks(target, plan, options)
    report.seconds = time.monotonic() - started
    return report


def export_backup(
    repo: Repository,
    manifest: Manifest,
    path: Path,
    identities: list[object],
    options: RestoreOptions,
    progress: Progress | None = None,
    *,
    plan: RestorePlan | None = None,
    on_step: StepProgress | None = None,
) -> ExportReport:
    """Write the backup as a file people can read or hand over: out.sql (plain SQL, through
    pg_restore) or out.dump (the custom-format archive itself). Mode 0600, never overwrites."""
    started = time.monotonic()
    plan = plan or plan_restore(repo, manifest, path, identities, options)
    if plan.blocked:
        raise PreflightRefused(plan)
    kind: Literal["sql", "dump"] = "sql" if path.suffix == ".sql" else "dump"
    report = ExportReport(manifest.id, path, kind, 0, 0.0, plan.findings, plan, options.dry_run)
    if options.dry_run:
        return report
    artifact = manifest.artifacts["database"]
    label = f"{manifest.id}/database"
    with _private_file(path) as out:
        if kind == "dump":
            with repo.storage.open(artifact.key) as source:
                stats = decode(source, out, identities, name=label, progress=progress)
            if stats.plain_sha256 != artifact.plain_sha256:
                raise IntegrityError(
                    f"{label}: the decrypted archive's sha256 is {stats.plain_sha256[:16]}…,"
                    f" the manifest says {artifact.plain_sha256[:16]}…"
                )
        else:
            pg_restore = binaries.tool("pg_restore", binaries.find_bin_dir(options.pg_bin_dir))
            with _use_list(plan, options) as listing:
                argv = [str(pg_restore), "--file=-", *_selection_args(options, listing)]
                clean = ""
                if options.create:
                    # a script that makes its own database: dropping that is the clean
                    argv.append("--create")
                    if options.clean:
                        argv += ["--clean", "--if-exists"]
                else:
                    # one transaction: a load that fails half-way leaves nothing behind
                    argv.append("--single-transaction")
                    clean = clean_sql(plan) if options.clean else ""
                script = _Script(out.write, clean=clean)
                _through_pg_restore(
                    repo, artifact, identities, label, argv, script, plan, progress, on_step
                )
    report.size = path.stat().st_size
    report.seconds = time.monotonic() - started
    return report


def check_identity(repo: Repository, key: str, identities: list[object], label: str) -> None:
    """Fail before touching any database if none of the identities opens the artifact."""
    head = repo.storage.read_range(key, 0, 4096)
    end = head.find(b"\n---")
    if end < 0:
        raise RestoreError(f"{label}: not an age file (no header found)")
    # the header and the payload's 16-byte nonce: age reads both before it tries the keys
    header = head[: head.index(b"\n", end + 1) + 1 + 16]
    try:
        pyrage.decrypt(header, identities)
    except pyrage.DecryptError as exc:
        if "No matching keys" in str(exc):
            raise IdentityError(
                f"{label}: the given identity cannot decrypt this backup; use the key whose"
                " recipient the repository was initialised with"
            ) from None
    except Exception:
        pass  # the key fits: what failed is the missing payload of this header-only probe


def find_backup_before(repo: Repository, when: datetime) -> str:
    """The newest backup that started strictly before `when` (naive means UTC)."""
    when = when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)
    ids = repo.backup_ids()
    if not ids:
        raise BackupNotFound(f"{repo.url} holds no backups yet")
    timed = sorted((stamp, i) for i in ids if (stamp := _id_time(i)) is not None)
    # ids without a readable time (none that bika writes) are judged by their manifest
    candidates = [(None, i) for i in ids if _id_time(i) is None] + list(reversed(timed))
    best: tuple[datetime, str] | None = None
    # An id carries its start time to the second, so only ids from the last second before
    # `when` need their manifest read to tell which started first.
    for stamp, backup_id in candidates:
        if stamp is not None:
            if stamp >= when:
                continue
            if best is not None and stamp + timedelta(seconds=1) <= best[0]:
                break
        started = repo.manifest(backup_id).started_at.astimezone(UTC)
        if started < when and (best is None or started > best[0]):
            best = (started, backup_id)
    if best is None:
        oldest = repo.manifest(timed[0][1] if timed else ids[0])
        raise BackupNotFound(
            f"no backup started before {when:%Y-%m-%d %H:%M:%S} UTC; the oldest,"
            f" {oldest.id}, started {oldest.started_at.astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC"
        )
    return best[1]


def find_latest_backup(repo: Repository) -> str:
    """The backup that started last. Ids sort by time only to the second: two backups
    taken within one second sort by their random suffix, so the manifests decide."""
    return find_backup_before(repo, datetime.max.replace(tzinfo=UTC))


def _id_time(backup_id: str) -> datetime | None:
    try:
        return datetime.strptime(backup_id[:16], "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
    except ValueError:
        return None


# -- the archive's table of contents and what to restore of it ----------------------------


class _TocComplete(Exception):
    def __init__(self, toc: ArchiveToc) -> None:
        self.toc = toc


class _TocSink:
    """Collects the archive's first bytes until its TOC parses, then stops the stream."""

    def __init__(self) -> None:
        self._buf = bytearray()
        self._next_attempt = 0

    def write(self, data: bytes) -> int:
        self._buf += data
        if len(self._buf) >= self._next_attempt:
            toc = read_toc(bytes(self._buf))
            if toc is not None:
                raise _TocComplete(toc)
            self._next_attempt = len(self._buf) * 3 // 2
        return len(data)


def read_archive_toc(
    repo: Repository, artifact: Artifact, identities: list[object], label: str
) -> ArchiveToc:
    """The TOC from the start of the stored archive, reading no further than it."""
    sink = _TocSink()
    try:
        with repo.storage.open(artifact.key) as source:
            decode(source, sink, identities, name=label)
    except _TocComplete as done:
        return done.toc
    raise DumpError(f"{label}: the archive ends before its table of contents does (truncated)")


def select(toc: ArchiveToc, options: RestoreOptions, present: set[int] | None) -> Selection:
    """Which entries to restore for --schema/--table/--exclude-table/--schema-only/--data-only.

    present holds the dump ids the target already has (None when writing a file): a
    dependency found there is satisfied, and a schema found there is used, not re-created."""
    by_id = toc.by_id()
    unmatched: list[str] = []
    dependents: set[int] = set()
    if options.schemas or options.tables:
        chosen: set[int] = set()
        for schema in options.schemas:
            hits = {
                e.dump_id
                for e in toc.entries
                if e.namespace == schema or (e.desc == "SCHEMA" and e.tag == schema)
            }
            if not hits:
                unmatched.append(f"--schema {schema}")
            chosen |= hits
        for pattern in options.tables:
            hits = _match_relations(toc, pattern)
            if not hits:
                unmatched.append(f"--table {pattern}")
            chosen |= hits
        named = set(chosen)
        _grow(toc, chosen)
        if options.clean and present is not None:
            dependents = _grow_dependents(toc, chosen, present)
            named |= dependents
    else:
        chosen = {e.dump_id for e in toc.entries}
        named = set(chosen)
    excluded: set[int] = set()
    for pattern in options.exclude_tables:
        hits = _match_relations(toc, pattern)
        if not hits:
            unmatched.append(f"--exclude-table {pattern}")
        excluded |= hits
    _grow(toc, excluded)
    chosen -= excluded
    if options.schemas or options.tables:
        # large objects belong to no schema: a selection by name leaves them out
        chosen -= {e.dump_id for e in toc.entries if e.desc in LARGE_OBJECT_KINDS}
    whole = not options.selective
    use_list = not whole
    if present is not None and (use_list or options.clean):
        # a schema the target has is used as it is: dropping it would take along objects
        # that are not the backup's, and creating it again would fail
        kept = {e.dump_id for e in toc.entries if e.desc == "SCHEMA" and e.dump_id in present}
        chosen -= kept
        use_list = use_list or bool(kept)
    _skip_attached_copies(toc, by_id, chosen, present)
    left_out = _drop_unmet(toc, by_id, chosen, named, excluded, present)
    missing = _prerequisites(toc, by_id, chosen, named, present)
    if options.schema_only:
        chosen -= {e.dump_id for e in toc.entries if e.desc in DATA_KINDS}
    elif options.data_only:
        chosen &= {e.dump_id for e in toc.entries if e.desc in DATA_KINDS}
    chosen |= {e.dump_id for e in toc.entries if e.desc in SETUP_KINDS}
    entries = [e for e in toc.entries if e.dump_id in chosen]
    pulled = [e for e in entries if e.dump_id in dependents and e.desc in RELATIONS]
    return Selection(entries, whole, use_list, left_out, missing, unmatched, pulled)


def _match_relations(toc: ArchiveToc, pattern: str) -> set[int]:
    """Relations named by pattern: "name" (any schema), "schema.name" or '"Sch"."Name"'."""
    candidates = _name_candidates(pattern)
    return {
        e.dump_id
        for e in toc.entries
        if e.desc in RELATIONS
        and any(e.tag == name and schema in (None, e.namespace) for schema, name in candidates)
    }


def _name_candidates(pattern: str) -> list[tuple[str | None, str]]:
    if '"' in pattern:
        parts: list[str] = []
        current, quoted, i = "", False, 0
        while i < len(pattern):
            ch = pattern[i]
            if ch == '"':
                if quoted and pattern[i + 1 : i + 2] == '"':
                    current += '"'
                    i += 1
                else:
                    quoted = not quoted
            elif ch == "." and not quoted:
                parts.append(current)
                current = ""
            else:
                current += ch
            i += 1
        parts.append(current)
        if len(parts) == 1:
            return [(None, parts[0])]
        return [(".".join(parts[:-1]), parts[-1])]
    # unquoted: the dot could be the separator or part of a name; try every reading
    out: list[tuple[str | None, str]] = [(None, pattern)]
    out += [(pattern[:i], pattern[i + 1 :]) for i, ch in enumerate(pattern) if ch == "."]
    return out


def _grow(toc: ArchiveToc, chosen: set[int]) -> None:
    """Add what belongs to chosen relations: data, owned and identity sequences, defaults,
    constraints, indexes, triggers, policies, comments, grants, and partitions/children."""
    by_id = toc.by_id()
    changed = True
    while changed:
        changed = False
        for entry in toc.entries:
            if entry.dump_id in chosen:
                continue
            owners = [by_id[d] for d in entry.dependencies if d in chosen and d in by_id]
            if not owners:
                continue
            if entry.desc in ATTACHED_KINDS or (
                entry.desc in ("TABLE", "SEQUENCE") and any(o.desc == "TABLE" for o in owners)
            ):
                chosen.add(entry.dump_id)
                changed = True


def _grow_dependents(toc: ArchiveToc, chosen: set[int], present: set[int]) -> set[int]:
    """With --clean, the backup's views that the target has over a restored relation: a
    table cannot be dropped under them, so they are dropped and recreated with it."""
    added: set[int] = set()
    changed = True
    while changed:
        changed = False
        for entry in toc.entries:
            if (
                entry.desc in ("VIEW", "MATERIALIZED VIEW")
                and entry.dump_id not in chosen
                and entry.dump_id in present
                and any(d in chosen for d in entry.dependencies)
            ):
                chosen.add(entry.dump_id)
                added.add(entry.dump_id)
                changed = True
        if changed:
            _grow(toc, chosen)
    return added


def _skip_attached_copies(
    toc: ArchiveToc, by_id: dict[int, TocEntry], chosen: set[int], present: set[int] | None
) -> None:
    """A partition restored under a parent that stays in the target gets its copies of the
    parent's indexes from ATTACH PARTITION itself; creating the archive's as well would fail
    ("multiple primary keys"), so those and their INDEX ATTACH entries are skipped."""
    for entry in toc.entries:
        if entry.desc != "INDEX ATTACH" or entry.dump_id not in chosen:
            continue
        indexes = [
            by_id[d]
            for d in entry.dependencies
            if d in by_id and by_id[d].desc in ("INDEX", "CONSTRAINT")
        ]
        parents = [i for i in indexes if i.dump_id not in chosen]
        if not parents:
            continue
        table = _relation_of(parents[0], by_id)
        if present is None or (table is not None and table.dump_id in present):
            chosen.discard(entry.dump_id)
            chosen.difference_update(i.dump_id for i in indexes)


def _relation_of(entry: TocEntry, by_id: dict[int, TocEntry]) -> TocEntry | None:
    """The relation an entry is or belongs to (a constraint's table); None for other kinds."""
    if entry.desc in RELATIONS:
        return entry
    if entry.desc in ATTACHED_KINDS:
        for dep in entry.dependencies:
            owner = by_id.get(dep)
            if owner is not None and owner.desc in RELATIONS:
                return owner
    return None


def _drop_unmet(
    toc: ArchiveToc,
    by_id: dict[int, TocEntry],
    chosen: set[int],
    named: set[int],
    excluded: set[int],
    present: set[int] | None,
) -> list[tuple[TocEntry, str]]:
    """Leave out entries that need a relation which is neither restored nor in the target
    (a foreign key to an unselected table, a view over an excluded one)."""
    left_out: list[tuple[TocEntry, str]] = []
    changed = True
    while changed:
        changed = False
        for entry in toc.entries:
            if entry.dump_id not in chosen:
                continue
            for dep_id in entry.dependencies:
                dep = by_id.get(dep_id)
                if dep is None or dep_id in chosen:
                    continue
                relation = _relation_of(dep, by_id)
                if relation is None:
                    continue
                if entry.desc == "TABLE" and dep.desc == "TABLE":
                    continue  # a partition is created on its own; TABLE ATTACH links it
                in_target = present is None or (
                    relation.dump_id in present and relation.dump_id not in chosen
                )
                if in_target and dep_id not in excluded:
                    continue
                is_named_object = entry.dump_id in named and entry.desc not in ATTACHED_KINDS
                if is_named_object and relation.dump_id not in excluded:
                    continue  # reported as a missing prerequisite instead
                why = "excluded" if relation.dump_id in excluded else "not restored"
                left_out.append((entry, f"needs {relation.qualified} ({why})"))
                chosen.discard(entry.dump_id)
                changed = True
                break
    return left_out


def _prerequisites(
    toc: ArchiveToc,
    by_id: dict[int, TocEntry],
    chosen: set[int],
    named: set[int],
    present: set[int] | None,
) -> list[tuple[TocEntry, TocEntry]]:
    """(entry, what it needs) for schemas, types, functions, extensions and relations that
    are neither restored nor in the target."""
    if present is None:
        return []
    missing = []
    for entry in toc.entries:
        if entry.dump_id not in chosen:
            continue
        for dep_id in entry.dependencies:
            dep = by_id.get(dep_id)
            if dep is None or dep_id in chosen or dep_id in present:
                continue
            if dep.desc in CHECKED_KINDS or (
                entry.dump_id in named
                and dep.desc in RELATIONS
                and not (entry.desc == "TABLE" and dep.desc == "TABLE")
            ):
                missing.append((entry, dep))
    return missing


# -- preflight ----------------------------------------------------------------------------


def preflight(manifest: Manifest, plan: RestorePlan, options: RestoreOptions) -> list[Finding]:
    """Every check before a restore into a database, each with a way forward."""
    facts = plan.facts
    assert facts is not None
    findings = [_tool_finding(manifest, plan.tool_version), *_selection_findings(plan)]
    findings.append(_version_finding(manifest, facts, options))
    findings += _target_findings(plan, facts, options)
    findings.append(_space_finding(manifest, plan, facts, options))
    findings += _privilege_findings(plan, facts, options)
    if (
        binaries.major(plan.tool_version) >= TRANSACTION_TIMEOUT_SINCE > facts.server_major
        and options.jobs == 1
    ):
        findings.append(
            Finding(
                "ok",
                "compatibility",
                f"pg_restore {plan.tool_version} writes SQL that PostgreSQL"
                f" {facts.server_major} rejects: bika loads it through psql, adapted",
            )
        )
    return findings


def preflight_file(
    manifest: Manifest, plan: RestorePlan, options: RestoreOptions, path: Path
) -> list[Finding]:
    findings = [_tool_finding(manifest, plan.tool_version), *_selection_findings(plan)]
    if path.suffix not in (".sql", ".dump"):
        findings.append(
            Finding(
                "error",
                "file",
                f"--to-file {path}: name it *.sql for plain SQL or *.dump for the custom-format"
                " archive",
            )
        )
        return findings
    if path.suffix == ".dump" and (
        options.selective
        or options.schema_only
        or options.data_only
        or options.clean
        or options.create
        or options.no_owner
    ):
        findings.append(
            Finding(
                "error",
                "file",
                "a .dump file is the whole archive as it was backed up; give --table, --schema,"
                " --clean… to pg_restore when you restore it, or write a .sql file instead",
            )
        )
    if path.exists() or path.is_symlink():
        findings.append(
            Finding(
                "error",
                "file",
                f"{path} already exists; bika never overwrites a file:"
                " remove it or choose another name",
            )
        )
    elif not writable_folder(path.parent):
        findings.append(
            Finding(
                "error",
                "file",
                f"cannot write {path}: folder {path.parent} does not exist or is not writable",
            )
        )
    need = manifest.artifacts["database"].plain_size
    free = disk_free(path.parent)
    if free is not None and free < need + DISK_MARGIN and not options.force:
        findings.append(
            Finding(
                "error",
                "space",
                f"{path.parent} has {_human(free)} free but the file needs about"
                f" {_human(need)}: free space, write elsewhere, or pass --force to try",
            )
        )
    elif free is not None:
        findings.append(
            Finding("ok", "space", f"{path.parent}: {_human(free)} free for about {_human(need)}")
        )
    return findings


def _tool_finding(manifest: Manifest, tool_version: str) -> Finding:
    have = binaries.major(tool_version)
    need = binaries.major(manifest.source.pg_dump_version)
    if have < need:
        return Finding(
            "error",
            "tools",
            f"this backup was made by pg_dump {manifest.source.pg_dump_version}; pg_restore"
            f" {tool_version} cannot read it: use pg_restore {need} or newer (pg_bin_dir)",
        )
    return Finding(
        "ok",
        "tools",
        f"pg_restore {tool_version} reads archives of pg_dump {manifest.source.pg_dump_version}",
    )


def _selection_findings(plan: RestorePlan) -> list[Finding]:
    selection = plan.selection
    findings = []
    for what in selection.unmatched:
        findings.append(
            Finding(
                "error",
                "selection",
                f"{what} matches nothing in backup {plan.backup_id}; 'bika restore"
                f" {plan.backup_id} --dry-run --to URL' lists what it holds",
            )
        )
    if not selection.unmatched and not selection.work:
        findings.append(Finding("error", "selection", "the selection leaves nothing to restore"))
    if selection.dependents:
        names = ", ".join(e.qualified for e in selection.dependents[:4])
        more = f" and {len(selection.dependents) - 4} more" if len(selection.dependents) > 4 else ""
        findings.append(
            Finding(
                "warn",
                "selection",
                f"--clean also drops and recreates {names}{more}: they depend on what is restored",
            )
        )
    if selection.left_out:
        shown = ", ".join(f"{e.name} ({why})" for e, why in selection.left_out[:3])
        more = f" and {len(selection.left_out) - 3} more" if len(selection.left_out) > 3 else ""
        findings.append(
            Finding(
                "warn",
                "selection",
                f"left out because what they need is not restored: {shown}{more}",
            )
        )
    if selection.missing:
        needs = sorted({dep.name for _, dep in selection.missing})
        first_entry, first_dep = selection.missing[0]
        findings.append(
            Finding(
                "error",
                "prerequisites",
                f"the selection needs {', '.join(needs[:4])}"
                f"{f' and {len(needs) - 4} more' if len(needs) > 4 else ''}, neither restored"
                f" nor in the target (e.g. {first_entry.name} needs {first_dep.name}): add"
                " them with --schema/--table, or restore them first",
            )
        )
    return findings


def _version_finding(manifest: Manifest, facts: TargetFacts, options: RestoreOptions) -> Finding:
    source = manifest.source.server_version
    source_major = binaries.major(source)
    if facts.server_major >= source_major:
        return Finding(
            "ok",
            "version",
            f"target runs PostgreSQL {facts.server_version}, the backup's source ran {source}",
        )
    said = f"the backup comes from PostgreSQL {source} and the target runs {facts.server_version}"
    if options.force:
        return Finding(
            "warn", "version", f"{said}; restoring into the older server anyway (--force)"
        )
    return Finding(
        "error",
        "version",
        f"{said}: features of {source_major} may not restore; use a PostgreSQL"
        f" {source_major}+ server, or pass --force to try",
    )


def _target_findings(
    plan: RestorePlan, facts: TargetFacts, options: RestoreOptions
) -> list[Finding]:
    name = facts.database
    if options.create:
        if facts.database_exists:
            return [
                Finding(
                    "error",
                    "target",
                    f"database {name!r} already exists; drop --create to restore into it"
                    " (with --clean if it is not empty), or choose a new name",
                )
            ]
        if not facts.create_database:
            return [
                Finding(
                    "error",
                    "privileges",
                    f"role {facts.role} may not create databases: ask for CREATEDB, or create"
                    f" {name!r} first and restore into it without --create",
                )
            ]
        return [Finding("ok", "target", f"database {name!r} will be created")]
    if not facts.database_exists:
        return [
            Finding(
                "error", "target", f"database {name!r} does not exist; pass --create to create it"
            )
        ]
    if options.data_only:
        return _data_only_findings(plan, facts)
    if not (options.schemas or options.tables):
        if facts.user_objects and not options.clean:
            return [
                Finding(
                    "error",
                    "target",
                    f"database {name!r} is not empty ({facts.user_objects} tables, views,"
                    " sequences or functions); pass --clean to drop and recreate the backup's"
                    " objects, or restore into a new database with --create",
                )
            ]
        if facts.user_objects:
            return [
                Finding(
                    "ok",
                    "target",
                    f"database {name!r} is not empty: --clean drops and"
                    " recreates the backup's objects first",
                )
            ]
        return [Finding("ok", "target", f"database {name!r} is empty")]
    clashes = [
        e for e in plan.selection.entries if e.desc in RELATIONS and e.dump_id in facts.present
    ]
    if clashes and not options.clean:
        names = ", ".join(e.qualified for e in clashes[:4])
        more = f" and {len(clashes) - 4} more" if len(clashes) > 4 else ""
        return [
            Finding(
                "error",
                "target",
                f"{names}{more} already exist in {name!r}; pass --clean to drop and recreate"
                " them, --exclude-table to keep them, or restore into a new database"
                " with --create",
            )
        ]
    return [
        Finding(
            "ok",
            "target",
            f"none of the selected objects exist in {name!r} yet"
            if not clashes
            else f"--clean drops and recreates {len(clashes)} of them",
        )
    ]


def _data_only_findings(plan: RestorePlan, facts: TargetFacts) -> list[Finding]:
    by_id = plan.toc.by_id()
    absent = []
    for entry in plan.selection.entries:
        if entry.desc != "TABLE DATA":
            continue
        tables = [by_id[d] for d in entry.dependencies if d in by_id and by_id[d].desc == "TABLE"]
        if tables and tables[0].dump_id not in facts.present:
            absent.append(tables[0].qualified)
    if absent:
        return [
            Finding(
                "error",
                "target",
                f"--data-only needs the tables in the target, which lacks {', '.join(absent[:4])}"
                f"{f' and {len(absent) - 4} more' if len(absent) > 4 else ''}: restore the"
                " schema first (--schema-only), or restore without --data-only",
            )
        ]
    findings = [Finding("ok", "target", "every table to load exists in the target")]
    filled = [f"{s}.{n}" for (s, n), rows in plan.rows_before.items() if rows]
    if filled:
        findings.append(
            Finding(
                "warn",
                "target",
                f"{', '.join(filled[:4])}{' …' if len(filled) > 4 else ''} already hold rows:"
                " the restore adds the backup's rows to them (duplicates fail the restore)",
            )
        )
    if not facts.superuser:
        findings.append(
            Finding(
                "warn",
                "privileges",
                f"role {facts.role} is not a superuser, so triggers and foreign keys stay"
                " active during the load (a trigger may add rows, a foreign key may reject"
                " them); a superuser restore disables them",
            )
        )
    return findings


def _space_finding(
    manifest: Manifest, plan: RestorePlan, facts: TargetFacts, options: RestoreOptions
) -> Finding:
    if options.schema_only:
        return Finding("ok", "space", "schema only: next to no space needed")
    if plan.selection.whole:
        need = manifest.source.database_size or sum(t.bytes for t in manifest.tables)
        what = "the source database's size"
    else:
        need = sum(t.bytes for t in plan.tables)
        what = "the selected tables' data"
    if facts.free_bytes is None:
        return Finding(
            "warn",
            "space",
            f"cannot measure free space on the target ({facts.free_unknown}); make sure it has"
            f" about {_human(need)} free ({what})",
        )
    if facts.free_bytes < need + DISK_MARGIN:
        said = (
            f"the target's data volume ({facts.data_directory}) has {_human(facts.free_bytes)}"
            f" free but the restore needs about {_human(need)} ({what})"
        )
        if options.force:
            return Finding("warn", "space", f"{said}; trying anyway (--force)")
        return Finding("error", "space", f"{said}: free space, or pass --force to try")
    return Finding(
        "ok",
        "space",
        f"{_human(facts.free_bytes)} free on {facts.data_directory}, the restore needs about"
        f" {_human(need)}",
    )


def _privilege_findings(
    plan: RestorePlan, facts: TargetFacts, options: RestoreOptions
) -> list[Finding]:
    findings = _owner_findings(plan, facts, options)
    if facts.superuser:
        return [Finding("ok", "privileges", f"role {facts.role} is a superuser"), *findings]
    creates = plan.creates if not options.data_only else []
    new_schemas = [e.tag for e in creates if e.desc == "SCHEMA"]
    if new_schemas and not facts.create_in_database:
        findings.append(
            Finding(
                "error",
                "privileges",
                f"role {facts.role} may not create schemas in {facts.database!r} (needs CREATE"
                f" on the database) but the backup creates {', '.join(new_schemas[:4])}:"
                f" GRANT CREATE ON DATABASE, or connect as the database owner",
            )
        )
    used = sorted(
        {
            e.namespace
            for e in creates
            if e.namespace and e.namespace not in new_schemas and e.desc not in ATTACHED_KINDS
        }
    )
    denied = [s for s in used if s in facts.create_in_schema and not facts.create_in_schema[s]]
    if denied:
        findings.append(
            Finding(
                "error",
                "privileges",
                f"role {facts.role} may not create objects in schema(s) {', '.join(denied)}:"
                " GRANT CREATE ON SCHEMA, or connect as their owner",
            )
        )
    for entry in creates:
        if entry.desc != "EXTENSION" or entry.dump_id in facts.present:
            continue
        trusted = facts.extensions.get(entry.tag)
        if trusted is None:
            findings.append(
                Finding(
                    "error",
                    "extensions",
                    f"extension {entry.tag} is not installed on the target server: install"
                    " its package there, or --exclude it by restoring selected schemas",
                )
            )
        elif not trusted:
            findings.append(
                Finding(
                    "error",
                    "extensions",
                    f"extension {entry.tag} needs a superuser to create and role"
                    f" {facts.role} is not one: create it first as a superuser, or connect as"
                    " one",
                )
            )
    if not any(f.level == "error" for f in findings):
        findings.append(
            Finding("ok", "privileges", f"role {facts.role} may create what the backup holds")
        )
    return findings


def _owner_findings(
    plan: RestorePlan, facts: TargetFacts, options: RestoreOptions
) -> list[Finding]:
    """Restoring ownership needs the owners to exist and the role to be able to act as them."""
    if options.no_owner or options.data_only:
        return []
    owners = sorted({e.owner for e in plan.selection.work if e.owner})
    absent = [o for o in owners if o not in facts.roles]
    foreign = [o for o in owners if o in facts.roles and o not in facts.member_of]
    findings = []
    if absent:
        findings.append(
            Finding(
                "error",
                "owners",
                f"the backup's objects belong to role(s) {', '.join(absent[:4])}, missing"
                " from the target: create them first (the backup's globals artifact has"
                " them), or pass --no-owner",
            )
        )
    if foreign and not facts.superuser:
        findings.append(
            Finding(
                "error",
                "owners",
                f"role {facts.role} may not give objects to {', '.join(foreign[:4])}:"
                " connect as a member of those roles or a superuser, or pass --no-owner",
            )
        )
    return findings


def _check_options(options: RestoreOptions, target: ConnInfo | Path) -> None:
    if options.jobs < 1:
        raise ConfigError("--jobs must be 1 or more")
    if options.schema_only and options.data_only:
        raise ConfigError("--schema-only and --data-only exclude each other; give one")
    if options.data_only and options.clean:
        raise ConfigError(
            "--clean drops objects and --data-only loads rows only; to replace a table's"
            " rows restore it with --table NAME --clean"
        )
    if options.data_only and options.create and isinstance(target, ConnInfo):
        raise ConfigError("--data-only needs existing tables; a database made by --create has none")


# -- running pg_restore -------------------------------------------------------------------


def _create_target(target: ConnInfo) -> bool:
    name = target.database
    with target.with_database("postgres").connect(autocommit=True) as db:
        if db.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone():
            raise RestoreError(
                f"database {name!r} appeared while bika was planning; restore into it without"
                " --create, or choose a new name"
            )
        db.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return True


def _drop_created(target: ConnInfo) -> str:
    name = target.database
    try:
        with target.with_database("postgres").connect(autocommit=True) as db:
            db.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )
    except Exception as exc:  # BikaError or psycopg's errors alike
        return f"database {name!r}, created by this restore, could not be dropped: {exc}"
    return f"database {name!r}, created by this restore, has been dropped"


def _selection_args(options: RestoreOptions, listing: Path | None) -> list[str]:
    """pg_restore's options for the selection; --clean is bika's own (see clean_sql)."""
    args = ["--verbose"]
    if options.no_owner:
        args += ["--no-owner", "--no-privileges"]
    if options.schema_only:
        args.append("--schema-only")
    if options.data_only:
        args.append("--data-only")
    if listing is not None:
        args.append(f"--use-list={listing}")
    return args


@contextmanager
def _use_list(plan: RestorePlan, options: RestoreOptions) -> Iterator[Path | None]:
    """A pg_restore --use-list file of the selection, in archive order (pg_restore runs a
    list in its order, and a streamed archive cannot be read out of order)."""
    if not plan.selection.use_list:
        yield None
        return
    fd, name = tempfile.mkstemp(prefix="bika-restore-", suffix=".list", dir=options.temp_dir)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            for entry in plan.selection.entries:
                label = " ".join(f"{entry.desc} {entry.namespace or '-'} {entry.tag}".split())
                handle.write(f"{entry.dump_id}; {label}\n")
        yield Path(name)
    finally:
        Path(name).unlink(missing_ok=True)


def clean_sql(plan: RestorePlan) -> str:
    """What --clean runs before loading: the archive's own drop statements for the selection,
    made IF EXISTS, in reverse archive order, without those that dropping their table does.

    pg_restore --clean also drops each constraint and index of a table it then drops; on a
    partition that fails ("cannot drop inherited constraint"), so bika leaves those out."""
    chosen = {e.dump_id for e in plan.selection.entries}
    by_id = plan.toc.by_id()
    lines = [
        "-- bika restore --clean: the backup's objects, dropped if the target has them",
        "SET client_min_messages = warning;",
    ]
    for entry in reversed(plan.selection.entries):
        if entry.desc in SETUP_KINDS:
            continue
        if entry.desc == "BLOB METADATA" or entry.desc == "BLOB":
            oids = entry.large_objects or ((int(entry.tag),) if entry.tag.isdigit() else ())
            lines += [
                "SELECT pg_catalog.lo_unlink(oid) FROM pg_catalog.pg_largeobject_metadata"
                f" WHERE oid = '{oid}';"
                for oid in oids
            ]
            continue
        if not entry.drop or entry.drop.startswith("--"):
            continue
        # foreign keys go first so tables can go; defaults so their sequences can
        if entry.desc in ATTACHED_KINDS and entry.desc not in ("FK CONSTRAINT", "DEFAULT"):
            owner = _relation_of(entry, by_id)
            if owner is not None and owner.dump_id in chosen and owner.desc != "SEQUENCE":
                continue
        lines.append(_if_exists(entry).strip())
    return "\n".join(lines) + "\n"


def _if_exists(entry: TocEntry) -> str:
    """The drop statement with IF EXISTS where pg_restore --if-exists would put it."""
    statement = entry.drop or ""
    prefix = ""
    if statement.startswith("ALTER TABLE"):
        prefix = "ALTER TABLE IF EXISTS"
        statement = statement[len("ALTER TABLE") :]
    if entry.desc in ("DEFAULT", "DATABASE PROPERTIES") or statement.startswith(
        "CREATE OR REPLACE VIEW"
    ):
        return prefix + statement
    if entry.desc in ("CONSTRAINT", "CHECK CONSTRAINT", "FK CONSTRAINT"):
        keyword = "DROP CONSTRAINT"
    else:
        keyword = f"DROP {entry.desc}"
    at = statement.find(keyword)
    if at < 0:
        return prefix + statement
    end = at + len(keyword)
    return f"{prefix}{statement[:at]}{keyword} IF EXISTS{statement[end:]}"


def _load(
    repo: Repository,
    manifest: Manifest,
    target: ConnInfo,
    identities: list[object],
    options: RestoreOptions,
    plan: RestorePlan,
    pg_restore: Path,
    progress: Progress | None,
    on_step: StepProgress | None,
) -> None:
    artifact = manifest.artifacts["database"]
    label = f"{manifest.id}/database"
    conninfo, env = target.libpq_args()
    facts = plan.facts
    assert facts is not None
    older = binaries.major(plan.tool_version) >= TRANSACTION_TIMEOUT_SINCE > facts.server_major
    clean = clean_sql(plan) if options.clean and facts.database_exists else ""
    psql = [
        str(binaries.tool("psql", pg_restore.parent)),
        "--no-psqlrc",
        "--quiet",
        "--set=ON_ERROR_STOP=1",
        f"--dbname={conninfo}",
        "--file=-",
    ]
    with _use_list(plan, options) as listing:
        args = _selection_args(options, listing)
        if options.data_only and facts.superuser:
            args.append("--disable-triggers")
        if options.jobs > 1:
            if clean:
                # a parallel restore is not one transaction anyway: drop first, then load
                _run_sql([*psql, "--single-transaction"], clean, target, env, plan)
            _load_parallel(
                repo,
                artifact,
                identities,
                label,
                target,
                options,
                plan,
                [str(pg_restore), f"--dbname={conninfo}", *args],
                env,
                progress,
                on_step,
            )
            return
        if older or clean:
            # pg_restore's SQL passes through bika (portable, with the drops inside its
            # transaction) on its way to psql
            argv = [str(pg_restore), "--file=-", "--single-transaction", *args]
            with run(psql, conn=target, env=env, stdin=True, stdout=False) as sink:
                script = _Script(_PipeSink(sink.stdin).write, clean=clean)
                try:
                    _through_pg_restore(
                        repo, artifact, identities, label, argv, script, plan, progress, on_step
                    )
                    sink.stdin.close()
                except _PipeClosed:
                    pass  # psql stopped on an error: its stderr says which
                except BaseException:
                    sink.kill()
                    raise
                code = sink.wait()
                _check_result(code, "", sink.stderr_text(), target, plan, script)
            return
        argv = [
            str(pg_restore),
            f"--dbname={conninfo}",
            "--single-transaction",
            "--exit-on-error",
            *args,
        ]
        with run(argv, conn=target, env=env, stdin=True, stdout=False) as child:
            feeder = _Feeder(repo, artifact, identities, label, child.stdin, progress)
            feeder.start()
            tracker = _Tracker(child, plan, on_step)
            tracker.follow()
            code = child.wait()
            feeder.join()
            feeder.raise_error()
            _check_result(code, child.stderr_text(), "", target, plan)


def _load_parallel(
    repo: Repository,
    artifact: Artifact,
    identities: list[object],
    label: str,
    target: ConnInfo,
    options: RestoreOptions,
    plan: RestorePlan,
    argv: list[str],
    env: dict[str, str],
    progress: Progress | None,
    on_step: StepProgress | None,
) -> None:
    """pg_restore --jobs needs a seekable archive: decrypt it to a private temp file first."""
    with _plain_file(artifact.plain_size, options.temp_dir) as path:
        with repo.storage.open(artifact.key) as source, open(path, "wb") as out:
            decode(source, out, identities, name=label, progress=progress)
        with run(
            [*argv, f"--jobs={options.jobs}", str(path)], conn=target, env=env, stdout=False
        ) as child:
            _Tracker(child, plan, on_step).follow()
            code = child.wait()
            # each parallel session repeats pg_restore's opening SETs; on a server before 17
            # the transaction_timeout one fails in each, harmlessly (_errors skips it)
            _check_result(code, child.stderr_text(), "", target, plan)


def _run_sql(
    psql: list[str], text: str, target: ConnInfo, env: dict[str, str], plan: RestorePlan
) -> None:
    with run(psql, conn=target, env=env, stdin=True, stdout=False) as child:
        with contextlib.suppress(BrokenPipeError):
            child.stdin.write(text.encode())
            child.stdin.close()
        code = child.wait()
        _check_result(code, "", child.stderr_text(), target, plan)


def _through_pg_restore(
    repo: Repository,
    artifact: Artifact,
    identities: list[object],
    label: str,
    argv: list[str],
    script: _Script,
    plan: RestorePlan,
    progress: Progress | None,
    on_step: StepProgress | None,
) -> None:
    """Stream the archive through `pg_restore --file=-` into script."""
    with run(argv, stdin=True) as child:
        feeder = _Feeder(repo, artifact, identities, label, child.stdin, progress)
        feeder.start()
        tracker = _Tracker(child, plan, on_step)
        script.copy(child.stdout, tracker)
        code = child.wait()
        tracker.poll()
        feeder.join()
        feeder.raise_error()
        _check_result(code, child.stderr_text(), "", None, plan)


_HEADER = re.compile(rb"-- (?:Data for )?Name: (.*); Type: (.*); Schema: (.*); Owner: ")


class _Script:
    """pg_restore's SQL on its way to psql or a file: the one line servers before 17 reject
    becomes a guarded form (so it loads into any version), bika's --clean statements go in
    after the opening settings (inside the transaction), and line numbers are mapped to
    archive entries so psql's errors can name them."""

    def __init__(self, write: Callable[[bytes], object], *, clean: str = "") -> None:
        self._write = write
        self._clean = clean.encode()
        self.lines = 0
        self.headers: list[tuple[int, str]] = []  # (line number, "TABLE public.groups")

    def copy(self, out: IO[bytes], tracker: _Tracker) -> None:
        begun = placed = False
        for _ in range(400):  # the opening settings, then the first entry
            line = out.readline()
            if not line:
                break
            if line == TRANSACTION_TIMEOUT:
                line = PORTABLE_TRANSACTION_TIMEOUT
            if line == b"BEGIN;\n":
                begun = True
            elif begun and not placed and (line.startswith(b"--") or line == b"COMMIT;\n"):
                self._emit(self._clean)
                placed = True
            self._emit(line)
            if placed:
                break
        if self._clean and not placed:
            raise RestoreError(
                "pg_restore's SQL has no transaction to put --clean's statements in; restore"
                " into a new database with --create instead"
            )
        while chunk := out.read(1 << 20):
            self._emit(chunk)
            tracker.poll()

    def _emit(self, data: bytes) -> None:
        self._write(data)
        start, line = 0, self.lines
        at = data.find(b"\n-- ")
        while at >= 0:
            line += data.count(b"\n", start, at + 1)
            start = at + 1
            end = data.find(b"\n", at + 1)
            found = _HEADER.match(data, at + 1, end if end >= 0 else len(data))
            if found:
                name, kind, schema = (g.decode("utf-8", "replace") for g in found.groups())
                where = "" if schema == "-" else f"{schema}."
                self.headers.append((line + 1, f"{kind} {where}{name}"))
            at = data.find(b"\n-- ", at + 1)
        self.lines = line + data.count(b"\n", start)

    def entry_at(self, line: int) -> str:
        at = bisect.bisect_right(self.headers, (line, "\uffff")) - 1
        return self.headers[at][1] if at >= 0 else ""


class _Feeder(threading.Thread):
    """Decrypts the artifact into a child's stdin while the caller watches the child."""

    def __init__(
        self,
        repo: Repository,
        artifact: Artifact,
        identities: list[object],
        label: str,
        stdin: IO[bytes],
        progress: Progress | None,
    ) -> None:
        super().__init__(daemon=True, name="bika-restore-feed")
        self._repo = repo
        self._artifact = artifact
        self._identities = identities
        self._label = label
        self._stdin = stdin
        self._progress = progress
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            with self._repo.storage.open(self._artifact.key) as source:
                decode(
                    source,
                    _PipeSink(self._stdin),
                    self._identities,
                    name=self._label,
                    progress=self._progress,
                )
        except _PipeClosed:
            pass  # the child stopped reading: its exit code and stderr say why
        except BaseException as exc:
            self.error = exc
        finally:
            with contextlib.suppress(OSError, ValueError):
                self._stdin.close()

    def raise_error(self) -> None:
        if self.error is not None:
            raise self.error


class _PipeClosed(Exception):
    pass


class _PipeSink:
    def __init__(self, pipe: IO[bytes]) -> None:
        self._pipe = pipe

    def write(self, data: bytes) -> int:
        try:
            return self._pipe.write(data)
        except (BrokenPipeError, ValueError) as exc:
            raise _PipeClosed from exc


_STEP_PREFIXES = (
    "creating ",
    "processing data for table ",
    "executing SEQUENCE SET ",
    "executing BLOB",
    "processing BLOBS",
    "restoring large object",
)


class _Tracker:
    """Turns pg_restore --verbose lines into steps for a progress bar."""

    def __init__(self, child: Child, plan: RestorePlan, on_step: StepProgress | None) -> None:
        self._child = child
        self._on_step = on_step
        self._seen = 0
        self._done = 0
        self._total = len(plan.selection.work)

    def follow(self) -> None:
        """Report steps until the child exits."""
        while self._child.proc.poll() is None:
            time.sleep(0.1)
            self.poll()
        self._child.wait()
        self.poll()

    def poll(self) -> None:
        if self._on_step is None:
            return
        # Child keeps stderr lines in arrival order; following that list spares a second
        # reader on the same pipe
        lines = self._child._stderr
        doing = ""
        while self._seen < len(lines):
            text = lines[self._seen].decode("utf-8", "replace").strip()
            self._seen += 1
            if not text.startswith("pg_restore: "):
                continue
            text = text[len("pg_restore: ") :]
            if text.startswith(_STEP_PREFIXES):
                if not text.startswith("restoring large object"):
                    self._done = min(self._done + 1, self._total)
                doing = text
        if doing:
            self._on_step(RestoreStep(self._done, self._total, doing))


def _check_result(
    code: int,
    stderr: str,
    psql_stderr: str,
    target: ConnInfo | None,
    plan: RestorePlan,
    script: _Script | None = None,
) -> None:
    errors = _errors(stderr, plan) + _psql_errors(psql_stderr, script)
    if not errors and (code == 0 or _only_tolerated(stderr)):
        return
    if not errors:
        lines = [line for line in (stderr + psql_stderr).splitlines() if line.strip()]
        errors = [lines[-1].strip() if lines else f"exit code {code}"]
    where = f"restore into {target.redacted()}" if target else f"pg_restore of {plan.backup_id}"
    shown = "; ".join(errors[:3])
    more = f" (and {len(errors) - 3} more)" if len(errors) > 3 else ""
    raise RestoreFailed(f"{where} failed: {shown}{more}", errors)


def _only_tolerated(stderr: str) -> bool:
    return 'unrecognized configuration parameter "transaction_timeout"' in stderr


def _errors(stderr: str, plan: RestorePlan) -> list[str]:
    """pg_restore's errors, each with the archive entry it was restoring and any DETAIL."""
    by_id = plan.toc.by_id()
    errors: list[str] = []
    entry = ""
    for raw in stderr.splitlines():
        line = raw.strip()
        if line.startswith("pg_restore: from TOC entry "):
            number = line[len("pg_restore: from TOC entry ") :].split(";", 1)[0]
            known = by_id.get(int(number)) if number.isdigit() else None
            entry = f"{known.name}: " if known else ""
        elif line.startswith("pg_restore: error: "):
            message = line[len("pg_restore: error: ") :]
            message = message.replace("could not execute query: ", "").replace("ERROR:  ", "")
            if "transaction_timeout" in message:
                entry = ""
                continue
            errors.append(entry + message)
            entry = ""
        elif line.startswith("DETAIL:") and errors:
            errors[-1] += f" ({line[len('DETAIL:') :].strip()})"
    return errors


_PSQL_ERROR = re.compile(r"psql:<stdin>:(\d+): ERROR:\s+(.*)")


def _psql_errors(stderr: str, script: _Script | None) -> list[str]:
    """psql's errors, each with the archive entry its line belongs to and any DETAIL."""
    errors: list[str] = []
    for raw in stderr.splitlines():
        line = raw.strip()
        found = _PSQL_ERROR.match(line)
        if found:
            entry = script.entry_at(int(found.group(1))) if script is not None else ""
            errors.append(f"{entry}: {found.group(2)}" if entry else found.group(2))
        elif "ERROR:" in line:
            errors.append(" ".join(line.split("ERROR:", 1)[1].split()))
        elif line.startswith("DETAIL:") and errors:
            errors[-1] += f" ({line[len('DETAIL:') :].strip()})"
    return errors


def _checks(target: ConnInfo, plan: RestorePlan, options: RestoreOptions) -> list[TableCheck]:
    if options.schema_only:
        tables = [(e.namespace or "", e.tag) for e in plan.selection.entries if e.desc == "TABLE"]
        found = catalog.exact_rows(target, tables)
        return [TableCheck(f"{s}.{n}", 0, found[(s, n)], rows_compared=False) for s, n in tables]
    counts = catalog.exact_rows(target, [(t.schema_, t.name) for t in plan.tables])
    checks = []
    for table in plan.tables:
        key = (table.schema_, table.name)
        restored = counts[key]
        if restored is not None and options.data_only:
            restored -= plan.rows_before.get(key) or 0  # the rows this restore added
        checks.append(TableCheck(table.qualified, table.rows, restored))
    return checks


@contextmanager
def _plain_file(size: int, temp_dir: Path | None) -> Iterator[Path]:
    """A private temp file for pg_restore --jobs, after checking there is room for it."""
    folder = temp_dir or Path(tempfile.gettempdir())
    free = shutil.disk_usage(folder).free
    if free < size + DISK_MARGIN:
        raise RestoreError(
            f"--jobs needs a {size >> 20} MiB temporary file but {folder} has {free >> 20} MiB"
            " free; free space, set TMPDIR to a larger disk, or restore without --jobs"
        )
    fd, name = tempfile.mkstemp(prefix="bika-restore-", suffix=".pgdump", dir=folder)
    os.close(fd)
    try:
        yield Path(name)
    finally:
        Path(name).unlink(missing_ok=True)


@contextmanager
def _private_file(path: Path) -> Iterator[IO[bytes]]:
    """A new file only its owner may read; never an existing one; removed if writing fails."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise RestoreError(
            f"{path} already exists; bika never overwrites a file: remove it or choose another name"
        ) from None
    except OSError as exc:
        raise RestoreError(f"cannot create {path}: {exc.strerror}") from None
    try:
        with os.fdopen(fd, "wb") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
    except BaseException:
        path.unlink(missing_ok=True)
        raise


def _human(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1024
    return f"{n:.1f} TiB"
