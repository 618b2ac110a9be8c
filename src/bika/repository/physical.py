"""Physical backups (pg_basebackup) in the repository: physical/<id>/, manifest written last
(signed like a logical one, repository.write_signed).

They live beside backups/ rather than in it, so that commands reading logical manifests (list,
verify, prune, check) see no manifest they cannot use; docs/FORMAT.md describes the fields.
"""

from __future__ import annotations

import json
import logging
from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from bika.errors import (
    BackupNotFound,
    DamagedManifest,
    ObjectNotFound,
    UntrustedBackup,
    UnusableBackup,
)
from bika.repository.manifest import Artifact
from bika.repository.repository import DamagedBackup, Repository
from bika.storage import read_bytes

_LOG = logging.getLogger(__name__)

PHYSICAL = "physical/"
MANIFEST = "manifest.json"
BASE_ARTIFACT = "base.tar.zst.age"
SERVER_MANIFEST_ARTIFACT = "backup_manifest.zst.age"


class _Model(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class PhysicalSource(_Model):
    host_hash: str
    server_version: str
    server_version_num: int
    system_identifier: str
    wal_segment_size: int
    pg_basebackup_version: str
    user: str | None = None
    """The role that took the backup (a drill connects to the restored copy as it)."""


class WalRange(_Model):
    """The WAL a restore of this backup needs, at the least: start to stop, on one timeline."""

    timeline: int
    start_lsn: str
    stop_lsn: str
    start_segment: str
    stop_segment: str


class PhysicalManifest(_Model):
    format_version: int = 1
    tool: str
    id: str
    repository_id: str
    kind: str = Field(default="physical", description="always physical")
    label: str | None = None
    started_at: datetime
    finished_at: datetime
    """When pg_basebackup returned: the backup is consistent at or before this time."""
    source: PhysicalSource
    wal: WalRange
    files: int
    artifacts: dict[str, Artifact]

    def to_json(self) -> str:
        return self.model_dump_json(indent=2) + "\n"


def prefix(backup_id: str) -> str:
    return f"{PHYSICAL}{backup_id}/"


def commit(repo: Repository, manifest: PhysicalManifest) -> None:
    """Write the manifest (create-only), its signature first when this host signs."""
    repo.write_signed(prefix(manifest.id) + MANIFEST, manifest.to_json().encode())


def backup_ids(repo: Repository) -> list[str]:
    ids = []
    for info in repo.storage.list(PHYSICAL):
        parts = info.key[len(PHYSICAL) :].split("/")
        if len(parts) == 2 and parts[1] == MANIFEST:
            ids.append(parts[0])
    return sorted(ids)


def read(repo: Repository, backup_id: str) -> PhysicalManifest:
    """The manifest of one physical backup; DamagedManifest when it does not parse,
    UntrustedBackup when its signature is not one this host accepts (as for logical ones)."""
    key = prefix(backup_id) + MANIFEST
    try:
        raw = read_bytes(repo.storage, key)
    except ObjectNotFound:
        raise BackupNotFound(
            f"no physical backup {backup_id!r} in {repo.url}; 'bika wal status' lists them"
        ) from None
    try:
        manifest = PhysicalManifest.model_validate(json.loads(raw))
    except (ValueError, ValidationError) as exc:
        raise DamagedManifest(backup_id, f"its manifest cannot be read ({exc})") from None
    if manifest.id != backup_id:
        raise DamagedManifest(backup_id, f"its manifest names another backup, {manifest.id}")
    refused = repo.trusted(key, raw)
    if refused is not None:
        raise UntrustedBackup(backup_id, refused.reason("its manifest"))
    return manifest


class PhysicalDrill(_Model):
    """physical/<id>/drills/<time>.json: one drill of a physical backup."""

    format_version: int = 1
    backup_id: str
    repository_id: str
    passed: bool
    started_at: datetime
    finished_at: datetime
    server_version: str
    timeline: int
    """The timeline the recovered copy was promoted to."""
    recovered_to: str | None
    """The last transaction replayed, as the server logged it."""
    last_segment: str
    restore_seconds: float
    """Fetch, decrypt and extract the base backup, and pg_verifybackup."""
    recovery_seconds: float
    """WAL replay until promotion."""
    check_seconds: float
    rto_seconds: float
    rpo_seconds: float | None
    """When the newest archived segment was stored, minus the last transaction replayed."""
    databases: int
    tables: int
    rows: int
    amcheck: str
    problems: list[str]

    def to_json(self) -> str:
        return self.model_dump_json(indent=2) + "\n"


def record_drill(repo: Repository, record: PhysicalDrill) -> str:
    stamp = record.finished_at
    name = f"{stamp:%Y%m%dT%H%M%S}.{stamp.microsecond // 1000:03d}Z.json"
    key = f"{prefix(record.backup_id)}drills/{name}"
    repo.write_signed(key, record.to_json().encode())
    return key


def latest_drill(repo: Repository, backup_id: str) -> PhysicalDrill | None:
    """The newest drill record of a backup that this host trusts (an untrusted one proves
    nothing, so it counts as no drill)."""
    listed = repo.storage.list(f"{prefix(backup_id)}drills/")
    for key in sorted((i.key for i in listed if i.key.endswith(".json")), reverse=True):
        raw = read_bytes(repo.storage, key)
        if repo.trusted(key, raw) is not None:
            _LOG.warning(f"{key}: ignored, its signature is not one this host trusts")
            continue
        try:
            return PhysicalDrill.model_validate_json(raw)
        except ValidationError:
            return None
    return None


def scan(repo: Repository) -> tuple[list[PhysicalManifest], list[DamagedBackup]]:
    """Every usable physical backup, oldest first, and apart those whose manifest cannot be
    used (damaged, or not signed by a key this host accepts), each with the reason."""
    found = []
    refused = []
    for backup_id in backup_ids(repo):
        try:
            found.append(read(repo, backup_id))
        except UnusableBackup as exc:
            refused.append(DamagedBackup(backup_id, exc.reason))
    return found, refused
