"""Restoring a backup into a database, with preflight checks and a row-by-row proof.

A restore either ends with every table's exact row count matching the manifest, or fails
loudly naming what went wrong; "errors ignored on restore" is a failure, never a warning.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pyrage
from psycopg import sql

from bika.errors import BikaError, IdentityError, PostgresError, RestoreError
from bika.postgres import binaries, catalog
from bika.postgres.connection import ConnInfo
from bika.postgres.process import run
from bika.repository import Manifest, Repository
from bika.stream import Progress, decode

DISK_MARGIN = 64 << 20


@dataclass
class RestoreOptions:
    jobs: int = 1
    clean: bool = False
    create: bool = False
    no_owner: bool = False
    pg_bin_dir: str | None = None
    temp_dir: Path | None = None


@dataclass
class TableCheck:
    table: str
    expected: int
    restored: int | None

    @property
    def ok(self) -> bool:
        return self.restored == self.expected


@dataclass
class RestoreReport:
    backup_id: str
    target: str
    seconds: float
    checks: list[TableCheck] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(check.ok for check in self.checks)


def restore_backup(
    repo: Repository,
    manifest: Manifest,
    target: ConnInfo,
    identities: list[object],
    options: RestoreOptions,
    progress: Progress | None = None,
) -> RestoreReport:
    started = time.monotonic()
    artifact = manifest.artifacts["database"]
    check_identity(repo, artifact.key, identities, f"{manifest.id}/database")
    pg_restore = binaries.tool("pg_restore", binaries.find_bin_dir(options.pg_bin_dir))
    _check_tool_version(pg_restore, manifest)

    created = _prepare_target(target, options)
    try:
        _load(repo, manifest, target, identities, options, pg_restore, progress)
    except BaseException as exc:
        if created:
            note = _drop_created(target)
            if isinstance(exc, BikaError):
                raise type(exc)(f"{exc}; {note}") from exc
        raise
    counts = catalog.exact_rows(target, [(t.schema_, t.name) for t in manifest.tables])
    checks = [TableCheck(t.qualified, t.rows, counts[(t.schema_, t.name)]) for t in manifest.tables]
    return RestoreReport(manifest.id, target.redacted(), time.monotonic() - started, checks)


def check_identity(repo: Repository, key: str, identities: list[object], label: str) -> None:
    """Fail before touching any database if none of the identities opens the artifact."""
    head = repo.storage.read_range(key, 0, 4096)
    end = head.find(b"\n---")
    if end < 0:
        raise RestoreError(f"{label}: not an age file (no header found)")
    # the header and the payload nonce after it: enough for age to try each identity
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


def _check_tool_version(pg_restore: Path, manifest: Manifest) -> None:
    have = binaries.major(binaries.tool_version(pg_restore))
    need = binaries.major(manifest.source.pg_dump_version)
    if have < need:
        raise RestoreError(
            f"this backup was made by pg_dump {manifest.source.pg_dump_version}; pg_restore"
            f" {have} cannot read it: use pg_restore {need} or newer (pg_bin_dir)"
        )


def _prepare_target(target: ConnInfo, options: RestoreOptions) -> bool:
    """Create the target (with --create) or check it may be restored into; True if created."""
    name = target.database
    if options.create:
        admin = target.with_database("postgres")
        with admin.connect(autocommit=True) as db:
            exists = db.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
            if exists:
                raise RestoreError(
                    f"database {name!r} already exists; drop --create to restore into it"
                    " (with --clean if it is not empty), or choose a new name"
                )
            db.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return True
    try:
        objects = catalog.user_relations(target)
    except PostgresError as exc:
        if "does not exist" in str(exc):
            raise RestoreError(
                f"database {name!r} does not exist; pass --create to create it"
            ) from None
        raise
    if objects and not options.clean:
        raise RestoreError(
            f"database {name!r} is not empty ({objects} tables, views, sequences or functions);"
            " pass --clean to drop and recreate the backup's objects, or restore into a new"
            " database with --create"
        )
    return False


def _drop_created(target: ConnInfo) -> str:
    name = target.database
    try:
        with target.with_database("postgres").connect(autocommit=True) as db:
            db.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )
    except BikaError as exc:
        return f"database {name!r}, created by this restore, could not be dropped: {exc}"
    except Exception as exc:  # psycopg errors
        return f"database {name!r}, created by this restore, could not be dropped: {exc}"
    return f"database {name!r}, created by this restore, has been dropped"


def _restore_argv(pg_restore: Path, target: ConnInfo, options: RestoreOptions) -> list[str]:
    conninfo, _ = target.libpq_args()
    argv = [str(pg_restore), f"--dbname={conninfo}"]
    if options.jobs > 1:
        argv.append(f"--jobs={options.jobs}")
    else:
        # one transaction: a failed restore leaves the target as it was
        argv += ["--single-transaction", "--exit-on-error"]
    if options.clean:
        argv += ["--clean", "--if-exists"]
    if options.no_owner:
        argv += ["--no-owner", "--no-privileges"]
    return argv


def _load(
    repo: Repository,
    manifest: Manifest,
    target: ConnInfo,
    identities: list[object],
    options: RestoreOptions,
    pg_restore: Path,
    progress: Progress | None,
) -> None:
    artifact = manifest.artifacts["database"]
    label = f"{manifest.id}/database"
    argv = _restore_argv(pg_restore, target, options)
    _, env = target.libpq_args()
    if options.jobs > 1:
        with _plain_file(artifact.plain_size, options.temp_dir) as path:
            with repo.storage.open(artifact.key) as source, open(path, "wb") as out:
                decode(source, out, identities, name=label, progress=progress)
            with run([*argv, str(path)], conn=target, env=env, stdout=False) as child:
                code = child.wait()
                _check_result(code, child.stderr_text(), target)
        return
    with (
        repo.storage.open(artifact.key) as source,
        run(argv, conn=target, env=env, stdin=True, stdout=False) as child,
    ):
        try:
            decode(source, _PipeSink(child.stdin), identities, name=label, progress=progress)
            child.stdin.close()
        except _PipeClosed:
            pass  # pg_restore stopped reading: its exit code and stderr say why
        code = child.wait()
        _check_result(code, child.stderr_text(), target)


class _PipeClosed(Exception):
    pass


class _PipeSink:
    def __init__(self, pipe: object) -> None:
        self._pipe = pipe

    def write(self, data: bytes) -> int:
        try:
            return self._pipe.write(data)  # type: ignore[attr-defined, no-any-return]
        except (BrokenPipeError, ValueError) as exc:
            raise _PipeClosed from exc


def _check_result(code: int, stderr: str, target: ConnInfo) -> None:
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    errors = [
        line
        for line in lines
        if "error" in line.lower() and not line.lower().startswith("pg_restore: warning")
    ]
    if code == 0 and not errors:
        return
    shown = "; ".join(errors[:5]) or (lines[-1] if lines else f"exit code {code}")
    more = f" (and {len(errors) - 5} more)" if len(errors) > 5 else ""
    raise RestoreError(f"restore into {target.redacted()} failed: {shown}{more}")


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
