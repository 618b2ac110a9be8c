"""`bika wal status`: what the WAL archive holds and how far each base backup recovers, from
one LIST of wal/ and the physical manifests (no key needed). Light: `bika check` reads it, and
restoring (pitr.py) is not imported for that."""

from __future__ import annotations

from bika.repository import Repository
from bika.repository import physical as store
from bika.wal import names
from bika.wal.inventory import BackupReach, WalInventory, WalState

DEFAULT_SEGMENT_SIZE = 16 * 1024 * 1024


def listing(repo: Repository, segment_size: int) -> WalInventory:
    """The archive's segments and history file names: one LIST, no decryption."""
    found = WalInventory(segment_size)
    for info in repo.storage.list(names.WAL_PREFIX):
        parsed = names.parse_object(info.key)
        if parsed is not None:
            found.add(parsed[0], info.modified)
    return found


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
