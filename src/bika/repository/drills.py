"""Drill records: what each restore drill of a backup proved, stored at drills/<id>/<time>.json.

Plain models plus their reading and writing; written once, never modified (docs/FORMAT.md).
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from bika.errors import ObjectExists, ObjectNotFound, RepositoryError
from bika.repository.index import read_records
from bika.repository.repository import Repository, building_many
from bika.repository.signatures import SIG_SUFFIX, signature_key
from bika.storage import read_bytes

DRILLS = "drills/"
DRILL_FORMAT_VERSION = 1
DRILL_INDEX = "drills"
"""The index of drill records: index/drills/… (index.py)."""

_LOG = logging.getLogger(__name__)

TableStatus = Literal["ok", "differs", "missing", "unreadable", "skipped"]


class _Model(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True, populate_by_name=True)


class TableResult(_Model):
    """One table of the manifest: what the backup says and what the restored database holds."""

    schema_: str = Field(alias="schema")
    name: str
    status: TableStatus
    expected_rows: int
    rows: int | None = Field(default=None, description="counted in the restored database")
    expected_sha256: str
    sha256: str | None = None
    detail: str = ""

    @property
    def qualified(self) -> str:
        return f"{self.schema_}.{self.name}"


class ObjectResult(_Model):
    """A schema object of the backup's table of contents that the restored database lacks or
    holds differently (sequence values), or that could not be checked."""

    kind: str = Field(description="the TOC entry's type: TABLE, INDEX, SEQUENCE SET, …")
    schema_: str | None = Field(default=None, alias="schema")
    name: str
    status: Literal["missing", "differs", "skipped"]
    detail: str = ""

    @property
    def qualified(self) -> str:
        return f"{self.schema_}.{self.name}" if self.schema_ else self.name


class DrillTarget(_Model):
    kind: Literal["embedded", "server"]
    server_version: str
    host_hash: str | None = Field(default=None, description="for server: as source.host_hash")
    database: str


class DrillRecord(_Model):
    format_version: int = DRILL_FORMAT_VERSION
    backup_id: str
    repository_id: str
    passed: bool
    started_at: datetime
    finished_at: datetime
    target: DrillTarget
    tools: dict[str, str] = Field(description="bika, pg_restore and server versions")
    setup_seconds: float = Field(description="starting the scratch server or creating the db")
    restore_seconds: float = Field(description="restore wall time: the measured RTO")
    verify_seconds: float = Field(description="fingerprints and schema comparison")
    restored_size: int | None = Field(description="pg_database_size after the restore")
    owners: Literal["restored", "skipped"] = Field(
        description="restored: roles were there (from the backup's globals); skipped: --no-owner"
    )
    tables_checked: int
    rows_checked: int
    bytes_hashed: int
    objects_checked: int
    tables: list[TableResult] = Field(description="every table that is not ok")
    objects: list[ObjectResult] = Field(description="every object missing, differing or skipped")
    missing_extensions: list[str] = Field(default_factory=list)
    problems: list[str] = Field(description="why the drill failed, one line each")
    notes: list[str] = Field(default_factory=list, description="what it could not check, and why")

    @property
    def rto_seconds(self) -> float:
        return self.restore_seconds

    def to_json(self) -> str:
        return self.model_dump_json(by_alias=True, indent=2) + "\n"


def drill_prefix(backup_id: str) -> str:
    return f"{DRILLS}{backup_id}/"


def record_drill(repo: Repository, record: DrillRecord) -> str:
    """Store a drill record (create-only) and return its key."""
    stamp = record.finished_at.astimezone(UTC)
    name = f"{stamp:%Y%m%dT%H%M%S}.{stamp.microsecond // 1000:03d}Z"
    key = f"{drill_prefix(record.backup_id)}{name}.json"
    data = record.to_json().encode()
    try:
        repo.write_signed(key, data)
    except ObjectExists:
        # two drills of one backup in the same millisecond: keep both
        key = f"{drill_prefix(record.backup_id)}{name}-{secrets.token_hex(2)}.json"
        repo.write_signed(key, data)
    return key


def drill_history(repo: Repository, backup_id: str) -> list[DrillRecord]:
    """Every drill of one backup this host trusts (see _read), oldest first."""
    listed = repo.storage.list(drill_prefix(backup_id))
    keys = [info.key for info in listed if info.key.endswith(".json")]
    records = [record for key in keys if (record := _read(repo, key)) is not None]
    return sorted(records, key=lambda r: r.finished_at)


def latest_drills(repo: Repository) -> dict[str, DrillRecord]:
    """The newest trusted drill of each backup that has one, from one listing of drills/ (the
    newest records' bytes through the index, index.py, with their signatures where those are
    checked)."""
    signed = repo.signers_known
    listed = []
    keys: dict[str, list[str]] = {}
    for info in repo.storage.list(DRILLS):
        parts = info.key[len(DRILLS) :].split("/")
        if len(parts) != 2 or not parts[1].endswith((".json", f".json{SIG_SUFFIX}")):
            continue
        listed.append(info)
        if parts[1].endswith(".json"):
            keys.setdefault(parts[0], []).append(info.key)
    newest_first = {backup_id: sorted(names, reverse=True) for backup_id, names in keys.items()}
    wanted = [names[0] for names in newest_first.values()]
    if signed:
        wanted += [signature_key(key) for key in wanted]
    raws = read_records(repo.storage, DRILL_INDEX, listed, wanted)
    latest: dict[str, DrillRecord] = {}
    with building_many():
        for backup_id, names in newest_first.items():
            for key in names:
                # an older record is read only when the newest is not one this host trusts
                newest = key == names[0]
                raw = raws.get(key) if newest else _fetch(repo, key)
                if raw is None:
                    continue  # deleted since it was listed (prune)
                record = _parse(repo, key, raw, raws if newest and signed else None)
                if record is not None:
                    latest[backup_id] = record
                    break
    return latest


def _fetch(repo: Repository, key: str) -> bytes | None:
    try:
        return read_bytes(repo.storage, key)
    except ObjectNotFound:
        return None


def _read(repo: Repository, key: str) -> DrillRecord | None:
    return _parse(repo, key, read_bytes(repo.storage, key))


def _parse(
    repo: Repository, key: str, raw: bytes, signatures: Mapping[str, bytes] | None = None
) -> DrillRecord | None:
    """A drill record, or None when its signature is not one this host accepts: a drill
    record nobody trusted wrote proves nothing, so it counts as no drill. `signatures`: as
    for Repository.verdict()."""
    if repo.trusted(key, raw, signatures) is not None:
        _LOG.warning(f"{key}: ignored, its signature is not one this host trusts")
        return None
    try:
        return DrillRecord.model_validate_json(raw)
    except ValidationError as exc:
        raise RepositoryError(f"{repo.url}/{key} is not a valid drill record: {exc}") from exc
