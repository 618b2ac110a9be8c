"""WAL file names and repository keys: pure functions, no I/O.

A segment is TTTTTTTTXXXXXXXXYYYYYYYY (timeline, log, segment within the log, in hex); its
object is wal/<TTTTTTTTXXXXXXXX>/<segment>-<plaintext sha256>.zst.age.
"""

from __future__ import annotations

import struct

# no re and no dataclasses: `wal push` imports this on every call, and those two cost more
# start-up than the whole push path otherwise (bench/PITR.md)

WAL_PREFIX = "wal/"
HISTORY_FOLDER = "wal/history/"
CLUSTER_KEY = "wal/cluster.json"
SUFFIX = ".zst.age"

_UPPER_HEX = frozenset("0123456789ABCDEF")
_LOWER_HEX = frozenset("0123456789abcdef")
_SHA_LENGTH = 64

XLP_LONG_HEADER = 0x0002
_LONG_HEADER = struct.Struct("<HHIQI4xQII")  # XLogLongPageHeaderData on a little-endian host
WAL_MAGICS = range(0xD100, 0xD200)  # XLOG_PAGE_MAGIC of PostgreSQL 9.x–18 lie in here


def is_segment(name: str) -> bool:
    """TTTTTTTTXXXXXXXXYYYYYYYY: 24 upper-case hex digits."""
    return len(name) == 24 and _UPPER_HEX.issuperset(name)


def is_history(name: str) -> bool:
    """TTTTTTTT.history"""
    return len(name) == 16 and name.endswith(".history") and _UPPER_HEX.issuperset(name[:8])


def segment_part(name: str) -> str | None:
    """The segment a segment, .partial or .backup file (000000010000000000000003.00000028.backup)
    belongs to, or None for any other name."""
    segment, rest = name[:24], name[24:]
    if not is_segment(segment):
        return None
    if rest in ("", ".partial"):
        return segment
    if (
        len(rest) == 16
        and rest.startswith(".")
        and rest.endswith(".backup")
        and _UPPER_HEX.issuperset(rest[1:9])
    ):
        return segment
    return None


def is_archivable(name: str) -> bool:
    """Whether `name` is a file PostgreSQL hands to archive_command."""
    return is_history(name) or segment_part(name) is not None


def folder(name: str) -> str:
    """The repository folder of a WAL file (segment, .partial, .backup or .history)."""
    if is_history(name):
        return HISTORY_FOLDER
    if segment_part(name) is None:
        raise ValueError(f"{name!r} is not a WAL file name")
    return f"{WAL_PREFIX}{name[:16]}/"


def object_key(name: str, sha256: str) -> str:
    return f"{folder(name)}{name}-{sha256}{SUFFIX}"


def listing_prefix(name: str) -> str:
    """The prefix whose LIST shows every stored object of this WAL file, and nothing else."""
    return f"{folder(name)}{name}-"


def parse_object(key: str) -> tuple[str, str] | None:
    """(WAL file name, plaintext sha256) of an object key under wal/, or None."""
    base = key.rsplit("/", 1)[-1]
    if not base.endswith(SUFFIX):
        return None
    name, dash, sha = base[: -len(SUFFIX)].rpartition("-")
    if not dash or len(sha) != _SHA_LENGTH or not _LOWER_HEX.issuperset(sha):
        return None
    if not is_archivable(name):
        return None
    return name, sha


class SegmentHeader:
    """What the first page of a segment says about the cluster that wrote it."""

    __slots__ = ("block_size", "page_address", "segment_size", "system_identifier", "timeline")

    def __init__(
        self,
        timeline: int,
        page_address: int,
        system_identifier: int,
        segment_size: int,
        block_size: int,
    ) -> None:
        self.timeline = timeline
        self.page_address = page_address
        self.system_identifier = system_identifier
        self.segment_size = segment_size
        self.block_size = block_size


def read_header(data: bytes | memoryview) -> SegmentHeader | None:
    """The long page header that starts every segment, or None if it is not one."""
    if len(data) < _LONG_HEADER.size:
        return None
    magic, info, tli, pageaddr, _rem, sysid, seg_size, blcksz = _LONG_HEADER.unpack_from(data)
    if magic not in WAL_MAGICS or not info & XLP_LONG_HEADER:
        return None
    return SegmentHeader(tli, pageaddr, sysid, seg_size, blcksz)


class Segment:
    """A segment's position: `number` is log * segments_per_log + segment. Ordered by
    (timeline, number), immutable, hashable (a value, as a frozen dataclass would be)."""

    __slots__ = ("_key",)
    _key: tuple[int, int]

    def __init__(self, timeline: int, number: int) -> None:
        object.__setattr__(self, "_key", (timeline, number))

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"Segment is immutable; cannot set {name}")

    @property
    def timeline(self) -> int:
        return self._key[0]

    @property
    def number(self) -> int:
        return self._key[1]

    def name(self, segment_size: int) -> str:
        per_log = 0x100000000 // segment_size
        log, seg = divmod(self.number, per_log)
        return f"{self.timeline:08X}{log:08X}{seg:08X}"

    def __repr__(self) -> str:
        return f"Segment(timeline={self.timeline}, number={self.number})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Segment) and self._key == other._key

    def __hash__(self) -> int:
        return hash(self._key)

    def __lt__(self, other: Segment) -> bool:
        return self._key < other._key

    def __le__(self, other: Segment) -> bool:
        return self._key <= other._key

    def __gt__(self, other: Segment) -> bool:
        return self._key > other._key

    def __ge__(self, other: Segment) -> bool:
        return self._key >= other._key


def parse_segment(name: str, segment_size: int) -> Segment:
    if not is_segment(name):
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
