"""WAL file names and repository keys: pure functions, no I/O.

A segment is TTTTTTTTXXXXXXXXYYYYYYYY (timeline, log, segment within the log, in hex); its
object is wal/<TTTTTTTTXXXXXXXX>/<segment>-<plaintext sha256>.zst.age.
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass

WAL_PREFIX = "wal/"
HISTORY_FOLDER = "wal/history/"
CLUSTER_KEY = "wal/cluster.json"
SUFFIX = ".zst.age"

SEGMENT = re.compile(r"[0-9A-F]{24}")
HISTORY = re.compile(r"[0-9A-F]{8}\.history")
# 000000010000000000000003.00000028.backup, 000000010000000000000005.partial
WITH_SEGMENT = re.compile(r"([0-9A-F]{24})(\.[0-9A-F]{8}\.backup|\.partial)?")
_OBJECT = re.compile(r"(?P<name>[0-9A-Za-z.]+)-(?P<sha>[0-9a-f]{64})\.zst\.age")

XLP_LONG_HEADER = 0x0002
_LONG_HEADER = struct.Struct("<HHIQI4xQII")  # XLogLongPageHeaderData on a little-endian host
WAL_MAGICS = range(0xD100, 0xD200)  # XLOG_PAGE_MAGIC of PostgreSQL 9.x–18 lie in here


def is_archivable(name: str) -> bool:
    """Whether `name` is a file PostgreSQL hands to archive_command."""
    return bool(HISTORY.fullmatch(name) or WITH_SEGMENT.fullmatch(name))


def folder(name: str) -> str:
    """The repository folder of a WAL file (segment, .partial, .backup or .history)."""
    if HISTORY.fullmatch(name):
        return HISTORY_FOLDER
    match = WITH_SEGMENT.fullmatch(name)
    if match is None:
        raise ValueError(f"{name!r} is not a WAL file name")
    return f"{WAL_PREFIX}{name[:16]}/"


def object_key(name: str, sha256: str) -> str:
    return f"{folder(name)}{name}-{sha256}{SUFFIX}"


def listing_prefix(name: str) -> str:
    """The prefix whose LIST shows every stored object of this WAL file, and nothing else."""
    return f"{folder(name)}{name}-"


def parse_object(key: str) -> tuple[str, str] | None:
    """(WAL file name, plaintext sha256) of an object key under wal/, or None."""
    match = _OBJECT.fullmatch(key.rsplit("/", 1)[-1])
    if match is None or not is_archivable(match["name"]):
        return None
    return match["name"], match["sha"]


@dataclass(frozen=True)
class SegmentHeader:
    """What the first page of a segment says about the cluster that wrote it."""

    timeline: int
    page_address: int
    system_identifier: int
    segment_size: int
    block_size: int


def read_header(data: bytes) -> SegmentHeader | None:
    """The long page header that starts every segment, or None if it is not one."""
    if len(data) < _LONG_HEADER.size:
        return None
    magic, info, tli, pageaddr, _rem, sysid, seg_size, blcksz = _LONG_HEADER.unpack_from(data)
    if magic not in WAL_MAGICS or not info & XLP_LONG_HEADER:
        return None
    return SegmentHeader(tli, pageaddr, sysid, seg_size, blcksz)


@dataclass(frozen=True, order=True)
class Segment:
    timeline: int
    number: int
    """The segment's position: log * segments_per_log + segment."""

    def name(self, segment_size: int) -> str:
        per_log = 0x100000000 // segment_size
        log, seg = divmod(self.number, per_log)
        return f"{self.timeline:08X}{log:08X}{seg:08X}"


def parse_segment(name: str, segment_size: int) -> Segment:
    if not SEGMENT.fullmatch(name):
        raise ValueError(f"{name!r} is not a WAL segment name")
    per_log = 0x100000000 // segment_size
    return Segment(int(name[:8], 16), int(name[8:16], 16) * per_log + int(name[16:], 16))


def segment_of_lsn(lsn: int, timeline: int, segment_size: int) -> Segment:
    return Segment(timeline, lsn // segment_size)


def parse_lsn(text: str) -> int:
    """PostgreSQL's 16/B374D848 notation."""
    high, sep, low = text.strip().partition("/")
    if not sep:
        raise ValueError(f"{text!r} is not an LSN (as 16/B374D848)")
    return (int(high, 16) << 32) | int(low, 16)


def format_lsn(lsn: int) -> str:
    return f"{lsn >> 32:X}/{lsn & 0xFFFFFFFF:X}"
