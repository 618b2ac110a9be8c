"""Restoring a backup into a database or a file: preflight, plan, pg_restore, then the proof.

A restore either ends with every restored table's exact row count matching the manifest, or
fails loudly naming what went wrong; "errors ignored on restore" is a failure, never a warning.
"""

from __future__ import annotations

import errno
import os
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import IO, Literal

import pyrage

from bika import scratch
from bika.errors import (
    BikaError,
    ConfigError,
    DumpError,
    IdentityError,
    RestoreError,
    RestoreFailed,
)
from bika.operations.restore_plan import (
    DATA_KINDS,
    Finding,
    RestoreOptions,
    RestorePlan,
    Selection,
    exclude_entries,
)
from bika.operations.restore_preflight import preflight, preflight_file
from bika.operations.restore_run import (
    ArchiveCopy,
    RestoreStep,
    RowCounter,
    StepProgress,
    StoredArchive,
    load,
    write_sql,
)
from bika.operations.restore_selection import clean_sql, select
from bika.postgres import binaries, catalog
from bika.postgres.connection import ConnInfo
from bika.postgres.preflight import ArchiveToc, inspect_target, read_toc
from bika.repository import Artifact, Manifest, Repository
from bika.storage import read_range
from bika.stream import Progress

# What the CLI, the drill and the tests use, wherever it is defined.
__all__ = [
    "DATA_KINDS",
    "ArchiveCopy",
    "ExportReport",
    "Finding",
    "PreflightRefused",
    "RestoreFailed",
    "RestoreOptions",
    "RestorePlan",
    "RestoreReport",
    "RestoreStep",
    "RowsDiffer",
    "Selection",
    "StepProgress",
    "StoredArchive",
    "TableCheck",
    "check_identity",
    "clean_sql",
    "exclude_entries",
    "export_backup",
    "find_backup_before",
    "find_latest_backup",
    "plan_restore",
    "read_archive_toc",
    "restore_backup",
]


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


class RowsDiffer(RestoreError):
    """A restored table's exact row count differs from the manifest's: `report` has each."""

    def __init__(self, message: str, report: RestoreReport) -> None:
        super().__init__(message)
        self.report = report


class PreflightRefused(RestoreError):
    """The preflight found something that would make the restore fail or do harm."""

    def __init__(self, plan: RestorePlan) -> None:
        self.plan = plan
        messages = [f.message for f in plan.blocked]
        super().__init__(f"restore of {plan.backup_id} refused: " + "; ".join(messages))


# -- entry points ------------------------------------------------------------------------


def plan_restore(
    repo: Repository,
    manifest: Manifest,
    target: ConnInfo | Path,
    identities: list[object],
    options: RestoreOptions,
    toc: ArchiveToc | None = None,
) -> RestorePlan:
    """Read the archive's TOC (unless the caller has: toc) and the target's state; decide
    and check, changing nothing."""
    _check_options(options, target)
    if toc is None:
        artifact = manifest.artifacts["database"]
        label = f"{manifest.id}/database"
        check_identity(repo, artifact.key, identities, label)
        toc = read_archive_toc(repo, artifact, identities, label)
    pg_restore = binaries.tool("pg_restore", binaries.find_bin_dir(options.pg_bin_dir))
    tool_version = binaries.tool_version(pg_restore)
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
    """Restore into a database after a preflight; with options.dry_run only plan and check.

    Every loaded table's exact rows must match the manifest, else RowsDiffer: with one job
    the counts are taken inside the restore's transaction, which is then rolled back."""
    started = time.monotonic()
    plan = _unblocked(plan or plan_restore(repo, manifest, target, identities, options))
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
    scratch.tidy(options.temp_dir)
    created = _create_target(target) if plan.create_database else False
    archive = StoredArchive.of(repo, manifest, identities)

    def judge(count: RowCounter) -> None:
        report.checks = _checks(count, plan, options)
        bad = [c for c in report.checks if not c.ok]
        if bad:
            first = bad[0]
            got = first.restored if first.restored is not None else "missing"
            outcome = (
                "the restore was rolled back: the target is as it was"
                if options.jobs == 1
                else "a --jobs restore is not one transaction: the target holds what was loaded"
            )
            raise RowsDiffer(
                f"restore of {manifest.id}: {len(bad)} table(s) differ from the backup, e.g."
                f" {first.table}: {got} rows restored, {first.expected} in the backup;"
                f" {outcome}; run `bika verify --read-data {manifest.id}`",
                report,
            )

    try:
        load(archive, target, options, plan, pg_restore, progress, on_step, judge)
    except BaseException as exc:
        if created:
            note = _drop_created(target)
            if isinstance(exc, RestoreFailed):
                raise RestoreFailed(f"{exc}; {note}", exc.errors) from exc
            if isinstance(exc, RowsDiffer):
                raise RowsDiffer(f"{exc}; {note}", exc.report) from exc
            if isinstance(exc, BikaError):
                raise type(exc)(f"{exc}; {note}") from exc
        raise
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
    plan = _unblocked(plan or plan_restore(repo, manifest, path, identities, options))
    kind: Literal["sql", "dump"] = "sql" if path.suffix == ".sql" else "dump"
    report = ExportReport(manifest.id, path, kind, 0, 0.0, plan.findings, plan, options.dry_run)
    if options.dry_run:
        return report
    scratch.tidy(options.temp_dir)
    archive = StoredArchive.of(repo, manifest, identities)
    with _private_file(path) as out:
        if kind == "dump":
            if not archive.save(out, progress):
                raise archive.mismatch()
        else:
            pg_restore = binaries.tool("pg_restore", binaries.find_bin_dir(options.pg_bin_dir))
            write_sql(archive, out, options, plan, pg_restore, progress, on_step)
    report.size = path.stat().st_size
    report.seconds = time.monotonic() - started
    return report


def check_identity(repo: Repository, key: str, identities: list[object], label: str) -> None:
    """Fail before touching any database if none of the identities opens the artifact."""
    head = read_range(repo.storage, key, 0, 4096)
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


def read_archive_toc(
    repo: Repository, artifact: Artifact, identities: list[object], label: str
) -> ArchiveToc:
    """The TOC from the start of the stored archive, reading no further than it."""
    try:
        StoredArchive(repo, artifact, identities, label).decode(_TocSink())
    except _TocComplete as done:
        return done.toc
    raise DumpError(f"{label}: the archive ends before its table of contents does (truncated)")


def find_backup_before(repo: Repository, when: datetime) -> str:
    """The newest backup that started strictly before `when`: see Repository.before."""
    return repo.before(when)


def find_latest_backup(repo: Repository) -> str:
    """The backup that started last: see Repository.latest."""
    return repo.latest()


# -- around the run -----------------------------------------------------------------------


def _check_options(options: RestoreOptions, target: ConnInfo | Path) -> None:
    if options.jobs < 1:
        raise ConfigError("--jobs must be 1 or more")
    if options.temp_dir is not None and not options.temp_dir.is_dir():
        what = "is not a folder" if options.temp_dir.exists() else "does not exist"
        raise ConfigError(f"--temp-dir {options.temp_dir} {what}; create it or choose another")
    if options.schema_only and options.data_only:
        raise ConfigError("--schema-only and --data-only exclude each other; give one")
    if options.data_only and options.clean:
        raise ConfigError(
            "--clean drops objects and --data-only loads rows only; to replace a table's"
            " rows restore it with --table NAME --clean"
        )
    if options.data_only and options.create and isinstance(target, ConnInfo):
        raise ConfigError("--data-only needs existing tables; a database made by --create has none")


def _unblocked(plan: RestorePlan) -> RestorePlan:
    if plan.blocked:
        raise PreflightRefused(plan)
    return plan


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


def _create_target(target: ConnInfo) -> bool:
    name = target.database
    server = target.with_database("postgres")
    with server.connect() as db:
        if db.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone():
            raise RestoreError(
                f"database {name!r} appeared while bika was planning; restore into it without"
                " --create, or choose a new name"
            )
    catalog.create_database(server, name)
    return True


def _drop_created(target: ConnInfo) -> str:
    name = target.database
    try:
        catalog.drop_database(target.with_database("postgres"), name)
    except Exception as exc:  # BikaError or psycopg's errors alike
        return f"database {name!r}, created by this restore, could not be dropped: {exc}"
    return f"database {name!r}, created by this restore, has been dropped"


def _checks(count: RowCounter, plan: RestorePlan, options: RestoreOptions) -> list[TableCheck]:
    if options.schema_only:
        tables = [(e.namespace or "", e.tag) for e in plan.selection.entries if e.desc == "TABLE"]
        found = count(tables)
        return [TableCheck(f"{s}.{n}", 0, found[(s, n)], rows_compared=False) for s, n in tables]
    counts = count([(t.schema_, t.name) for t in plan.tables])
    checks = []
    for table in plan.tables:
        key = (table.schema_, table.name)
        restored = counts[key]
        if restored is not None and options.data_only:
            restored -= plan.rows_before.get(key) or 0  # the rows this restore added
        checks.append(TableCheck(table.qualified, table.rows, restored))
    return checks


_DISK_FULL = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)


@contextmanager
def _private_file(path: Path) -> Iterator[IO[bytes]]:
    """A new file only its owner may read, never an existing one. It is written under a
    temporary name next to `path` and takes that name only once the block succeeded, so a
    failed or refused export leaves no file."""
    if path.exists() or path.is_symlink():
        raise RestoreError(
            f"{path} already exists; bika never overwrites a file: remove it or choose another name"
        )
    try:
        fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    except OSError as exc:
        raise RestoreError(f"cannot create {path}: {exc.strerror}") from None
    temp = Path(name)
    handle = os.fdopen(fd, "w+b")
    try:
        try:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        except BaseException as exc:
            # closing flushes what is buffered, and fails again on a full disk: never instead
            # of the error at hand, nor before the partial file is removed
            with suppress(OSError):
                handle.close()
            if isinstance(exc, OSError) and exc.errno in _DISK_FULL:
                raise RestoreError(
                    f"cannot write {path}: {exc.strerror}; the partial file has been removed:"
                    " free some space or choose another place"
                ) from None
            raise
        handle.close()
        try:
            os.link(temp, path)  # fails if path appeared meanwhile: never overwrites
        except FileExistsError:
            raise RestoreError(
                f"{path} appeared while bika was writing it; bika never overwrites a file:"
                f" remove it or choose another name"
            ) from None
        except OSError:  # a file system without hard links
            if path.exists():
                raise RestoreError(f"{path} appeared while bika was writing it") from None
            os.rename(temp, path)
    finally:
        temp.unlink(missing_ok=True)
