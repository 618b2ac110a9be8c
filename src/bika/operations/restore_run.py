"""Running pg_restore (and psql) for a plan: the archive streamed in from the repository, the
SQL adapted on its way, progress read from --verbose, and errors named by archive entry.
"""

from __future__ import annotations

import bisect
import contextlib
import os
import queue
import re
import secrets
import shutil
import tempfile
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from bika import scratch
from bika.background import Background
from bika.errors import IntegrityError, RestoreError, RestoreFailed
from bika.operations.restore_plan import DISK_MARGIN, RestoreOptions, RestorePlan
from bika.operations.restore_selection import clean_sql
from bika.postgres import binaries, catalog
from bika.postgres.archive import write_data_offsets
from bika.postgres.connection import ConnInfo
from bika.postgres.process import Child, StderrLine, run
from bika.repository import Artifact, Manifest, Repository
from bika.storage import Sink
from bika.stream import Progress, StreamStats, decode

# pg_restore 17+ starts every session with this; servers before 17 reject it (it is the only
# statement of pg_restore 18 that PostgreSQL 15 refuses, see docs/RESTORE-options.md).
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


@dataclass(frozen=True)
class StoredArchive:
    """The backup's database artifact in the repository, with the keys that open it."""

    repo: Repository
    artifact: Artifact
    identities: list[object]
    label: str  # "<backup id>/database", for messages

    @classmethod
    def of(cls, repo: Repository, manifest: Manifest, identities: list[object]) -> StoredArchive:
        return cls(repo, manifest.artifacts["database"], identities, f"{manifest.id}/database")

    def decode(self, sink: Sink, progress: Progress | None = None) -> StreamStats:
        """Decrypt and decompress the archive into sink."""
        with self.repo.storage.open(self.artifact.key) as source:
            return decode(source, sink, self.identities, name=self.label, progress=progress)

    def save(self, file: IO[bytes], progress: Progress | None = None) -> bool:
        """Write the archive into a new file (open for writing and reading); True if it is
        the archive the manifest describes (sha256), and then with the data offsets a
        streamed archive lacks put into its TOC (another archive's would mislead pg_restore)."""
        stats = self.decode(file, progress)
        if not self.matches(stats):
            return False
        if self.artifact.data_offsets:
            write_data_offsets(file, self.artifact.data_offsets)
        return True

    def matches(self, stats: StreamStats | None) -> bool:
        """Whether what was read is the artifact the manifest describes: stored and plaintext
        bytes, each by size and sha256."""
        a = self.artifact
        return stats is not None and (
            stats.stored_size,
            stats.stored_sha256,
            stats.plain_size,
            stats.plain_sha256,
        ) == (a.stored_size, a.stored_sha256, a.plain_size, a.plain_sha256)

    def mismatch(self) -> IntegrityError:
        """What to say when the decrypted archive is not the one the manifest describes."""
        return IntegrityError(
            f"{self.label}: the decrypted archive is not the one the manifest describes (its"
            " sha256 differs): the stored object was replaced or damaged; run `bika verify`"
        )


def load(
    archive: StoredArchive,
    target: ConnInfo,
    options: RestoreOptions,
    plan: RestorePlan,
    pg_restore: Path,
    progress: Progress | None,
    on_step: StepProgress | None,
    before_commit: BeforeCommit | None = None,
) -> None:
    """Restore the plan's selection into the target database, which exists by now.

    With one job the whole load is one transaction that bika ends itself: it commits only
    once the archive read matched the manifest and before_commit accepted the rows."""
    conninfo, env = target.libpq_args()
    facts = plan.facts
    assert facts is not None
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
                archive,
                target,
                options,
                plan,
                [str(pg_restore), f"--dbname={conninfo}", *args],
                env,
                progress,
                on_step,
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
                _through_pg_restore(archive, argv, script, plan, progress, on_step)
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
            _check_result(code, "", sink.stderr_text(), target, plan, script)
            if not commit_sent:
                raise RestoreError(
                    f"restore into {target.redacted()} failed: psql ended before the restore"
                    " was committed; nothing was restored"
                )


def write_sql(
    archive: StoredArchive,
    out: IO[bytes],
    options: RestoreOptions,
    plan: RestorePlan,
    pg_restore: Path,
    progress: Progress | None,
    on_step: StepProgress | None,
) -> None:
    """Write the plan's selection as one SQL script, loadable into any supported server."""
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
        _through_pg_restore(archive, argv, script, plan, progress, on_step)


def _load_parallel(
    archive: StoredArchive,
    target: ConnInfo,
    options: RestoreOptions,
    plan: RestorePlan,
    argv: list[str],
    env: dict[str, str],
    progress: Progress | None,
    on_step: StepProgress | None,
) -> None:
    """pg_restore --jobs needs a seekable archive: decrypt it to a private temp file first
    (unless the caller did: options.archive_file)."""
    with contextlib.ExitStack() as stack:
        path = options.archive_file
        if path is None:
            copy = stack.enter_context(ArchiveCopy(archive, options.temp_dir, progress))
            path = copy.path()
            if not copy.matches:
                raise archive.mismatch()  # refused before the target is touched
        with run(
            [*argv, f"--jobs={options.jobs}", str(path)],
            conn=target,
            env=env,
            stdout=False,
            on_stderr_line=_Tracker.of(plan, on_step),
        ) as child:
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
    archive: StoredArchive,
    argv: list[str],
    script: _Script,
    plan: RestorePlan,
    progress: Progress | None,
    on_step: StepProgress | None,
) -> None:
    """Stream the archive through `pg_restore --file=-` into script; the archive is read to
    its end, and raises IntegrityError unless it is the one the manifest describes."""
    with run(argv, stdin=True, on_stderr_line=_Tracker.of(plan, on_step)) as child:
        with _Feeder(archive, child, progress) as feeder:
            script.copy(child.stdout)
            code = child.wait()
            _check_result(code, child.stderr_text(), "", None, plan)
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

    def __init__(self, archive: StoredArchive, child: Child, progress: Progress | None) -> None:
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

    def __init__(self, plan: RestorePlan, on_step: StepProgress) -> None:
        self._on_step = on_step
        self._done = 0
        self._total = len(plan.selection.work)

    @classmethod
    def of(cls, plan: RestorePlan, on_step: StepProgress | None) -> StderrLine | None:
        """The stderr observer for run(), or None when nobody follows the steps."""
        return None if on_step is None else cls(plan, on_step).line

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
    fd, name = tempfile.mkstemp(
        prefix="restore-", suffix=".list", dir=scratch.folder(options.temp_dir)
    )
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            for entry in plan.selection.entries:
                label = " ".join(f"{entry.desc} {entry.namespace or '-'} {entry.tag}".split())
                handle.write(f"{entry.dump_id}; {label}\n")
        yield Path(name)
    finally:
        Path(name).unlink(missing_ok=True)


class ArchiveCopy:
    """The archive decrypted into a private temp file (in bika's scratch folder, see
    bika.scratch) by a thread of its own, so that other work (a drill starting its server)
    goes on meanwhile; path() waits for it. `matches` tells whether it is the archive the
    manifest describes (StoredArchive.save); the file is removed on exit, however it is left
    (an interrupt included)."""

    def __init__(
        self, archive: StoredArchive, temp_dir: Path | None, progress: Progress | None = None
    ) -> None:
        self.archive = archive
        self._temp_dir = temp_dir
        self._progress = progress
        self._path: Path | None = None
        self.matches = False
        self._cancelled = threading.Event()
        self._task = Background(self._save, "bika-archive-copy")

    def __enter__(self) -> ArchiveCopy:
        size = self.archive.artifact.plain_size
        folder = scratch.folder(self._temp_dir)
        free = shutil.disk_usage(folder).free
        if free < size + DISK_MARGIN:
            raise RestoreError(
                f"--jobs needs a {size >> 20} MiB temporary file but {folder.parent} has"
                f" {free >> 20} MiB free; free space, set TMPDIR (or --temp-dir) to a larger"
                " disk, or restore without --jobs"
            )
        fd, name = tempfile.mkstemp(prefix="restore-", suffix=".pgdump", dir=folder)
        os.close(fd)
        self._path = Path(name)
        try:
            self._task.start()
        except BaseException:
            self._path.unlink(missing_ok=True)
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self._cancelled.set()  # stops a copy still running (the caller gave up)
            self._task.wait(self._cancelled.set)
        finally:
            if self._path is not None:
                self._path.unlink(missing_ok=True)

    def path(self) -> Path:
        """The finished file; raises what writing it raised."""
        self._task.wait(self._cancelled.set)
        if self._task.error is not None:
            raise self._task.error
        assert self._path is not None
        return self._path

    def _save(self) -> None:
        assert self._path is not None
        with open(self._path, "r+b") as out:
            self.matches = self.archive.save(out, self._report)

    def _report(self, plain: int, stored: int) -> None:
        if self._cancelled.is_set():
            raise RestoreError("the restore was cancelled while its archive was decrypted")
        if self._progress is not None:
            self._progress(plain, stored)
