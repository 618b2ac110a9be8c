"""The repository's exclusive lock: locks/<time>-<host>-<nonce>.json, a lease that prune holds.

Only deleting needs it. backup and copy take no lock: they only create new objects, under new
names, and a backup exists once its manifest does, so nothing they do can undo another run.
prune takes this lock so that two prunes (two hosts, two policies) never delete together, reads
the manifests inside it, and never deletes what started after it did (docs/FORMAT.md, "Locks").

Taking it: write our lock object (create-only), then list locks/: any other live lock means
someone else holds or is taking it, and we remove ours and stop — so of two processes taking it
at once at least one stops, never both go on. A lock whose lease ran out (its holder stopped
renewing it), or one of this host whose process is gone, is stale and removed. The holder
renews the lease (a new object, then the old one removed) while it works.
"""

from __future__ import annotations

import os
import re
import secrets
import socket
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from datetime import UTC, datetime, timedelta

from pydantic import BaseModel, ConfigDict, ValidationError

from bika import clock
from bika.errors import BikaError, ObjectNotFound, RepositoryLocked
from bika.pids import alive
from bika.repository.repository import Repository
from bika.storage import read_bytes, write_bytes

LOCKS = "locks/"
LEASE = timedelta(minutes=30)
RENEW_AFTER = LEASE / 3


class LockRecord(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    host: str
    pid: int
    user: str
    command: str
    taken_at: datetime
    expires_at: datetime


def host_name() -> str:
    return socket.gethostname() or "unknown-host"


def key_safe(text: str) -> str:
    """A host name as a key segment: letters, digits, '.', '-' only."""
    return re.sub(r"[^A-Za-z0-9.-]+", "-", text)[:63] or "host"


def user_name() -> str:
    try:
        import getpass

        return getpass.getuser()
    except (KeyError, OSError):  # no passwd entry (containers)
        return str(os.getuid())


class Lock:
    """A held lock; renew() keeps the lease and notices a lock broken by another process."""

    def __init__(self, repo: Repository, command: str, now: Callable[[], datetime]) -> None:
        self.repo = repo
        self.command = command
        self._now = now
        self.key = ""
        self.taken_at = now()
        self._written = self.taken_at

    def _write(self) -> None:
        now = self._now()
        record = LockRecord(
            host=host_name(),
            pid=os.getpid(),
            user=user_name(),
            command=self.command,
            taken_at=self.taken_at,
            expires_at=now + LEASE,
        )
        stamp = now.astimezone(UTC)
        self.key = (
            f"{LOCKS}{stamp:%Y%m%dT%H%M%S}.{stamp.microsecond // 1000:03d}Z-"
            f"{key_safe(record.host)}-{secrets.token_hex(4)}.json"
        )
        write_bytes(self.repo.storage, self.key, record.model_dump_json(indent=2).encode())
        self._written = now

    def renew(self) -> None:
        """Call between steps: refuses to go on if the lock was broken, renews it when due."""
        if self.repo.storage.stat(self.key) is None:
            raise RepositoryLocked(
                f"the lock on {self.repo.url} was broken by another process (--break-lock);"
                " stopped: run it again"
            )
        if self._now() - self._written >= RENEW_AFTER:
            old = self.key
            self._write()
            self.repo.storage.delete(old)

    def release(self) -> None:
        if self.key:
            self.repo.storage.delete(self.key)
            self.key = ""


def held_locks(repo: Repository) -> list[tuple[str, LockRecord | None]]:
    """Every lock object and what it says (None: unreadable, e.g. half a write)."""
    found: list[tuple[str, LockRecord | None]] = []
    for info in repo.storage.list(LOCKS):
        try:
            found.append(
                (info.key, LockRecord.model_validate_json(read_bytes(repo.storage, info.key)))
            )
        except ObjectNotFound:
            continue  # released while we listed
        except ValidationError:
            found.append((info.key, None))
    return found


def _stale(record: LockRecord | None, now: datetime) -> bool:
    if record is None:
        return False  # unreadable: leave it to --break-lock rather than guess
    if record.expires_at <= now:
        return True
    return record.host == host_name() and not alive(record.pid)


@contextmanager
def exclusive_lock(
    repo: Repository,
    command: str,
    *,
    break_lock: bool = False,
    now: Callable[[], datetime] = clock.now,
    on_note: Callable[[str], None] = lambda _: None,
) -> Iterator[Lock]:
    if break_lock:
        for key, record in held_locks(repo):
            who = f"{record.host} (pid {record.pid})" if record else "an unreadable lock"
            on_note(f"broke the lock of {who}: {key}")
            repo.storage.delete(key)
    lock = Lock(repo, command, now)
    lock._write()
    try:
        for key, record in held_locks(repo):
            if key == lock.key:
                continue
            if _stale(record, now()):
                on_note(f"removed a stale lock of {record.host if record else '?'}: {key}")
                repo.storage.delete(key)
                continue
            if record is None:
                raise RepositoryLocked(
                    f"repository {repo.url} holds a lock object that cannot be read ({key}); use"
                    " --break-lock if no other bika is running on it"
                )
            raise RepositoryLocked(
                f"repository locked by {record.host} (pid {record.pid}, bika {record.command})"
                f" since {record.taken_at.astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC, use"
                " --break-lock if that host is gone"
            )
    except BaseException:
        lock.release()
        raise
    try:
        yield lock
    except BaseException:
        # the failure that stopped the work is the one to tell (a credential that may not
        # delete fails on the lock too); a lock left behind expires
        with suppress(BikaError):
            lock.release()
        raise
    lock.release()
