"""Local-disk storage: a folder holds the objects as files.

Writes go to a hidden temp file that is fsynced, then linked or renamed into place, then the
folder is fsynced, so a crash leaves either the whole object or no object under its name.
"""

from __future__ import annotations

import errno
import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO

from bika.errors import ObjectExists, ObjectNotFound, StorageError
from bika.storage import ObjectInfo, Source
from bika.storage.facts import Kind

TEMP_PREFIX = ".tmp-"
# A repository shows table names, row counts and labels: for its owner only, whatever the umask.
FOLDER_MODE = 0o700
FILE_MODE = 0o600


class LocalStorage:
    kind: Kind = "local"

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root).expanduser().absolute()
        self.url = str(self.root)

    def _path(self, key: str) -> Path:
        if key.startswith("/") or ".." in key.split("/"):
            raise StorageError(f"{self.url}: invalid object key {key!r}")
        return self.root / key

    def _fail(self, action: str, key: str, exc: OSError) -> StorageError:
        reason = exc.strerror or str(exc)
        hint = ""
        if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
            hint = "; check that this user may write there, or choose another --repo"
        elif exc.errno == errno.ENOSPC:
            hint = "; free some space or choose another --repo"
        elif exc.errno == errno.ENOTDIR:
            blocker = next((p for p in (self.root / key).parents if p.is_file()), None)
            if blocker is not None:
                reason, hint = f"{blocker} is a file, not a folder", "; choose another --repo"
        return StorageError(f"cannot {action} {self.root / key}: {reason}{hint}")

    @contextmanager
    def create(
        self, key: str, *, overwrite: bool = False, storage_class: str | None = None
    ) -> Iterator[_FileSink]:
        path = self._path(key)
        made = self._missing_folders(path.parent)
        try:
            for folder in reversed(made):
                folder.mkdir(mode=FOLDER_MODE, exist_ok=True)
                folder.chmod(FOLDER_MODE)  # whatever the umask
            if not overwrite and path.exists():
                raise ObjectExists(f"{path} already exists; bika never overwrites an object")
            tmp = path.with_name(f"{TEMP_PREFIX}{path.name}.{secrets.token_hex(4)}")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
        except BaseException as exc:
            self._remove_folders(made)
            if isinstance(exc, OSError):
                raise self._fail("write", key, exc) from exc
            raise
        committed = False
        try:
            os.fchmod(fd, FILE_MODE)  # whatever the umask
            yield _FileSink(fd, self, key)
            os.fsync(fd)
            if overwrite:
                os.replace(tmp, path)
            else:
                try:
                    os.link(tmp, path)
                except FileExistsError as exc:
                    raise ObjectExists(
                        f"{path} already exists; bika never overwrites an object"
                    ) from exc
            committed = True
            _fsync_dir(path.parent)
        except OSError as exc:
            raise self._fail("write", key, exc) from exc
        finally:
            # on every path, an interrupt included (writes are unbuffered: closing flushes
            # nothing, so it cannot fail on a full disk and replace the error or skip this)
            os.close(fd)
            with suppress(OSError):
                tmp.unlink(missing_ok=True)
            if not committed:
                self._remove_folders(made)

    def _missing_folders(self, folder: Path) -> list[Path]:
        """The folders from `folder` up that do not exist yet, deepest first."""
        missing = []
        while not folder.exists() and folder != folder.parent:
            missing.append(folder)
            folder = folder.parent
        return missing

    def _remove_folders(self, folders: list[Path]) -> None:
        """Remove folders this process made for an object it did not write, if still empty
        (a failed backup leaves no empty backups/<id>/)."""
        for folder in folders:
            try:
                folder.rmdir()
            except OSError:
                return

    @contextmanager
    def open(self, key: str, start: int = 0, length: int | None = None) -> Iterator[Source]:
        path = self._path(key)
        try:
            handle = open(path, "rb")  # noqa: SIM115 - closed by the with below
        except FileNotFoundError as exc:
            raise ObjectNotFound(f"{path} does not exist") from exc
        except OSError as exc:
            raise self._fail("read", key, exc) from exc
        with handle:
            if start:
                handle.seek(start)
            yield handle if length is None else _Window(handle, length)

    def list(self, prefix: str = "", *, start_after: str | None = None) -> Iterator[ObjectInfo]:
        base = self.root
        if not base.is_dir():
            return
        found: list[ObjectInfo] = []
        try:
            for dirpath, _dirs, files in os.walk(base):
                for name in files:
                    if name.startswith(TEMP_PREFIX):
                        continue
                    full = Path(dirpath) / name
                    key = full.relative_to(base).as_posix()
                    if key.startswith(prefix) and (start_after is None or key > start_after):
                        found.append(_info(key, full))
        except OSError as exc:
            raise self._fail("list", prefix, exc) from exc
        yield from sorted(found, key=lambda info: info.key)

    def folders(self, prefix: str) -> Iterator[str]:
        folder = self.root / prefix
        try:
            names = sorted(
                entry.name
                for entry in os.scandir(folder)
                if entry.is_dir() and not entry.name.startswith(TEMP_PREFIX)
            )
        except FileNotFoundError:
            return
        except OSError as exc:
            raise self._fail("list", prefix, exc) from exc
        yield from names

    def leftovers(self, prefix: str = "") -> Iterator[ObjectInfo]:
        base = self.root
        if not base.is_dir():
            return
        found: list[ObjectInfo] = []
        try:
            for dirpath, dirs, files in os.walk(base):
                folder = Path(dirpath)
                for name in files:
                    key = (folder / name).relative_to(base).as_posix()
                    if name.startswith(TEMP_PREFIX) and key.startswith(prefix):
                        found.append(_info(key, folder / name))
                key = folder.relative_to(base).as_posix() + "/"
                if folder != base and not dirs and not files and key.startswith(prefix):
                    found.append(_info(key, folder))
        except OSError as exc:
            raise self._fail("list", prefix, exc) from exc
        yield from sorted(found, key=lambda info: info.key)

    def stat(self, key: str) -> ObjectInfo | None:
        try:
            return _info(key, self._path(key))
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise self._fail("stat", key, exc) from exc

    def delete(self, key: str) -> None:
        path = self._path(key)
        try:
            if key.endswith("/"):
                path.rmdir()
            else:
                path.unlink(missing_ok=True)
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise self._fail("delete", key, exc) from exc
        # the object's folder goes with its last object (backups/<id>/, drills/<id>/); the
        # top-level folders stay, so a concurrent write into them never loses its parent
        folder = path.parent
        while folder.parent != self.root and folder != self.root and self.root in folder.parents:
            try:
                folder.rmdir()
            except OSError:
                break
            folder = folder.parent


class _Window:
    """At most length bytes of an open file, from where it stands."""

    def __init__(self, handle: BinaryIO, length: int) -> None:
        self._handle = handle
        self._left = max(length, 0)

    def read(self, n: int = -1) -> bytes:
        wanted = self._left if n is None or n < 0 else min(n, self._left)
        data = self._handle.read(wanted) if wanted else b""
        self._left -= len(data)
        return data


class _FileSink:
    def __init__(self, fd: int, storage: LocalStorage, key: str) -> None:
        self._fd = fd
        self._storage = storage
        self._key = key

    def write(self, data: bytes) -> int:
        view = memoryview(data)
        try:
            while view:
                view = view[os.write(self._fd, view) :]
        except OSError as exc:
            raise self._storage._fail("write", self._key, exc) from exc
        return len(data)

    def flush(self) -> None:
        """pyrage calls flush() on its writer; durability comes from the commit's fsync."""


def _info(key: str, path: Path) -> ObjectInfo:
    status = path.stat()
    return ObjectInfo(key, status.st_size, datetime.fromtimestamp(status.st_mtime, UTC))


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
