"""`bika backup --physical` and `bika restore --physical`: the command-line side of physical
backups and point-in-time recovery (operations/physical.py, operations/pitr.py do the work)."""

from __future__ import annotations

from typing import Any

from bika.cli.app import STATE, note_backups, open_repository
from bika.cli.progress import stream_progress
from bika.operations.physical import PhysicalOptions, take_physical_backup
from bika.postgres.connection import ConnInfo
from bika.repository import Repository
from bika.repository.physical import PhysicalManifest
from bika.units import size


def physical_backup(
    repo: str | None, db: str | None, label: str | None, **_ignored: Any
) -> tuple[Repository, PhysicalManifest]:
    settings = STATE.settings(repo=repo, database_url=db)
    repository = open_repository(settings)
    conn = ConnInfo.parse(settings.require_database_url())
    options = PhysicalOptions(
        label=label,
        compression_threads=settings.compression_threads,
        storage_class=settings.storage.storage_class("manual"),
    )
    STATE.say(f"physical backup of {conn.redacted()} into {repository.url}")
    with stream_progress("read", "stored") as progress:
        manifest = take_physical_backup(repository, conn, options, progress)
    base = manifest.artifacts["base"]
    note_backups(manifest.id, kind="physical", stored_bytes=base.stored_size)
    seconds = (manifest.finished_at - manifest.started_at).total_seconds()
    STATE.say(
        f"physical backup {manifest.id}: PostgreSQL {manifest.source.server_version},"
        f" {manifest.files} files, {size(base.plain_size)} → {size(base.stored_size)} stored"
        f" in {seconds:.1f}s; WAL {manifest.wal.start_segment}..{manifest.wal.stop_segment}",
        backup_id=manifest.id,
    )
    return repository, manifest
