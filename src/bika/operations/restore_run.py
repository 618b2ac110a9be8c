"""Running pg_restore (and psql) for a plan: the archive streamed in from the repository, the
SQL adapted on its way, progress read from --verbose, and errors named by archive entry.
"""

from __future__ import annotations

import bisect
import contextlib
import os
import re
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
from bika.postgres import binaries
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
        if stats.plain_sha256 != self.artifact.plain_sha256:
            return False
        if self.artifact.data_offsets:
            write_data_offsets(file, self.artifact.data_offsets)
        return True

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
) -> None:
    """Restore the plan's selection into the target database, which exists by now."""
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
            return
        if plan.adapts_sql or clean:
            # pg_restore's SQL passes through bika (portable, with the drops inside its
            # transaction) on its way to psql
            argv = [str(pg_restore), "--file=-", "--single-transaction", *args]
            with run(psql, conn=target, env=env, stdin=True, stdout=False) as sink:
                script = _Script(_PipeSink(sink.stdin).write, clean=clean)
                try:
                    _through_pg_restore(archive, argv, script, plan, progress, on_step)
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
        with run(
            argv,
            conn=target,
            env=env,
            stdin=True,
            stdout=False,
            on_stderr_line=_Tracker.of(plan, on_step),
        ) as child:
            with _Feeder(archive, child, progress) as feeder:
                code = child.wait()
                feeder.raise_error()
            _check_result(code, child.stderr_text(), "", target, plan)


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
    """Stream the archive through `pg_restore --file=-` into script."""
    with run(argv, stdin=True, on_stderr_line=_Tracker.of(plan, on_step)) as child:
        with _Feeder(archive, child, progress) as feeder:
            script.copy(child.stdout)
            code = child.wait()
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


class _Feeder:
    """Decrypts the archive into a child's stdin on a thread of its own while the caller
    watches the child. Left early (an error, an interrupt), it kills the child, which ends the
    thread, and waits for that: no thread is left decrypting behind bika's back."""

    def __init__(self, archive: StoredArchive, child: Child, progress: Progress | None) -> None:
        self._archive = archive
        self._child = child
        self._progress = progress
        self._task = Background(self._feed, "bika-restore-feed")

    def __enter__(self) -> _Feeder:
        self._task.start()
        return self

    def __exit__(self, exc_type: object, *exc: object) -> None:
        if exc_type is not None:
            self._child.kill()
        self._task.wait(self._child.kill)

    def _feed(self) -> None:
        stdin = self._child.stdin
        try:
            self._archive.decode(_PipeSink(stdin), self._progress)
        except _PipeClosed:
            pass  # the child stopped reading: its exit code and stderr say why
        finally:
            with contextlib.suppress(OSError, ValueError):
                stdin.close()

    def raise_error(self) -> None:
        """Once the decryption has ended: what it raised, if anything."""
        self._task.wait(self._child.kill)
        if self._task.error is not None:
            raise self._task.error


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
