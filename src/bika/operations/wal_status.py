"""`bika wal status`: what the WAL archive holds and how far each base backup recovers, from
one LIST of wal/ and the physical manifests (no key needed)."""

from __future__ import annotations

from bika.operations.pitr import listing
from bika.repository import Repository
from bika.repository import physical as store
from bika.wal import names
from bika.wal.inventory import BackupReach, WalState

DEFAULT_SEGMENT_SIZE = 16 * 1024 * 1024


def wal_state(repo: Repository) -> WalState | None:
    """None when the repository has neither archived WAL nor physical backups."""
    backups, refused = store.scan(repo)
    size = backups[0].source.wal_segment_size if backups else DEFAULT_SEGMENT_SIZE
    archive = listing(repo, size)
    if not backups and not refused and not archive.segments:
        return None
    reaches = []
    for backup in backups:
        start = names.parse_segment(backup.wal.start_segment, size)
        stretch, gap = archive.stretch_from(backup.wal.timeline, start)
        reaches.append(
            BackupReach(
                backup_id=backup.id,
                timeline=backup.wal.timeline,
                finished_at=backup.finished_at,
                stop_segment=backup.wal.stop_segment,
                reach=stretch,
                gap=gap,
            )
        )
    newest = archive.newest()
    return WalState(
        newest_segment=newest[0] if newest else None,
        newest_at=newest[1] if newest else None,
        timelines={tli: archive.ranges(tli) for tli in sorted(archive.segments)},
        backups=reaches,
        refused=[(bad.backup_id, bad.reason) for bad in refused],
    )
