"""pg_basebackup as a tar stream, and what bika reads out of it as it passes: backup_label (the
first member) and the server's backup_manifest (the last), plus the SQL facts a physical
backup's manifest records.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bika.errors import DumpError
from bika.postgres.connection import ConnInfo

TAR_BLOCK = 512
WANTED = ("backup_label", "backup_manifest")


def pg_basebackup_argv(
    pg_basebackup: Path, conninfo: str, incremental: Path | None = None
) -> list[str | Path]:
    """The whole cluster as one tar on stdout (its manifest appended as the last member); no
    WAL in it: with -X none the server waits until the WAL up to the stop point is archived,
    which `bika wal push` does, so a finished backup is consistent with the archive.

    `incremental`: the parent backup's backup_manifest (PostgreSQL 17+, summarize_wal = on):
    the tar then holds INCREMENTAL.* files, only the blocks changed since the parent."""
    return [
        pg_basebackup,
        f"--dbname={conninfo}",
        "--pgdata=-",
        "--format=tar",
        "--wal-method=none",
        "--checkpoint=fast",
        "--no-password",
        "--label=bika",
        *([f"--incremental={incremental}"] if incremental is not None else []),
    ]


INCREMENTAL_MIN_VERSION = 170000


def incremental_refusal(facts: ClusterFacts) -> str | None:
    """Why this server cannot take an incremental backup, or None when it can."""
    if facts.server_version_num < INCREMENTAL_MIN_VERSION:
        return (
            f"it runs PostgreSQL {facts.server_version}, and incremental backups need 17 or"
            " newer; take full ones (bika backup --physical)"
        )
    if facts.summarize_wal != "on":
        return (
            "its summarize_wal is off; set summarize_wal = on (ALTER SYSTEM SET summarize_wal"
            " = on; SELECT pg_reload_conf()) and take a full backup first (bika backup"
            " --physical)"
        )
    return None


def pg_combinebackup_argv(tool: Path, chain: list[Path], output: Path) -> list[str | Path]:
    """Combine a full backup and its incrementals (oldest first) into `output`. --link: the
    output's files are hard links into the inputs, which the caller deletes afterwards.
    --no-sync: the extracted files were not synced either; the server syncs the data
    directory when it starts recovery from a backup (recovery_init_sync_method)."""
    return [tool, "--link", "--no-sync", f"--output={output}", *chain]


@dataclass(frozen=True)
class ClusterFacts:
    server_version: str
    server_version_num: int
    system_identifier: str
    timeline: int
    wal_segment_size: int
    archive_mode: str
    archive_command: str
    tablespaces: list[str]
    summarize_wal: str | None = None
    """None before PostgreSQL 17 (no such setting)."""
    streaming_slots: int = 0
    """Physical replication slots in use (a `bika wal receive`, or any other WAL receiver)."""


def cluster_facts(conn: ConnInfo) -> ClusterFacts:
    with conn.connect(autocommit=True) as db:
        row = db.execute(
            "SELECT current_setting('server_version'),"
            " current_setting('server_version_num')::int,"
            " (SELECT system_identifier::text FROM pg_control_system()),"
            " (SELECT timeline_id FROM pg_control_checkpoint()),"
            " current_setting('wal_segment_size'),"
            " current_setting('archive_mode'),"
            " current_setting('archive_command'),"
            " current_setting('summarize_wal', true)"
        ).fetchone()
        spaces = db.execute(
            "SELECT spcname FROM pg_tablespace WHERE spcname NOT IN ('pg_default', 'pg_global')"
            " ORDER BY 1"
        ).fetchall()
        slots = db.execute(
            "SELECT count(*) FROM pg_replication_slots WHERE slot_type = 'physical' AND active"
        ).fetchone()
    assert row is not None
    return ClusterFacts(
        server_version=str(row[0]),
        server_version_num=int(row[1]),
        system_identifier=str(row[2]),
        timeline=int(row[3]),
        wal_segment_size=_bytes(str(row[4])),
        archive_mode=str(row[5]),
        archive_command=str(row[6]),
        tablespaces=[str(r[0]) for r in spaces],
        summarize_wal=None if row[7] is None else str(row[7]),
        streaming_slots=int(slots[0]) if slots else 0,
    )


def _bytes(setting: str) -> int:
    match = re.fullmatch(r"(\d+)\s*(B|kB|MB|GB)?", setting.strip())
    if match is None:
        raise DumpError(f"unexpected wal_segment_size {setting!r}")
    unit = {"B": 1, None: 1, "kB": 1 << 10, "MB": 1 << 20, "GB": 1 << 30}[match.group(2)]
    return int(match.group(1)) * unit


class TarTap:
    """Watches a tar stream go by and keeps the members named in WANTED (small files)."""

    def __init__(self) -> None:
        self.members: dict[str, bytes] = {}
        self.files = 0
        self._buffer = bytearray()
        self._skip = 0  # bytes of the current member's data (and padding) still to pass
        self._keep: str | None = None
        self._kept = bytearray()
        self._data_left = 0

    def feed(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            if self._skip:
                take = min(self._skip, len(view))
                if self._keep is not None and self._data_left:
                    part = min(self._data_left, take)
                    self._kept += view[:part]
                    self._data_left -= part
                    if not self._data_left:
                        self.members[self._keep] = bytes(self._kept)
                        self._keep = None
                self._skip -= take
                view = view[take:]
                continue
            need = TAR_BLOCK - len(self._buffer)
            self._buffer += view[:need]
            view = view[need:]
            if len(self._buffer) == TAR_BLOCK:
                self._header(bytes(self._buffer))
                self._buffer.clear()

    def _header(self, block: bytes) -> None:
        if block == b"\0" * TAR_BLOCK:
            return
        name = block[0:100].split(b"\0", 1)[0].decode("utf-8", "replace")
        prefix = block[345:500].split(b"\0", 1)[0].decode("utf-8", "replace")
        if prefix:
            name = f"{prefix}/{name}"
        size_field = block[124:136]
        if size_field[0] & 0x80:  # GNU base-256 for members over 8 GB
            size = int.from_bytes(size_field[1:], "big")
        else:
            size = int(size_field.split(b"\0", 1)[0].strip() or b"0", 8)
        typeflag = block[156:157]
        if typeflag in (b"0", b"\0"):
            self.files += 1
        self._skip = (size + TAR_BLOCK - 1) // TAR_BLOCK * TAR_BLOCK
        if name in WANTED and size:
            self._keep, self._kept, self._data_left = name, bytearray(), size
        elif name in WANTED:
            self.members[name] = b""


@dataclass(frozen=True)
class BackupLabel:
    start_lsn: str
    start_segment: str
    checkpoint_lsn: str
    start_time: str
    timeline: int


def parse_backup_label(text: str) -> BackupLabel:
    fields = dict(line.split(": ", 1) for line in text.splitlines() if ": " in line)
    start = re.fullmatch(
        r"([0-9A-F]+/[0-9A-F]+) \(file ([0-9A-F]{24})\)", fields.get("START WAL LOCATION", "")
    )
    if start is None:
        raise DumpError("pg_basebackup's backup_label has no START WAL LOCATION")
    return BackupLabel(
        start_lsn=start.group(1),
        start_segment=start.group(2),
        checkpoint_lsn=fields.get("CHECKPOINT LOCATION", ""),
        start_time=fields.get("START TIME", ""),
        timeline=int(fields.get("START TIMELINE", "1")),
    )


def wal_ranges(manifest: bytes) -> list[dict[str, Any]]:
    """The server manifest's WAL-Ranges: [{Timeline, Start-LSN, End-LSN}]."""
    try:
        data = json.loads(manifest)
        return [dict(r) for r in data["WAL-Ranges"]]
    except (ValueError, KeyError, TypeError) as exc:
        raise DumpError(f"pg_basebackup's backup_manifest cannot be read: {exc}") from None


def pg_verifybackup_argv(pg_verifybackup: Path, data_dir: Path, manifest: Path) -> list[str | Path]:
    """Check the restored files against the server's manifest; the WAL is checked by replay."""
    return [pg_verifybackup, "--no-parse-wal", f"--manifest-path={manifest}", data_dir]
