"""Exceptions a user can act on.

Each carries a one-line message saying what failed, on what, and what to do; the CLI prints it
without a traceback and maps the type to an exit code.
"""


class BikaError(Exception):
    """Base of every error bika reports to a person."""

    exit_code = 1


class ConfigError(BikaError):
    """A setting is missing or malformed."""

    exit_code = 2


class StorageError(BikaError):
    """The repository's storage refused or failed an operation."""


class ObjectNotFound(StorageError):
    """An object the caller expected is not in the storage."""


class ObjectExists(StorageError):
    """A create-only write found the object already present."""


class RepositoryError(BikaError):
    """The repository is missing, of another format, or inconsistent."""


class BackupNotFound(RepositoryError):
    """No backup with the requested id."""


class UnusableBackup(RepositoryError):
    """A backup folder whose manifest bika cannot use; `reason` says why, in one line."""

    def __init__(self, backup_id: str, reason: str) -> None:
        super().__init__(f"backup {backup_id}: {reason}")
        self.backup_id = backup_id
        self.reason = reason


class DamagedManifest(UnusableBackup):
    """A backup's manifest does not parse or does not describe its folder."""


class ForeignBackup(UnusableBackup):
    """A backup taken in another repository, put here by hand rather than by `bika copy`."""


class UntrustedBackup(UnusableBackup):
    """A backup whose manifest is unsigned, signed by a key this host does not trust, or does
    not match its signature: it may be a substitute."""


class DumpError(BikaError):
    """pg_dump / pg_dumpall failed or produced something unreadable."""


class RestoreError(BikaError):
    """pg_restore or the restore preflight failed."""


class RestoreFailed(RestoreError):
    """pg_restore (or psql) reported errors; `errors` holds each, for people to read."""

    def __init__(self, message: str, errors: list[str]) -> None:
        super().__init__(message)
        self.errors = errors


class IntegrityError(BikaError):
    """Stored bytes do not match what the manifest recorded."""


class IdentityError(BikaError):
    """A key (age identity or recipient) is missing, malformed or does not fit."""


class KeySettingError(IdentityError):
    """A key given in the settings is not one: no such file, not an age identity, not an age1…
    recipient. A bad setting, so exit 2 as other settings are."""

    exit_code = 2


class PostgresError(BikaError):
    """A PostgreSQL server could not be reached, started or queried."""


class Terminated(KeyboardInterrupt):
    """SIGTERM arrived: unwinds exactly as Ctrl-C does, so every cleanup path runs."""


class RepositoryLocked(RepositoryError):
    """Another process holds the repository's exclusive lock (bika prune)."""
