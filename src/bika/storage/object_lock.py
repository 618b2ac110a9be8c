"""Object Lock: write-once retention on the objects of a backup, so credentials that can write
the bucket cannot delete or overwrite a backup younger than the lock.

S3 only for now (Object Lock, COMPLIANCE or GOVERNANCE mode, through boto3: obstore has no
retention calls). GCS (bucket retention policy / object holds) and Azure (container
immutability policies) are not yet set per object by bika: `bika doctor` reports the
bucket's own policy for both, which locks every object the same way.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from bika.errors import ConfigError, StorageError
from bika.storage import Storage

MODES = ("compliance", "governance")
SUPPORTED = {
    "s3": "per-object retention (S3 Object Lock), set by bika on every backup object",
    "gcs": "not set by bika yet: use a bucket retention policy (gcloud storage buckets update"
    " --retention-period), which bika doctor reports",
    "azure": "not set by bika yet: use a container immutability policy (az storage container"
    " immutability-policy create), which bika doctor reports",
    "local": "not supported on a local folder",
}


def backend_of(storage: Storage) -> str:
    from bika.storage.s3 import S3Storage

    if isinstance(storage, S3Storage):
        return "s3"
    name = type(storage).__name__.lower()
    return next((b for b in ("gcs", "azure") if b in name), "local")


def _s3(storage: Storage) -> Any:
    from bika.storage.s3 import S3Storage

    if not isinstance(storage, S3Storage):
        raise ConfigError(
            f"--object-lock on {storage.url}: {SUPPORTED[backend_of(storage)]}; object lock is"
            " set per backup on s3:// repositories only"
        )
    return storage


def _path(storage: Any, key: str) -> str:
    return f"{storage.prefix}/{key}" if storage.prefix else key


def require_lockable(storage: Storage) -> None:
    """Refuse a repository whose bucket cannot lock objects (Object Lock not enabled)."""
    s3 = _s3(storage)
    try:
        reply = s3.boto3_client().get_object_lock_configuration(Bucket=s3.bucket)
        enabled = reply.get("ObjectLockConfiguration", {}).get("ObjectLockEnabled") == "Enabled"
    except Exception as exc:
        code = getattr(exc, "response", {}).get("Error", {}).get("Code", type(exc).__name__)
        if code != "ObjectLockConfigurationNotFoundError":
            raise StorageError(
                f"cannot read the object lock configuration of s3://{s3.bucket}: {code}; the"
                " credentials need s3:GetBucketObjectLockConfiguration"
            ) from None
        enabled = False
    if not enabled:
        raise ConfigError(
            f"bucket s3://{s3.bucket} does not have Object Lock enabled, so backups cannot be"
            " locked; create the bucket with it (aws s3api create-bucket"
            " --object-lock-enabled-for-bucket) or leave out --object-lock"
        )


def retain(storage: Storage, key: str, until: datetime, mode: str) -> None:
    """Lock one object until `until` (it can be extended later, never shortened in compliance
    mode)."""
    s3 = _s3(storage)
    try:
        s3.boto3_client().put_object_retention(
            Bucket=s3.bucket,
            Key=_path(s3, key),
            Retention={"Mode": mode.upper(), "RetainUntilDate": until},
        )
    except Exception as exc:
        code = getattr(exc, "response", {}).get("Error", {}).get("Code", type(exc).__name__)
        raise StorageError(
            f"cannot lock {key} in s3://{s3.bucket}: {code}; the credentials need"
            " s3:PutObjectRetention and the bucket Object Lock"
        ) from None


def retained_until(storage: Storage, key: str) -> datetime | None:
    """Until when an object is locked (None: not locked, or not an S3 storage)."""
    from bika.storage.s3 import S3Storage

    if not isinstance(storage, S3Storage):
        return None
    try:
        # HEAD carries the lock (for s3:GetObjectRetention holders) and is what every
        # S3-compatible server implements
        reply = storage.boto3_client().head_object(Bucket=storage.bucket, Key=_path(storage, key))
    except Exception:
        return None  # gone, or not readable: not judged locked
    until = reply.get("ObjectLockRetainUntilDate")
    return until if isinstance(until, datetime) else None
