"""Physical backups (pg_basebackup) in the repository: physical/<id>/, manifest written last
(signed like a logical one, repository.write_signed).

They live beside backups/ rather than in it, so that commands reading logical manifests (list,
verify, prune, check) see no manifest they cannot use; docs/FORMAT.md describes the fields.
"""

from __future__ import annotations

import json
import logging
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from bika.errors import (
    BackupNotFound,
    DamagedManifest,
    ObjectNotFound,
    UntrustedBackup,
    UnusableBackup,
)
from bika.repository.index import FETCH_THREADS
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
    kind: str = Field(default="physical", description="physical (full) or incremental")
    label: str | None = None
    parent: str | None = None
    """An incremental's parent: the physical backup whose backup_manifest it was taken against."""
    chain: list[str] = Field(default_factory=list)
    """An incremental's ancestors, the full backup first and its parent last: what a restore
    combines it with (pg_combinebackup). Empty for a full backup."""
    started_at: datetime
    finished_at: datetime
    """When pg_basebackup returned: the backup is consistent at or before this time."""
    source: PhysicalSource
    wal: WalRange
    files: int
    artifacts: dict[str, Artifact]

    def to_json(self) -> str:
        return self.model_dump_json(indent=2) + "\n"

    @property
    def incremental(self) -> bool:
        return self.parent is not None


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
    history = drill_history(repo, backup_id)
    return history[-1] if history else None


def drill_history(repo: Repository, backup_id: str) -> list[PhysicalDrill]:
    """The backup's drill records that read, oldest first."""
    keys = sorted(info.key for info in repo.storage.list(f"{prefix(backup_id)}drills/"))
    return [d for key in keys if (d := _drill(repo, key)) is not None]


def _drill(repo: Repository, key: str) -> PhysicalDrill | None:
    """A drill record this host trusts (an untrusted one proves nothing: no drill)."""
    try:
        raw = read_bytes(repo.storage, key)
        if repo.trusted(key, raw) is not None:
            _LOG.warning(f"{key}: ignored, its signature is not one this host trusts")
            return None
        return PhysicalDrill.model_validate_json(raw)
    except (ValidationError, ObjectNotFound):
        return None


def scan_with_drills(repo: Repository) -> tuple[list[PhysicalManifest], dict[str, PhysicalDrill]]:
    """What `bika list` shows: every physical backup whose manifest reads (oldest first) and
    the newest drill of each, from one LIST of physical/ (a few backups: no index needed)."""
    manifests: list[str] = []
    drills: dict[str, str] = {}
    for info in repo.storage.list(PHYSICAL):
        parts = info.key[len(PHYSICAL) :].split("/")
        if len(parts) == 2 and parts[1] == MANIFEST:
            manifests.append(parts[0])
        elif len(parts) == 3 and parts[1] == "drills" and parts[2].endswith(".json"):
            drills[parts[0]] = max(drills.get(parts[0], ""), info.key)

    def manifest(backup_id: str) -> PhysicalManifest | None:
        try:
            return read(repo, backup_id)
        except (UnusableBackup, BackupNotFound):
            return None

    # concurrently: on a cloud store each read is a round trip
    with ThreadPoolExecutor(max_workers=FETCH_THREADS) as pool:
        found = [m for m in pool.map(manifest, sorted(manifests)) if m is not None]
        wanted = [m.id for m in found if m.id in drills]
        read_drills = pool.map(lambda backup_id: _drill(repo, drills[backup_id]), wanted)
        latest = {i: d for i, d in zip(wanted, read_drills, strict=True) if d is not None}
    return found, latest


def resolve(repo: Repository, ref: str) -> str | None:
    """A physical backup's full id from the id or a unique prefix of it; None when none has
    it (so the caller can look among logical backups)."""
    candidates = [f for f in repo.storage.folders(PHYSICAL) if f.startswith(ref)]
    if ref in candidates:
        return ref
    if len(candidates) > 1:
        raise BackupNotFound(f"{ref!r} matches {len(candidates)} physical backups; give more")
    return candidates[0] if candidates else None


def missing_from_chain(manifest: PhysicalManifest, present: set[str]) -> list[str]:
    """The backups an incremental builds on that are not in `present` (ids)."""
    return [backup_id for backup_id in manifest.chain if backup_id not in present]


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
