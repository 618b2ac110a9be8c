"""What a backend reads of its bucket's protections (versioning, encryption, lifecycle, …).

Each cloud backend fills these (its bucket_facts method); bika.diagnosis (doctor's rules)
judges them.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

State = Literal["on", "off", "unknown"]
Kind = Literal["local", "s3", "azure", "gcs"]
"""Which backend a storage is (Storage.kind)."""


@dataclass(frozen=True)
class Setting:
    """One bucket setting as read: on, off, or unknown (with why)."""

    state: State
    detail: str = ""


@dataclass(frozen=True)
class LifecycleRule:
    """The parts of a lifecycle rule that matter to a backup repository."""

    name: str
    prefix: str
    enabled: bool = True
    deletes_current_after_days: int | None = None
    deletes_noncurrent: bool = False
    aborts_uploads: bool = False


@dataclass(frozen=True)
class BucketFacts:
    backend: Kind
    bucket: str
    """Bucket (S3, GCS) or container (Azure)."""
    prefix: str
    endpoint: str | None = None
    account: str | None = None
    versioning: Setting = Setting("unknown")
    encryption: Setting = Setting("unknown")
    lifecycle: Setting = Setting("unknown")
    rules: tuple[LifecycleRule, ...] = ()
    logging: Setting = Setting("unknown")
    retention: Setting = Setting("unknown")
    lockable: bool | None = None
    """Whether bika can lock each object (bika init --object-lock): S3 Object Lock enabled,
    GCS object retention enabled, Azure version-level immutability; None: not known."""
    storage_classes: frozenset[str] = frozenset()
    """The storage classes (access tiers) this backend knows, upper-cased."""
    sealed_classes: frozenset[str] = frozenset()
    """Those whose objects must be restored or rehydrated before they can be read."""

    def all_unknown(self, why: str, *, but_lifecycle: bool = False) -> BucketFacts:
        """Every setting unknown for one reason (no client, no permission to read any);
        but_lifecycle keeps what lifecycle already says."""
        unknown = Setting("unknown", why)
        return replace(
            self,
            versioning=unknown,
            encryption=unknown,
            lifecycle=self.lifecycle if but_lifecycle else unknown,
            logging=unknown,
            retention=unknown,
        )
