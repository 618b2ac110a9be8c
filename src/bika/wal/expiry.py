"""Which physical backups and WAL objects prune keeps: pure, over plain values.

Every physical backup finished inside the PITR window is kept, and the newest one before it (so
every point of the window stays recoverable), and every backup a kept incremental builds on.
WAL is kept from the start segment of the oldest
kept backup on; older segments are needed by no kept backup. History files are kept forever;
without any physical backup no WAL is deleted.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from bika.wal import names

DEFAULT_WINDOW = timedelta(days=7)


@dataclass(frozen=True)
class BaseBackup:
    id: str
    finished_at: datetime
    start_segment: str
    needs: tuple[str, ...] = ()
    """An incremental's chain: the full backup and incrementals a restore combines it with."""


@dataclass(frozen=True)
class Expiry:
    keep: list[str]
    drop: list[str]
    """Physical backup ids."""
    oldest_needed: str | None
    """The first segment kept (by position, on any timeline); None: keep all WAL."""

    def wal_to_delete(self, wal_names: list[str], segment_size: int) -> list[str]:
        if self.oldest_needed is None:
            return []
        cutoff = names.parse_segment(self.oldest_needed, segment_size).number
        doomed = []
        for name in wal_names:
            segment = names.segment_part(name)
            if segment is None:  # history files
                continue
            if names.parse_segment(segment, segment_size).number < cutoff:
                doomed.append(name)
        return doomed


def expire(backups: list[BaseBackup], now: datetime, window: timedelta) -> Expiry:
    if not backups:
        return Expiry([], [], None)
    ordered = sorted(backups, key=lambda b: b.finished_at)
    start = now - window
    inside = [b for b in ordered if b.finished_at >= start]
    before = [b for b in ordered if b.finished_at < start]
    kept = ([before[-1]] if before else []) + inside
    needed = {backup_id for b in kept for backup_id in b.needs}
    kept = [b for b in ordered if b in kept or b.id in needed]
    dropped = [b for b in ordered if b not in kept]
    oldest = min(kept, key=lambda b: b.start_segment[8:]).start_segment
    return Expiry([b.id for b in kept], [b.id for b in dropped], oldest)
