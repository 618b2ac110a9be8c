"""The prefetch spool of `bika wal fetch`: decrypted WAL segments waiting, outside PGDATA, for
PostgreSQL to ask for them, so that a restore_command call is a rename instead of a download.

Standard library only (os, hashlib, fcntl): this is the path every restore_command call takes.
A spool is one folder per repository and cluster (system identifier), mode 0700:

  <segment>-<sha256>   a segment's plaintext, fsynced; the sha256 is the one in its object's
                       name, checked again when the segment is taken
  .<segment>.part      being written by the prefetcher
  want                 the segment PostgreSQL asked for last (the prefetcher works ahead of it)
  lock                 flock-ed by the running prefetcher
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import os

FOLDER_MODE = 0o700
WANT = "want"
LOCK = "lock"
PART = ".part"
_HEX = frozenset("0123456789ABCDEF")
_SHA_HEX = frozenset("0123456789abcdef")
_SYSID = slice(24, 32)  # xlp_sysid in the long page header that starts every segment


def is_segment(name: str) -> bool:
    return len(name) == 24 and _HEX.issuperset(name)


def parse_entry(file_name: str) -> tuple[str, str] | None:
    """(segment, sha256) of a spooled file's name, or None for anything else."""
    name, dash, sha = file_name.partition("-")
    if dash and is_segment(name) and len(sha) == 64 and _SHA_HEX.issuperset(sha):
        return name, sha
    return None


def cluster_of_data_dir(data_dir: str = ".") -> int | None:
    """The system identifier in global/pg_control (its first field), or None if this is not
    a data directory: PostgreSQL runs restore_command in the data directory it recovers."""
    try:
        with open(os.path.join(data_dir, "global", "pg_control"), "rb") as handle:
            head = handle.read(8)
    except OSError:
        return None
    return int.from_bytes(head, "little") if len(head) == 8 else None


def default_parent(environ: dict[str, str] | os._Environ[str] = os.environ) -> str | None:
    """$XDG_STATE_HOME/bika/wal-spool (default ~/.local/state/bika/wal-spool)."""
    state = environ.get("XDG_STATE_HOME") or (
        os.path.join(environ["HOME"], ".local", "state") if environ.get("HOME") else ""
    )
    return os.path.join(state, "bika", "wal-spool") if os.path.isabs(state) else None


def folder_name(repo: str, system_identifier: int) -> str:
    if "://" not in repo:
        repo = os.path.abspath(os.path.expanduser(repo))
    return f"{hashlib.sha256(repo.encode()).hexdigest()[:16]}-{system_identifier}"


class Spool:
    def __init__(self, path: str, system_identifier: int) -> None:
        self.path = path
        self.system_identifier = system_identifier

    @classmethod
    def open(cls, parent: str, repo: str, system_identifier: int) -> Spool | None:
        """The spool of this repository and cluster, made 0700 if missing; None when it cannot
        be made or is not ours (then fetch goes to the repository, without prefetching)."""
        path = os.path.join(parent, folder_name(repo, system_identifier))
        try:
            os.makedirs(path, mode=FOLDER_MODE, exist_ok=True)
            st = os.lstat(path)
        except OSError:
            return None
        if st.st_uid != os.geteuid() or st.st_mode & 0o077 or not os.path.isdir(path):
            return None
        return cls(path, system_identifier)

    def _file(self, name: str) -> str:
        return os.path.join(self.path, name)

    # -- what PostgreSQL asked for -------------------------------------------------------

    def want(self, name: str) -> None:
        # overwritten in place (a tmp file and a rename cost this path ~5 ms): a torn read
        # only points the prefetcher at the wrong segments for one round
        fd = os.open(self._file(WANT), os.O_WRONLY | os.O_CREAT, 0o600)
        try:
            os.pwrite(fd, name.encode(), 0)
        finally:
            os.close(fd)

    def wanted(self) -> tuple[str, int] | None:
        """(segment asked for last, when: st_mtime_ns), or None."""
        try:
            with open(self._file(WANT)) as handle:
                name = handle.read().strip()
                when = os.fstat(handle.fileno()).st_mtime_ns
        except OSError:
            return None
        return (name, when) if is_segment(name) else None

    # -- entries ---------------------------------------------------------------------------

    def entries(self) -> dict[str, str]:
        """segment → file name of every complete entry."""
        found = {}
        for file_name in _listdir(self.path):
            parsed = parse_entry(file_name)
            if parsed is not None:
                found[parsed[0]] = file_name
        return found

    def in_progress(self, name: str) -> bool:
        return os.path.exists(self._file(f".{name}{PART}"))

    def put(self, name: str, sha256: str, data: bytes) -> None:
        """Add a verified segment: written to .part, fsynced, renamed (so it is whole)."""
        part = self._file(f".{name}{PART}")
        write_whole(part, data)
        os.replace(part, self._file(f"{name}-{sha256}"))

    def started(self, name: str) -> None:
        """Mark `name` as being fetched (the .part file) before its download begins."""
        with open(self._file(f".{name}{PART}"), "wb"):
            pass

    def abandon(self, name: str) -> None:
        _unlink(self._file(f".{name}{PART}"))

    def keep_only(self, keep: set[str], entries: dict[str, str] | None = None) -> None:
        """Delete every entry but those of the segments in `keep`."""
        for name, file_name in (self.entries() if entries is None else entries).items():
            if name not in keep:
                _unlink(self._file(file_name))

    def clear_parts(self) -> None:
        """Delete every .part file (only the prefetcher, holding the lock, may)."""
        for file_name in _listdir(self.path):
            if file_name.startswith(".") and file_name.endswith(PART):
                _unlink(self._file(file_name))

    def take(self, name: str, dest: str) -> str:
        """Move the spooled `name` to `dest`, checked: "taken", "absent", or "damaged" (the
        entry was deleted and nothing was written to dest). The entry is moved to a temporary
        name beside dest first, so nobody can change it between the check and the rename."""
        file_name = self.entries().get(name)
        if file_name is None:
            return "absent"
        sha = file_name[len(name) + 1 :]
        source = self._file(file_name)
        tmp = os.path.join(os.path.dirname(dest), f".{os.path.basename(dest)}.bika-{os.getpid()}")
        try:
            try:
                os.rename(source, tmp)
                copied = False
            except FileNotFoundError:
                return "absent"
            except OSError as exc:
                if exc.errno != errno.EXDEV:
                    raise
                copied = True  # another filesystem: copy, then drop the entry
            with open(source if copied else tmp, "rb") as handle:
                head = handle.read(32)
                handle.seek(0)
                digest = hashlib.file_digest(handle, "sha256").hexdigest()
                if copied:
                    handle.seek(0)
                    data = handle.read()
            if copied:
                _unlink(source)
            if digest != sha or int.from_bytes(head[_SYSID], "little") != self.system_identifier:
                _unlink(tmp)
                return "damaged"
            if copied:
                write_whole(tmp, data)
            # else the prefetcher fsynced these bytes before they entered the spool
            os.replace(tmp, dest)
            return "taken"
        except BaseException:
            _unlink(tmp)
            raise

    # -- the prefetcher's lock -------------------------------------------------------------

    def lock(self) -> int | None:
        """An fd holding the prefetcher's lock, or None when a prefetcher is running."""
        fd = os.open(self._file(LOCK), os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return None
        return fd

    def prefetcher_running(self) -> bool:
        fd = self.lock()
        if fd is None:
            return True
        os.close(fd)
        return False


def write_whole(path: str, data: bytes) -> None:
    """Write a new file, fsynced (the caller renames it into place)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    finally:
        os.close(fd)


def _unlink(path: str) -> None:
    # not contextlib.suppress: contextlib costs this path 5-10 ms of imports
    try:  # noqa: SIM105
        os.unlink(path)
    except FileNotFoundError:
        pass


def _listdir(path: str) -> list[str]:
    try:
        return os.listdir(path)
    except FileNotFoundError:
        return []
