"""The pg_restore driver: pg_restore (and psql) run for a job, the archive streamed in, the SQL
adapted on its way (servers before 17, bika's --clean), progress read from --verbose, errors
named by archive entry, the --use-list file; and the psql that loads a roles script.
"""

from __future__ import annotations

import bisect
import contextlib
import os
import queue
import re
import secrets
import tempfile
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Protocol, TypeVar

from bika import scratch
from bika.background import Background
from bika.errors import DumpError, IntegrityError, RestoreError, RestoreFailed
from bika.postgres import binaries, catalog
from bika.postgres.archive import ArchiveToc, TocEntry
from bika.postgres.connection import ConnInfo
from bika.postgres.process import Child, StderrLine, run
from bika.postgres.toc import ATTACHED_KINDS, SETUP_KINDS, relation_of
from bika.storage import Sink
from bika.stream import Progress, StreamStats

T = TypeVar("T")

# pg_restore 17+ starts every session with this; servers before 17 reject it (it is the only
# statement of pg_restore 18 that PostgreSQL 15 refuses, see docs/RESTORE-options.md). This
# module is the one place that knows: the one-job path rewrites the line (_Script), the
# parallel path tolerates its error (_only_tolerated, _errors).
TRANSACTION_TIMEOUT_SINCE = 17
TRANSACTION_TIMEOUT = b"SET transaction_timeout = 0;\n"
PORTABLE_TRANSACTION_TIMEOUT = (
    b"DO $$BEGIN IF current_setting('server_version_num')::int >= 170000"
    b" THEN SET transaction_timeout = 0; END IF; END$$;\n"
)


@dataclass(frozen=True)
class RestoreStep:
    """pg_restore's progress: `done` of `total` archive entries, and what it is doing now."""

    done: int
    total: int
    doing: str


StepProgress = Callable[[RestoreStep], None]

Table = tuple[str, str]
RowCounter = Callable[[list[Table]], dict[Table, int | None]]
"""Exact rows of each table as the restore's own session sees them (None: no such table)."""
BeforeCommit = Callable[[RowCounter], None]
"""Judges the loaded rows before they are committed: raising rolls the restore back."""


class Archive(Protocol):
    """The archive a restore reads, as pg_restore's driver needs it: bika's StoredArchive
    (operations/stored_archive.py) is one."""

    def decode(self, sink: Sink, progress: Progress | None = None) -> StreamStats:
        """Decrypt and decompress the archive into sink."""
        ...

    def matches(self, stats: StreamStats | None) -> bool:
        """Whether what was read is the archive the manifest describes."""
        ...

    def mismatch(self) -> IntegrityError:
        """What to say when it is not."""
        ...


@dataclass(frozen=True)
class PgRestoreJob:
    """What pg_restore restores and how: plain values, decided by the restore operation."""

    toc: ArchiveToc
    label: str
    """The backup id, for messages."""
    steps: int
    """How many archive entries the progress counts (those past the session setup)."""
    entries: list[TocEntry] | None = None
    """The entries to restore, in archive order, as a --use-list; None: the whole archive."""
    jobs: int = 1
    no_owner: bool = False
    schema_only: bool = False
    data_only: bool = False
    disable_triggers: bool = False
    clean: str = ""
    """bika's --clean statements (clean_sql), run inside the restore's transaction."""
    create: bool = False
    """write_sql: a script that creates its database (pg_restore --create)."""
    drop_created: bool = False
    """write_sql with create: the script drops that database first (--clean --if-exists)."""
    archive_file: Path | None = None
    """The archive decrypted to a file: what pg_restore --jobs reads (needed with jobs > 1)."""
    temp_dir: Path | None = None
    """Where the --use-list file goes (in bika's scratch folder)."""


def adapts_sql(pg_restore_major: int, server_major: int) -> bool:
    """pg_restore writes a statement this server rejects (transaction_timeout, 17+): bika
    adapts the SQL on its way to psql, which only a one-job restore does."""
    return pg_restore_major >= TRANSACTION_TIMEOUT_SINCE > server_major


def load(
    archive: Archive,
    target: ConnInfo,
    job: PgRestoreJob,
    pg_restore: Path,
    progress: Progress | None,
    on_step: StepProgress | None,
    before_commit: BeforeCommit | None = None,
) -> None:
    """Restore the job's entries into the target database, which exists by now.

    With one job the whole load is one transaction that bika ends itself: it commits only
    once the archive read matched the manifest and before_commit accepted the rows."""
    conninfo, env = target.libpq_args()
    clean = job.clean
    psql = [
        str(binaries.tool("psql", pg_restore.parent)),
        "--no-psqlrc",
        "--quiet",
        "--set=ON_ERROR_STOP=1",
        f"--dbname={conninfo}",
        "--file=-",
    ]
    with _use_list(job) as listing:
        args = _selection_args(job, listing)
        if job.disable_triggers:
            args.append("--disable-triggers")
        if job.jobs > 1:
            if clean:
                # a parallel restore is not one transaction anyway: drop first, then load
                _run_sql([*psql, "--single-transaction"], clean, target, env, job)
            _load_parallel(
                target, job, [str(pg_restore), f"--dbname={conninfo}", *args], env, on_step
            )
            if before_commit is not None:
                before_commit(lambda tables: catalog.exact_rows(target, tables))
            return
        # pg_restore's SQL passes through bika on its way to psql: made portable (servers
        # before 17), with --clean's drops inside its transaction, and without its COMMIT
        # until the archive has been read to the end and matched the manifest
        argv = [str(pg_restore), "--file=-", "--single-transaction", *args]
        commit_sent = False
        with run([*psql, "--tuples-only", "--no-align"], conn=target, env=env, stdin=True) as sink:
            session = _Session(sink)
            script = _Script(session.write, clean=clean, hold_commit=True)
            try:
                _through_pg_restore(archive, argv, script, job, progress, on_step)
                if before_commit is not None:
                    before_commit(session.rows)
                script.release()
                session.close()
                commit_sent = True
            except _PipeClosed:
                pass  # psql stopped on an error: its stderr says which
            except IntegrityError as exc:
                sink.kill()
                raise IntegrityError(
                    f"{exc}; nothing was committed: the target is as it was"
                ) from None
            except BaseException:
                sink.kill()  # nothing committed: psql ends, its transaction with it
                raise
            code = sink.wait()
            _check_result(code, "", sink.stderr_text(), target, job, script)
            if not commit_sent:
                raise RestoreError(
                    f"restore into {target.redacted()} failed: psql ended before the restore"
                    " was committed; nothing was restored"
                )


def write_sql(
    archive: Archive,
    out: IO[bytes],
    job: PgRestoreJob,
    pg_restore: Path,
    progress: Progress | None,
    on_step: StepProgress | None,
) -> None:
    """Write the job's entries as one SQL script, loadable into any supported server."""
    with _use_list(job) as listing:
        argv = [str(pg_restore), "--file=-", *_selection_args(job, listing)]
        clean = ""
        if job.create:
            # a script that makes its own database: dropping that is the clean
            argv.append("--create")
            if job.drop_created:
                argv += ["--clean", "--if-exists"]
        else:
            # one transaction: a load that fails half-way leaves nothing behind
            argv.append("--single-transaction")
            clean = job.clean
        script = _Script(out.write, clean=clean)
        _through_pg_restore(archive, argv, script, job, progress, on_step)


def listed_tables(
    pg_restore: Path, feed: Callable[[Callable[[bytes], object]], T], label: str
) -> tuple[T, set[str]]:
    """The "<schema> <table>" of each TABLE DATA entry `pg_restore --list` shows for the
    archive that `feed` writes (given the write function; what it returns is returned too)."""
    with run([pg_restore, "--list", "--file=-"], stdin=True) as child:
        listing: list[bytes] = []
        reader = threading.Thread(target=lambda: listing.extend(child.stdout), daemon=True)
        reader.start()
        fed = feed(child.stdin.write)
        with contextlib.suppress(BrokenPipeError):
            child.stdin.close()
        code = child.wait()
        reader.join(timeout=30)
        if code != 0:
            raise DumpError(f"{label}: pg_restore --list failed: {child.stderr_text().strip()}")
    tables = set()
    for raw in listing:
        line = raw.decode("utf-8", "replace").rstrip("\n")
        if line.startswith(";") or " TABLE DATA " not in line:
            continue
        rest = line.split(" TABLE DATA ", 1)[1]
        # "<schema> <table> <owner>": the owner is the last word
        tables.add(rest.rsplit(" ", 1)[0])
    return fed, tables


def _load_parallel(
    target: ConnInfo,
    job: PgRestoreJob,
    argv: list[str],
    env: dict[str, str],
    on_step: StepProgress | None,
) -> None:
    """pg_restore --jobs reads a seekable archive: the decrypted file the caller made."""
    if job.archive_file is None:
        raise ValueError("a restore with more than one job needs the archive in a file")
    with run(
        [*argv, f"--jobs={job.jobs}", str(job.archive_file)],
        conn=target,
        env=env,
        stdout=False,
        on_stderr_line=_Tracker.of(job, on_step),
    ) as child:
        code = child.wait()
        # each parallel session repeats pg_restore's opening SETs; on a server before 17
        # the transaction_timeout one fails in each, harmlessly (_errors skips it)
        _check_result(code, child.stderr_text(), "", target, job)


def _run_sql(
    psql: list[str], text: str, target: ConnInfo, env: dict[str, str], job: PgRestoreJob
) -> None:
    with run(psql, conn=target, env=env, stdin=True, stdout=False) as child:
        with contextlib.suppress(BrokenPipeError):
            child.stdin.write(text.encode())
            child.stdin.close()
        code = child.wait()
        _check_result(code, "", child.stderr_text(), target, job)


def _through_pg_restore(
    archive: Archive,
    argv: list[str],
    script: _Script,
    job: PgRestoreJob,
    progress: Progress | None,
    on_step: StepProgress | None,
) -> None:
    """Stream the archive through `pg_restore --file=-` into script; the archive is read to
    its end, and raises IntegrityError unless it is the one the manifest describes."""
    with run(argv, stdin=True, on_stderr_line=_Tracker.of(job, on_step)) as child:
        with _Feeder(archive, child, progress) as feeder:
            script.copy(child.stdout)
            code = child.wait()
            _check_result(code, child.stderr_text(), "", None, job)
        feeder.raise_error()
        if not archive.matches(feeder.stats):
            raise archive.mismatch()


# How much of the end of pg_restore's SQL waits for the archive check (its COMMIT is there).
_HELD = 64 << 10

_HEADER = re.compile(rb"-- (?:Data for )?Name: (.*); Type: (.*); Schema: (.*); Owner: ")


class _Script:
    """pg_restore's SQL on its way to psql or a file: the one line servers before 17 reject
    becomes a guarded form (so it loads into any version), bika's --clean statements go in
    after the opening settings (inside the transaction), and line numbers are mapped to
    archive entries so psql's errors can name them."""

    def __init__(
        self, write: Callable[[bytes], object], *, clean: str = "", hold_commit: bool = False
    ) -> None:
        self._write = write
        self._clean = clean.encode()
        self._hold = hold_commit
        self._pending = bytearray()
        self._tail = b""
        self.lines = 0
        self.headers: list[tuple[int, str]] = []  # (line number, "TABLE public.groups")

    def copy(self, out: IO[bytes]) -> None:
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
                self._feed(self._clean)
                placed = True
            self._feed(line)
            if placed:
                break
        if self._clean and not placed:
            raise RestoreError(
                "pg_restore's SQL has no transaction to put --clean's statements in; restore"
                " into a new database with --create instead"
            )
        while chunk := out.read(1 << 20):
            self._feed(chunk)
        if self._hold:
            self._hold_back_commit()

    def release(self) -> None:
        """Send the COMMIT (and what follows it) that copy() held back."""
        self._emit(self._tail)
        self._tail = b""

    def _feed(self, data: bytes) -> None:
        if not self._hold:
            self._emit(data)
            return
        # the script's last lines wait here: its COMMIT is among them
        self._pending += data
        if len(self._pending) > 2 * _HELD:
            cut = self._pending.rfind(b"\n", 0, len(self._pending) - _HELD) + 1
            if cut:
                self._emit(bytes(self._pending[:cut]))
                del self._pending[:cut]

    def _hold_back_commit(self) -> None:
        data = bytes(self._pending)
        self._pending.clear()
        at = data.rfind(b"\nCOMMIT;\n")
        start = at + 1 if at >= 0 else 0 if data.startswith(b"COMMIT;\n") else -1
        if start < 0:
            raise RestoreError(
                "pg_restore's SQL does not end its transaction with COMMIT; bika cannot hold"
                " the restore open until the archive is checked (please report it)"
            )
        self._emit(data[:start])
        self._tail = data[start:]

    def _emit(self, data: bytes) -> None:
        # the headers first: a psql that fails on this data stops the write half-way
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
        self._write(data)

    def entry_at(self, line: int) -> str:
        at = bisect.bisect_right(self.headers, (line, "\uffff")) - 1
        return self.headers[at][1] if at >= 0 else ""


class _Feeder:
    """Decrypts the archive into a child's stdin on a thread of its own while the caller
    watches the child, and reads it to the end even when the child stops reading early, so
    its hashes are known (`stats`). Left early (an error, an interrupt), it stops decrypting,
    kills the child, and waits for the thread: none is left decrypting behind bika's back."""

    def __init__(self, archive: Archive, child: Child, progress: Progress | None) -> None:
        self._archive = archive
        self._child = child
        self._sink = _PipeSink(child.stdin, keep_reading=True)
        self._progress = progress
        self.stats: StreamStats | None = None
        self._task = Background(self._feed, "bika-restore-feed")

    def __enter__(self) -> _Feeder:
        self._task.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *exc: object) -> None:
        if exc_type is not None:
            self._cancel()
        self._task.wait(self._cancel)
        failed = exc_type is not None and issubclass(exc_type, Exception)
        if failed and self._task.error is not None:
            raise self._task.error  # a damaged archive is why the child failed

    def _cancel(self) -> None:
        self._sink.cancelled = True
        self._child.kill()  # a thread blocked on the child's stdin is freed

    def _feed(self) -> None:
        stdin = self._child.stdin
        try:
            self.stats = self._archive.decode(self._sink, self._progress)
        except _Cancelled:
            pass  # the caller gave up: the child's exit code and stderr say why
        finally:
            with contextlib.suppress(OSError, ValueError):
                stdin.close()

    def raise_error(self) -> None:
        """Once the decryption has ended: what it raised, if anything."""
        self._task.wait(self._cancel)
        if self._task.error is not None:
            raise self._task.error


class _PipeClosed(Exception):
    pass


class _Cancelled(Exception):
    pass


class _PipeSink:
    """Writes into a child's stdin; with keep_reading, what the child no longer reads is
    dropped (until cancelled) instead of stopping the stream."""

    def __init__(self, pipe: IO[bytes], *, keep_reading: bool = False) -> None:
        self._pipe = pipe
        self._keep_reading = keep_reading
        self._closed = False
        self.cancelled = False

    def write(self, data: bytes) -> int:
        if self.cancelled:
            raise _Cancelled
        if self._closed:
            return len(data)
        try:
            return self._pipe.write(data)
        except (BrokenPipeError, ValueError) as exc:
            if not self._keep_reading:
                raise _PipeClosed from exc
            self._closed = True
            return len(data)

    def flush(self) -> None:
        try:
            self._pipe.flush()
        except (BrokenPipeError, ValueError) as exc:
            raise _PipeClosed from exc


class _Session:
    """The psql that runs a one-job restore: bika asks it questions inside the restore's
    transaction (lines of its output that start with a marker are the answers)."""

    def __init__(self, child: Child) -> None:
        self._child = child
        self._pipe = _PipeSink(child.stdin)
        self._marker = f"bika-{secrets.token_hex(8)}:"
        self._answers: queue.Queue[str | None] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True, name="bika-psql-out")
        self._reader.start()

    def write(self, data: bytes) -> int:
        return self._pipe.write(data)

    def close(self) -> None:
        self._pipe.flush()
        with contextlib.suppress(OSError, ValueError):
            self._child.stdin.close()

    def ask(self, statement: str) -> str:
        """Run one statement printing the marker and an answer; the answer. Raises
        _PipeClosed when psql has stopped (on an error, which its stderr names)."""
        self._pipe.write(statement.encode())
        self._pipe.flush()
        answer = self._answers.get()
        if answer is None:
            raise _PipeClosed
        return answer

    def rows(self, tables: list[Table]) -> dict[Table, int | None]:
        """A RowCounter inside the open transaction."""
        if not tables:
            return {}
        exists = catalog.parse_array(self.ask(catalog.tables_exist_sql(tables, self._marker)))
        present = [t for t, found in zip(tables, exists, strict=True) if found == "t"]
        counts: list[str] = []
        if present:
            counts = catalog.parse_array(self.ask(catalog.count_rows_sql(present, self._marker)))
        found = dict(zip(present, (int(c) for c in counts), strict=True))
        return {t: found.get(t) for t in tables}

    def _read(self) -> None:
        with contextlib.suppress(OSError, ValueError):
            for raw in self._child.stdout:
                line = raw.decode("utf-8", "replace").rstrip("\n")
                if line.startswith(self._marker):
                    self._answers.put(line[len(self._marker) :])
        self._answers.put(None)


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

    def __init__(self, total: int, on_step: StepProgress) -> None:
        self._on_step = on_step
        self._done = 0
        self._total = total

    @classmethod
    def of(cls, job: PgRestoreJob, on_step: StepProgress | None) -> StderrLine | None:
        """The stderr observer for run(), or None when nobody follows the steps."""
        return None if on_step is None else cls(job.steps, on_step).line

    def line(self, raw: bytes) -> None:
        text = raw.decode("utf-8", "replace").strip()
        if not text.startswith("pg_restore: "):
            return
        text = text[len("pg_restore: ") :]
        if text.startswith(_STEP_PREFIXES):
            if not text.startswith("restoring large object"):
                self._done = min(self._done + 1, self._total)
            self._on_step(RestoreStep(self._done, self._total, text))


def _check_result(
    code: int,
    stderr: str,
    psql_stderr: str,
    target: ConnInfo | None,
    job: PgRestoreJob,
    script: _Script | None = None,
) -> None:
    errors = _errors(stderr, job.toc) + _psql_errors(psql_stderr, script)
    if not errors and (code == 0 or _only_tolerated(stderr)):
        return
    if not errors:
        lines = [line for line in (stderr + psql_stderr).splitlines() if line.strip()]
        errors = [lines[-1].strip() if lines else f"exit code {code}"]
    where = f"restore into {target.redacted()}" if target else f"pg_restore of {job.label}"
    shown = "; ".join(errors[:3])
    more = f" (and {len(errors) - 3} more)" if len(errors) > 3 else ""
    raise RestoreFailed(f"{where} failed: {shown}{more}", errors)


def _only_tolerated(stderr: str) -> bool:
    return 'unrecognized configuration parameter "transaction_timeout"' in stderr


def _errors(stderr: str, toc: ArchiveToc) -> list[str]:
    """pg_restore's errors, each with the archive entry it was restoring and any DETAIL."""
    by_id = toc.by_id()
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


def _selection_args(job: PgRestoreJob, listing: Path | None) -> list[str]:
    """pg_restore's options for the selection; --clean is bika's own (see clean_sql)."""
    args = ["--verbose"]
    if job.no_owner:
        args += ["--no-owner", "--no-privileges"]
    if job.schema_only:
        args.append("--schema-only")
    if job.data_only:
        args.append("--data-only")
    if listing is not None:
        args.append(f"--use-list={listing}")
    return args


@contextmanager
def _use_list(job: PgRestoreJob) -> Iterator[Path | None]:
    """A pg_restore --use-list file of the selection, in archive order (pg_restore runs a
    list in its order, and a streamed archive cannot be read out of order)."""
    if job.entries is None:
        yield None
        return
    fd, name = tempfile.mkstemp(prefix="restore-", suffix=".list", dir=scratch.folder(job.temp_dir))
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            for entry in job.entries:
                label = " ".join(f"{entry.desc} {entry.namespace or '-'} {entry.tag}".split())
                handle.write(f"{entry.dump_id}; {label}\n")
        yield Path(name)
    finally:
        Path(name).unlink(missing_ok=True)


def clean_sql(entries: list[TocEntry], toc: ArchiveToc) -> str:
    """What --clean runs before loading: the archive's own drop statements for the entries,
    made IF EXISTS, in reverse archive order, without those that dropping their table does.

    pg_restore --clean also drops each constraint and index of a table it then drops; on a
    partition that fails ("cannot drop inherited constraint"), so bika leaves those out."""
    chosen = {e.dump_id for e in entries}
    by_id = toc.by_id()
    lines = [
        "-- bika restore --clean: the backup's objects, dropped if the target has them",
        "SET client_min_messages = warning;",
    ]
    for entry in reversed(entries):
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
            owner = relation_of(entry, by_id)
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


# -- a roles script ----------------------------------------------------------------------


def load_roles(bin_dir: Path, conn: ConnInfo, script: bytes) -> str | None:
    """Run a pg_dumpall --roles-only script with psql; its first error other than a role
    that already exists, if any."""
    psql = binaries.tool("psql", bin_dir)
    conninfo, env = conn.libpq_args()
    argv = [str(psql), "--no-psqlrc", "--quiet", f"--dbname={conninfo}", "--file=-"]
    with run(argv, conn=conn, env=env, stdin=True, stdout=False) as child:
        with contextlib.suppress(BrokenPipeError):
            child.stdin.write(script)
            child.stdin.close()
        code = child.wait()
        errors = [
            line.split("ERROR:", 1)[1].strip()
            for line in child.stderr_text().splitlines()
            if "ERROR:" in line and "already exists" not in line
        ]
    if errors:
        return errors[0]
    return None if code == 0 else f"psql exit code {code}"


def without_role(script: bytes, role: str) -> bytes:
    """The roles script minus the statements about `role` (the one a drill connects as: the
    source's own settings for it, NOSUPERUSER on a managed service, would lock bika out)."""
    names = {role.encode(), b'"' + role.encode() + b'"'}
    kept = []
    for line in script.splitlines(keepends=True):
        words = line.split()
        about_role = len(words) >= 3 and words[0] in (b"CREATE", b"ALTER") and words[1] == b"ROLE"
        if about_role and words[2].rstrip(b";") in names:
            continue
        kept.append(line)
    return b"".join(kept)


@contextmanager
def psql_session(psql: Path, target: ConnInfo) -> Iterator[Child]:
    """psql reading a script from its stdin, stopping at the first error (ON_ERROR_STOP)."""
    conninfo, env = target.libpq_args()
    argv: list[str | Path] = [psql, "-X", "-q", "-v", "ON_ERROR_STOP=1", f"--dbname={conninfo}"]
    with run(argv, conn=target, env=env, stdin=True, stdout=False) as session:
        yield session


def pipe_script(pg_restore: Path, use_list: Path, archive: Path, out: IO[bytes]) -> None:
    """The SQL script of the archive's entries in use_list, written to out; the statement
    pg_restore 17+ writes that older servers reject (transaction_timeout) made portable."""
    argv: list[str | Path] = [pg_restore, "-L", str(use_list), "--file=-", str(archive)]
    with run(argv) as child:
        for line in child.stdout:
            out.write(PORTABLE_TRANSACTION_TIMEOUT if line == TRANSACTION_TIMEOUT else line)
        if child.wait() != 0:
            said = child.stderr_text().strip()
            raise RestoreFailed(f"pg_restore could not read the archive: {said}", [said])


def first_psql_error(stderr: str) -> str:
    """The first ERROR psql reported, or its last line."""
    errors = [line.strip() for line in stderr.splitlines() if "ERROR" in line]
    if errors:
        return errors[0].split("ERROR:", 1)[-1].strip()
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    return lines[-1] if lines else "psql stopped"
