"""Reads pg_dump's custom archive format (-Fc -Z0) as it streams past.

It learns the table of contents and, from each table's data block, the exact row count and a
content hash, without buffering more than the TOC and one read chunk.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import IO

from bika.errors import DumpError

MAGIC = b"PGDMP"
BLK_DATA = 1
BLK_BLOBS = 3
# Archive versions this reader understands (pg_dump 12 wrote 1.14; 17 and 18 write 1.16).
MIN_VERSION = (1, 14)
MAX_VERSION = (1, 16)
_ROW_HEADER = struct.Struct("<xI")  # sign byte, then a 4-byte little-endian length
ROW_FRAME = 5
END_OF_COPY = b"\\.\n\n\n"
END_OF_COPY_LEN = len(END_OF_COPY)
# A TOC entry's data position flag (pg_backup_custom.c) when the position is known; streamed
# output has 1 (not set: pg_restore scans for the data), entries without data 3.
OFFSET_SET = 2


def row_frame(row: bytes) -> bytes:
    """The framing of one COPY row inside a data block: 0x00, 4-byte LE length, the row."""
    return b"\x00" + len(row).to_bytes(4, "little") + row


@dataclass(frozen=True, kw_only=True)
class TocEntry:
    """One object of the archive, as `pg_restore --list` shows it, plus what it needs."""

    dump_id: int
    desc: str
    section: int
    namespace: str | None
    tag: str
    owner: str | None
    dependencies: tuple[int, ...] = ()
    drop: str | None = None  # pg_dump's statement that removes the object
    defn: str | None = None  # pg_dump's statement that creates (or sets) it
    large_objects: tuple[int, ...] = ()  # oids, for a BLOB METADATA entry
    had_dumper: bool = False  # a data block follows the TOC for it
    copy_stmt: str | None = None

    @property
    def name(self) -> str:
        """The entry as people read it: "TABLE public.groups", "COMMENT SCHEMA ledger"."""
        where = f"{self.namespace}." if self.namespace else ""
        return f"{self.desc} {where}{self.tag}"

    @property
    def qualified(self) -> str:
        return f"{self.namespace}.{self.tag}" if self.namespace else self.tag


@dataclass
class TableData:
    """What one TABLE DATA block held: rows and a hash of their framed COPY text."""

    schema: str
    name: str
    rows: int = 0
    size: int = 0
    hasher: hashlib._Hash = field(default_factory=hashlib.sha256, repr=False)

    @property
    def sha256(self) -> str:
        return self.hasher.hexdigest()


@dataclass(frozen=True)
class ArchiveToc:
    """The archive's header and table of contents."""

    version: tuple[int, int, int]
    database: str
    server_version: str
    dump_version: str
    entries: tuple[TocEntry, ...]
    int_size: int = 4
    off_size: int = 8
    # dump id → where its data block starts, as the TOC records it (a seekable pg_dump -f)
    data_offsets: Mapping[int, int] = field(default_factory=dict, compare=False)
    # dump id → file position of the entry's position flag, for write_data_offsets
    offset_fields: Mapping[int, int] = field(default_factory=dict, compare=False, repr=False)

    def by_id(self) -> dict[int, TocEntry]:
        return {e.dump_id: e for e in self.entries}


class _NeedMore(Exception):
    """The buffer ends before the structure being parsed does."""


class _Reader:
    def __init__(self, buf: bytes, pos: int = 0) -> None:
        self.buf = buf
        self.pos = pos
        self.int_size = 4
        self.off_size = 8

    def take(self, n: int) -> bytes:
        end = self.pos + n
        if end > len(self.buf):
            raise _NeedMore
        out = self.buf[self.pos : end]
        self.pos = end
        return out

    def byte(self) -> int:
        return self.take(1)[0]

    def int(self) -> int:
        sign = self.byte()
        value = int.from_bytes(self.take(self.int_size), "little")
        return -value if sign else value

    def str(self) -> str | None:
        length = self.int()
        if length < 0:
            return None
        return self.take(length).decode("utf-8", errors="replace")


def read_toc(data: bytes) -> ArchiveToc | None:
    """The header and TOC at the start of an archive; None if data ends before they do."""
    try:
        return _parse_header(data)[0]
    except _NeedMore:
        return None


def _parse_header(buf: bytes) -> tuple[ArchiveToc, int]:
    """Header and TOC from the start of an archive, and where they end; raises _NeedMore
    if buf ends first."""
    r = _Reader(buf)
    if r.take(5) != MAGIC:
        raise DumpError("pg_dump output is not a custom-format archive (bad magic)")
    version = (r.byte(), r.byte(), r.byte())
    if not MIN_VERSION <= version[:2] <= MAX_VERSION:
        raise DumpError(
            f"pg_dump wrote archive version {'.'.join(map(str, version))}, which this bika"
            " cannot read; upgrade bika or use pg_dump 12-18 (pg_bin_dir)"
        )
    r.int_size = r.byte()
    r.off_size = r.byte()
    if r.byte() != 1:
        raise DumpError("pg_dump output is not in custom format (-Fc)")
    compression = r.byte() if version[:2] >= (1, 15) else r.int()
    if compression != 0:
        raise DumpError("pg_dump compressed its archive; bika needs -Z0 output")
    for _ in range(7):  # creation time: sec, min, hour, mday, mon, year, isdst
        r.int()
    database = r.str() or ""
    server_version = r.str() or ""
    dump_version = r.str() or ""
    entries = []
    data_offsets: dict[int, int] = {}
    offset_fields: dict[int, int] = {}
    for _ in range(r.int()):
        dump_id = r.int()
        had_dumper = bool(r.int())
        r.str()  # table oid
        r.str()  # oid
        tag = r.str() or ""
        desc = r.str() or ""
        section = r.int()
        definition = r.str()
        drop = r.str()
        copy_stmt = r.str()
        namespace = r.str()
        r.str()  # tablespace
        r.str()  # table access method
        if version[:2] >= (1, 16):
            r.int()  # relkind
        owner = r.str()
        r.str()  # "false": WITH OIDS
        dependencies = []
        while (dependency := r.str()) is not None:
            dependencies.append(int(dependency))
        offset_fields[dump_id] = r.pos
        flag, position = r.byte(), int.from_bytes(r.take(r.off_size), "little")
        if flag == OFFSET_SET:
            data_offsets[dump_id] = position
        # pg_dump 17+ groups large objects; the entry's definition lists their oids
        oids = definition.split() if desc == "BLOB METADATA" and definition else []
        entries.append(
            TocEntry(
                dump_id=dump_id,
                desc=desc,
                section=section,
                namespace=namespace or None,
                tag=tag,
                owner=owner,
                dependencies=tuple(dependencies),
                drop=drop,
                defn=definition,
                large_objects=tuple(int(o) for o in oids if o.isdigit()),
                had_dumper=had_dumper,
                copy_stmt=copy_stmt,
            )
        )
    toc = ArchiveToc(
        version,
        database,
        server_version,
        dump_version,
        tuple(entries),
        r.int_size,
        r.off_size,
        data_offsets,
        offset_fields,
    )
    return toc, r.pos


def write_data_offsets(file: IO[bytes], offsets: Mapping[int, int]) -> int:
    """Record where each data block starts in the TOC of a streamed archive saved to a file,
    as pg_dump does when it writes to a seekable file; returns how many entries it set.

    pg_restore then seeks straight to a table's data instead of scanning for it, and a
    parallel restore starts with the largest tables (it sizes them by these offsets)."""
    file.seek(0)
    head = b""
    while (toc := read_toc(head)) is None:
        more = file.read(max(1 << 16, len(head)))
        if not more:
            raise DumpError("the archive ends inside its table of contents (truncated)")
        head += more
    wanted = {e.dump_id for e in toc.entries if e.had_dumper}
    done = 0
    for dump_id, position in sorted(offsets.items()):
        if dump_id in wanted and dump_id in toc.offset_fields:
            file.seek(toc.offset_fields[dump_id])
            file.write(bytes([OFFSET_SET]) + position.to_bytes(toc.off_size, "little"))
            done += 1
    file.seek(0, 2)
    return done


@dataclass
class ArchiveSummary:
    toc: ArchiveToc
    tables: list[TableData]
    large_objects: int
    large_object_bytes: int
    data_offsets: dict[int, int]


class ArchiveTap:
    """Feed it the archive's bytes in order; it keeps the header, the TOC and table stats.

    Data blocks are walked row by row with no copy: the hash covers each row's framing and
    text (see row_frame), updated once per fed chunk.
    """

    def __init__(self) -> None:
        self.toc: ArchiveToc | None = None
        self._pending = b""  # bytes not yet parsed (TOC, or a partial structure)
        self._next_attempt = 0
        self._by_id: dict[int, TocEntry] = {}
        self.tables: list[TableData] = []
        self.large_objects = 0
        self.large_object_bytes = 0
        self.data_offsets: dict[int, int] = {}  # dump id → where its data block starts
        self._offset = 0  # archive position of the next buffer _walk gets
        self._table: TableData | None = None
        self._skip = 0  # bytes of the current row (or blob chunk) still to come
        self._state = "header"

    def feed(self, chunk: bytes) -> None:
        if self._state == "header":
            self._pending += chunk
            if len(self._pending) < self._next_attempt:
                return
            try:
                self.toc, pos = _parse_header(self._pending)
            except _NeedMore:
                self._next_attempt = len(self._pending) * 3 // 2
                return
            self._by_id = self.toc.by_id()
            self._state = "block"
            buf, self._pending = self._pending[pos:], b""
            self._offset = pos
            self._walk(buf)
            return
        if self._pending:
            buf, self._pending = self._pending + chunk, b""
            self._walk(buf)
        else:
            self._walk(chunk)

    def _walk(self, buf: bytes) -> None:
        pos, end = 0, len(buf)
        while pos < end:
            if self._skip:
                step = min(self._skip, end - pos)
                if self._table is not None:
                    self._table.hasher.update(memoryview(buf)[pos : pos + step])
                    self._table.size += step
                else:
                    self.large_object_bytes += step
                self._skip -= step
                pos += step
                continue
            state = self._state
            try:
                if state == "rows":
                    pos = self._rows(buf, pos, end)
                    if self._state == "rows" and not self._skip and pos < end:
                        raise _NeedMore
                elif state == "block":
                    if buf[pos] not in (BLK_DATA, BLK_BLOBS):
                        # pg_dump may append a second copy of the TOC after the data
                        self._state = "trailer"
                        return
                    r = _Reader(buf, pos)
                    r.int_size = self._int_size
                    kind, dump_id = r.byte(), r.int()
                    self.data_offsets[dump_id] = self._offset + pos
                    pos = r.pos
                    self._start_block(kind, dump_id)
                elif state == "trailer":
                    return
                elif state == "blob_oid":
                    r = _Reader(buf, pos)
                    r.int_size = self._int_size
                    oid = r.int()
                    pos = r.pos
                    if oid == 0:
                        self._state = "block"
                    else:
                        self.large_objects += 1
                        self._state = "blob_chunks"
                elif state == "blob_chunks":
                    r = _Reader(buf, pos)
                    r.int_size = self._int_size
                    length = r.int()
                    pos = r.pos
                    if length == 0:
                        self._state = "blob_oid"
                    else:
                        self._skip = length
                else:
                    raise DumpError(f"pg_dump archive: unexpected bytes after the end ({state})")
            except _NeedMore:
                self._pending = buf[pos:]
                self._offset += pos
                return
        self._offset += end

    @property
    def _int_size(self) -> int:
        assert self.toc is not None
        return self.toc.int_size

    def _start_block(self, kind: int, dump_id: int) -> None:
        entry = self._by_id.get(dump_id)
        if entry is None:
            raise DumpError(f"pg_dump archive: data block for unknown TOC entry {dump_id}")
        if kind == BLK_DATA:
            self._table = TableData(entry.namespace or "", entry.tag)
            self.tables.append(self._table)
            self._state = "rows"
        elif kind == BLK_BLOBS:
            self._table = None
            self._state = "blob_oid"
        else:
            raise DumpError(f"pg_dump archive: unknown block type {kind} for entry {dump_id}")

    def _rows(self, buf: bytes, pos: int, end: int) -> int:
        """Walk framed rows from pos and hash them in one update; returns where it stopped.

        It stops at the block's terminator (consumed), inside a row (self._skip is set), or
        before a row header cut by the chunk's end (the caller keeps those bytes)."""
        table = self._table
        assert table is not None
        unpack = _ROW_HEADER.unpack_from
        start = pos
        rows = 0
        terminated = False
        last = end - ROW_FRAME
        short = END_OF_COPY_LEN
        while pos <= last:  # the hot loop: one iteration per row of the whole database
            length = unpack(buf, pos)[0]
            if length <= short:
                if length == 0:
                    terminated = True
                    break
                # pg_dump 18 frames COPY's end marker like a row; it is not data
                if pos + ROW_FRAME + length > end:
                    break  # cut by the chunk's end: decide once the rest arrives
                if buf.startswith(b"\\.\n", pos + ROW_FRAME):
                    if pos > start:
                        table.hasher.update(memoryview(buf)[start:pos])
                        table.size += pos - start
                    pos += ROW_FRAME + length
                    start = pos
                    continue
            pos += ROW_FRAME + length
            rows += 1
        if pos > end:  # the last row continues in the next chunk
            self._skip = pos - end
            pos = end
        table.rows += rows
        if pos > start:
            table.hasher.update(memoryview(buf)[start:pos])
            table.size += pos - start
        if terminated:
            self._table = None
            self._state = "block"
            return pos + ROW_FRAME
        return pos

    def finish(self) -> ArchiveSummary:
        if self.toc is None:
            raise DumpError("pg_dump produced no archive header (empty or truncated output)")
        if self._state not in ("block", "trailer") or self._pending or self._skip:
            raise DumpError("pg_dump archive ended in the middle of a data block (truncated)")
        return ArchiveSummary(
            self.toc,
            self.tables,
            self.large_objects,
            self.large_object_bytes,
            self.data_offsets,
        )
