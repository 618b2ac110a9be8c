"""What leaving an archive storage class early costs: each cloud's minimum storage duration.

An object deleted (or moved) before its class's minimum is billed as if it had stayed that long.
Figures from each cloud's pricing pages (S3, GCS, Azure blob access tiers), in days.
"""

from __future__ import annotations

MINIMUM_DAYS: dict[str, dict[str, int]] = {
    "s3": {
        "STANDARD_IA": 30,
        "ONEZONE_IA": 30,
        "GLACIER_IR": 90,
        "GLACIER": 90,
        "DEEP_ARCHIVE": 180,
    },
    "gcs": {"NEARLINE": 30, "COLDLINE": 90, "ARCHIVE": 365},
    "azure": {"COOL": 30, "COLD": 90, "ARCHIVE": 180},
}

_SCHEMES = {"s3": "s3", "gs": "gcs", "az": "azure", "azure": "azure"}


def backend_of(url: str) -> str:
    """s3, gcs, azure or local, from a repository URL."""
    if "://" not in url:
        return "local"
    return _SCHEMES.get(url.split("://", 1)[0].lower(), "local")


def minimum_days(url: str, storage_class: str | None) -> int:
    """Days an object of this class is billed at the least (0: no minimum, or a local disk)."""
    if not storage_class:
        return 0
    return MINIMUM_DAYS.get(backend_of(url), {}).get(storage_class.upper(), 0)
