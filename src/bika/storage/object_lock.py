"""Object lock: write-once retention on the objects of a backup, so credentials that can write
the bucket cannot delete or overwrite a backup younger than the lock.

Each cloud backend sets it per object in its own terms (a Lockable): S3 Object Lock retention
(COMPLIANCE / GOVERNANCE), GCS object retention (Locked / Unlocked, on a bucket with object
retention enabled), Azure blob immutability policies (Locked / Unlocked, on a container with
version-level immutability). bika's two modes map onto them: compliance, nobody can shorten or
remove the lock; governance, a holder of a separate right can. A local folder cannot lock.
"""

from __future__ import annotations

from datetime import datetime
from typing import Protocol, runtime_checkable

from bika.errors import ConfigError
from bika.storage import Storage

MODES = ("compliance", "governance")


@runtime_checkable
class Lockable(Protocol):
    """A storage that can lock an object until a time (the cloud backends)."""

    url: str
    replaces_locked: bool
    """Whether a locked object can still be overwritten (S3 and Azure keep the locked version
    and add a new one; GCS refuses to replace a retained object)."""

    def require_object_lock(self) -> None:
        """Raise ConfigError (what to change, and how) unless the bucket or container can
        lock objects; StorageError when its settings cannot be read."""
        ...

    def retain(self, key: str, until: datetime, mode: str) -> None:
        """Lock one object until `until` in mode compliance or governance (a lock can be
        extended later, never shortened in compliance mode); StorageError when refused."""
        ...

    def retained_until(self, key: str) -> datetime | None:
        """Until when the object is locked (None: not locked, gone, or not readable)."""
        ...


def _lockable(storage: Storage) -> Lockable:
    if not isinstance(storage, Lockable):
        raise ConfigError(
            f"--object-lock on {storage.url}: a local folder cannot lock files; use an s3://,"
            " gs:// or az:// repository, or leave out --object-lock"
        )
    return storage


def require_lockable(storage: Storage) -> None:
    """Refuse a repository whose bucket cannot lock objects."""
    _lockable(storage).require_object_lock()


def retain(storage: Storage, key: str, until: datetime, mode: str) -> None:
    if mode not in MODES:
        raise ConfigError(f"object lock mode {mode!r}: use {' or '.join(MODES)}")
    _lockable(storage).retain(key, until, mode)


def retained_until(storage: Storage, key: str) -> datetime | None:
    return storage.retained_until(key) if isinstance(storage, Lockable) else None


def replaces_locked(storage: Storage) -> bool:
    return isinstance(storage, Lockable) and storage.replaces_locked
