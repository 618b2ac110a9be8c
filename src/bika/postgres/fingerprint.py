"""Recomputes each restored table's exact row count and content hash, the ones a manifest holds.

`COPY table (dumped columns) TO STDOUT` under pg_dump's own session settings yields the rows
pg_dump wrote, in load order; each row is framed like a data-block chunk and hashed in bulk.
"""

from __future__ import annotations

import hashlib
import itertools
import os
import queue
import select
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, TypeAlias

import psycopg
from psycopg import pq, sql

from bika.postgres.connection import ConnInfo, first_lines

# What pg_dump 18 sets on its connection before dumping (setup_connection in pg_dump.c, and
# seen in a server's statement log): any of them changes the COPY text, or the rows' order.
PG_DUMP_SETTINGS: dict[str, str] = {
    "DateStyle": "ISO",
    "IntervalStyle": "postgres",
    "extra_float_digits": "3",
    # a synchronized scan may start mid-table; pg_dump reads from the first page, and so do we
    "synchronize_seqscans": "off",
    "statement_timeout": "0",
    "lock_timeout": "0",
    "idle_in_transaction_session_timeout": "0",
    "row_security": "off",
    # reg* columns print names relative to the search path; pg_dump empties it
    "search_path": "",
}

_MAX_CACHED_HEADERS = 1 << 16
# Tables bigger than this are read by several connections at once, in page ranges.
SPLIT_BYTES = 64 << 20
TID_RANGE_SCANS = 140000
SPOOL_READ = 1 << 20

# One COPY row with its newline, as libpq hands it over (bytes, or a view with pure-Python psycopg)
Row: TypeAlias = "bytes | memoryview[int]"


class _Headers(dict[int, bytes]):
    """Row length → its chunk header (0x00, uint32 LE length), made once per distinct length."""

    def __missing__(self, length: int) -> bytes:
        header = b"\x00" + length.to_bytes(4, "little")
        if len(self) < _MAX_CACHED_HEADERS:
            self[length] = header
        return header


@dataclass
class TableHasher:
    """Hashes COPY rows the way archive.ArchiveTap hashes a data block's chunks."""

    rows: int = 0
    size: int = 0
    _hash: Any = field(default_factory=hashlib.sha256, repr=False)
    _headers: _Headers = field(default_factory=_Headers, repr=False)

    def frame(self, rows: Sequence[Row]) -> bytes:
        """Whole rows (each ending in its newline) framed as pg_dump's chunks, counted."""
        count = len(rows)
        if not count:
            return b""
        # One join per batch: the per-row work stays in C (map, slice assignment, join).
        pieces: list[Row] = [b""] * (2 * count)
        lengths = list(map(len, rows))
        pieces[0::2] = map(self._headers.__getitem__, lengths)
        pieces[1::2] = rows
        self.rows += count
        self.size += 5 * count + sum(lengths)
        return b"".join(pieces)

    def update(self, rows: Sequence[Row]) -> None:
        """Add whole rows, in order."""
        self._hash.update(self.frame(rows))

    def update_framed(self, data: bytes) -> None:
        """Add rows already framed (and counted) by another hasher's frame()."""
        self._hash.update(data)

    def update_text(self, data: bytes) -> bytes:
        """Add the complete rows of a piece of COPY text; return the unfinished rest."""
        rows = data.split(b"\n")
        rest = rows.pop()
        self.update([row + b"\n" for row in rows])
        return rest

    @property
    def sha256(self) -> str:
        return str(self._hash.hexdigest())


@dataclass(frozen=True)
class TableFingerprint:
    schema: str
    name: str
    rows: int = 0
    sha256: str = ""
    size: int = 0
    seconds: float = 0.0
    problem: str | None = None
    """Why there is no fingerprint: the table does not exist, or COPY failed."""

    @property
    def qualified(self) -> str:
        return f"{self.schema}.{self.name}"


@dataclass
class FingerprintReport:
    tables: dict[tuple[str, str], TableFingerprint]
    notes: list[str]
    seconds: float

    @property
    def rows(self) -> int:
        return sum(t.rows for t in self.tables.values())

    @property
    def size(self) -> int:
        return sum(t.size for t in self.tables.values())


def fingerprint_tables(
    conn: ConnInfo,
    tables: Sequence[tuple[str, str]],
    *,
    encoding: str | None = None,
    settings: Mapping[str, str] | None = None,
    workers: int = 0,
    spool_dir: Path | None = None,
    split_bytes: int = SPLIT_BYTES,
) -> FingerprintReport:
    """Fingerprint tables (in the given order: biggest first is fastest) over `workers`
    connections; see Fingerprinter."""
    with Fingerprinter(
        conn,
        encoding=encoding,
        settings=settings,
        workers=workers,
        spool_dir=spool_dir,
        split_bytes=split_bytes,
    ) as fingerprinter:
        fingerprinter.add(tables)
        return fingerprinter.finish()


class Fingerprinter:
    """Fingerprints tables over `workers` connections as they are handed in, so a caller can
    start on the tables that are ready while others are still being written.

    `encoding` is the dump's client encoding (default: the database's); `settings` are the
    source session's output settings (TimeZone, bytea_output, lc_monetary) to apply on top of
    pg_dump's. A big table is read as page ranges by several connections at once; the ranges
    after the first wait, framed, in temporary files under `spool_dir` until it is hashed.
    A table must not change once added: its rows are read when a connection is free. add()
    and finish() are called from one thread at a time."""

    def __init__(
        self,
        conn: ConnInfo,
        *,
        encoding: str | None = None,
        settings: Mapping[str, str] | None = None,
        workers: int = 0,
        spool_dir: Path | None = None,
        split_bytes: int = SPLIT_BYTES,
    ) -> None:
        self._conn = conn
        self._encoding = encoding
        self._settings = dict(settings or {})
        self._workers = max(1, min(workers or (os.cpu_count() or 2), 8))
        self._spool_dir = spool_dir
        self._split_bytes = split_bytes
        self._todo: queue.SimpleQueue[_Part | None] = queue.SimpleQueue()
        self._tables: dict[tuple[str, str], _Table] = {}
        self._threads: list[threading.Thread] = []
        self._errors: list[BaseException] = []
        self._stopping = False
        self._planner: psycopg.Connection[Any] | None = None
        self._splits = 1
        self._notes: list[str] = []
        self._started = 0.0

    def __enter__(self) -> Fingerprinter:
        self._started = time.monotonic()
        self._planner = self._conn.connect(autocommit=True)
        try:
            self._notes = _prepare_session(self._planner, self._encoding, self._settings)
            if self._planner.info.server_version >= TID_RANGE_SCANS:
                self._splits = self._workers
        except BaseException:
            self._planner.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        # an unfinished run (an error elsewhere) stops at the parts being read
        self._stopping = True
        self._stop_threads()
        if self._planner is not None:
            self._planner.close()

    def add(self, tables: Sequence[tuple[str, str]]) -> None:
        """Queue tables, read in the order given once a connection is free."""
        assert self._planner is not None, "use Fingerprinter as a context manager"
        for schema, name in tables:
            if (schema, name) in self._tables:
                continue
            table = _plan(self._planner, schema, name, self._splits, self._split_bytes)
            self._tables[schema, name] = table
            for part in table.parts:
                self._todo.put(part)
            wanted = min(self._workers, len(self._threads) + len(table.parts))
            while len(self._threads) < wanted:
                thread = threading.Thread(target=self._work, daemon=True)
                thread.start()
                self._threads.append(thread)

    def finish(self) -> FingerprintReport:
        """Wait for every table added; their fingerprints, in the order they were added."""
        self._stop_threads()
        if self._errors:
            raise self._errors[0]
        results = {key: table.result() for key, table in self._tables.items()}
        return FingerprintReport(results, self._notes, time.monotonic() - self._started)

    def _stop_threads(self) -> None:
        for _ in self._threads:
            self._todo.put(None)
        for thread in self._threads:
            thread.join()
        self._threads = []

    def _work(self) -> None:
        try:
            with self._conn.connect(autocommit=True) as db:
                _prepare_session(db, self._encoding, self._settings)
                while (part := self._todo.get()) is not None:
                    if not self._stopping:
                        part.table.read(db, part, self._spool_dir)
        except BaseException as exc:
            # the other connections give up too: finish() raises this
            self._errors.append(exc)
            self._stopping = True


@dataclass
class _Part:
    table: _Table
    index: int
    query: bytes


class _Table:
    """One table's fingerprint, assembled from its parts: the first is hashed as it streams,
    the others are framed into spool files and hashed after it, in page order."""

    def __init__(self, schema: str, name: str, problem: str | None = None) -> None:
        self.schema = schema
        self.name = name
        self.parts: list[_Part] = []
        self.problem = problem
        self._hasher = TableHasher()
        self._spools: dict[int, IO[bytes]] = {}
        self._counts: list[tuple[int, int]] = []
        self._left = 0
        self._lock = threading.Lock()
        self._started: float | None = None
        self._seconds = 0.0

    def read(self, db: psycopg.Connection[Any], part: _Part, spool_dir: Path | None) -> None:
        with self._lock:
            self._started = self._started or time.monotonic()
        if part.index == 0:
            problem = _copy_out(db, part.query, self._hasher.update)
        else:
            counter = TableHasher()
            spool = tempfile.TemporaryFile(dir=spool_dir)  # noqa: SIM115 closed by _finish
            problem = _copy_out(db, part.query, lambda rows: spool.write(counter.frame(rows)))
            with self._lock:
                self._spools[part.index] = spool
                self._counts.append((counter.rows, counter.size))
        with self._lock:
            self.problem = self.problem or problem
            self._left -= 1
            if self._left == 0:
                self._finish()

    def _finish(self) -> None:
        for index in sorted(self._spools):
            spool = self._spools[index]
            if self.problem is None:
                spool.seek(0)
                while data := spool.read(SPOOL_READ):
                    self._hasher.update_framed(data)
            spool.close()
        self._hasher.rows += sum(rows for rows, _ in self._counts)
        self._hasher.size += sum(size for _, size in self._counts)
        self._seconds = time.monotonic() - (self._started or time.monotonic())

    def result(self) -> TableFingerprint:
        if self.problem is not None:
            return TableFingerprint(self.schema, self.name, problem=self.problem)
        hasher = self._hasher
        return TableFingerprint(
            self.schema, self.name, hasher.rows, hasher.sha256, hasher.size, self._seconds
        )


def _plan(
    db: psycopg.Connection[Any], schema: str, name: str, splits: int, split_bytes: int
) -> _Table:
    """How to read one table: a COPY of it, or COPYs of page ranges when it is big."""
    row = db.execute(
        "SELECT c.oid, pg_catalog.pg_relation_size(c.oid), current_setting('block_size')::int"
        " FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE n.nspname = %s AND c.relname = %s AND c.relkind IN ('r', 'p', 'm', 'f')",
        (schema, name),
    ).fetchone()
    if row is None:
        return _Table(schema, name, problem="does not exist")
    table = _Table(schema, name)
    relation = sql.Identifier(schema, name)
    columns = [sql.Identifier(c) for c in dumped_columns(db, int(row[0]))]
    size, block = int(row[1]), int(row[2])
    pages = size // block
    parts = min(splits, max(1, size // split_bytes), max(1, pages))
    if parts == 1:
        listed = sql.SQL("({}) ").format(sql.SQL(", ").join(columns)) if columns else sql.SQL("")
        queries = [sql.SQL("COPY {} {}TO STDOUT").format(relation, listed)]
    else:
        # A TID range scan (PostgreSQL 14+) reads just its pages, in the heap order COPY uses
        bounds = [pages * i // parts for i in range(parts)] + [None]
        queries = []
        for low, high in itertools.pairwise(bounds):
            where = sql.SQL("ctid >= {}::tid").format(sql.Literal(f"({low},0)"))
            if high is not None:
                where += sql.SQL(" AND ctid < {}::tid").format(sql.Literal(f"({high},0)"))
            queries.append(
                sql.SQL("COPY (SELECT {} FROM ONLY {} WHERE {}) TO STDOUT").format(
                    sql.SQL(", ").join(columns), relation, where
                )
            )
    table.parts = [_Part(table, i, q.as_bytes(db)) for i, q in enumerate(queries)]
    table._left = len(table.parts)
    return table


def _prepare_session(
    db: psycopg.Connection[Any], encoding: str | None, settings: Mapping[str, str]
) -> list[str]:
    """Apply pg_dump's settings, then the source's output settings; say what could not be."""
    notes = []
    db.execute(
        "SELECT pg_catalog.set_config('client_encoding', %s, false)",
        (encoding or _database_encoding(db),),
    )
    for name, value in {**PG_DUMP_SETTINGS, **settings}.items():
        try:
            db.execute("SELECT pg_catalog.set_config(%s, %s, false)", (name, value))
        except psycopg.Error as exc:
            notes.append(
                f"could not set {name} = {value!r} as the backup's session had it"
                f" ({first_lines(str(exc))}): columns whose text depends on it may differ"
            )
    return notes


def _database_encoding(db: psycopg.Connection[Any]) -> str:
    row = db.execute(
        "SELECT pg_encoding_to_char(encoding) FROM pg_database WHERE datname = current_database()"
    ).fetchone()
    return str(row[0]) if row else "UTF8"


def dumped_columns(db: psycopg.Connection[Any], oid: int) -> list[str]:
    """The columns pg_dump's COPY lists: not dropped, not generated, in attnum order."""
    generated = "AND a.attgenerated = ''" if db.info.server_version >= 120000 else ""
    rows = db.execute(
        "SELECT a.attname FROM pg_attribute a WHERE a.attrelid = %s AND a.attnum > 0"
        f" AND NOT a.attisdropped {generated} ORDER BY a.attnum",
        (oid,),
    ).fetchall()
    return [str(r[0]) for r in rows]


def _copy_out(
    db: psycopg.Connection[Any], query: bytes, consume: Callable[[list[Row]], object]
) -> str | None:
    """Run COPY … TO STDOUT and pass its rows to consume in batches; the error, if any.

    psycopg's Copy object costs microseconds per row; libpq's non-blocking calls hand over
    each row for a fraction of that, and every row already buffered is taken in one batch.
    Waiting happens in select(), which lets other threads hash meanwhile."""
    pg = db.pgconn
    pg.send_query(query)
    _wait(pg)
    result = pg.get_result()
    if result is None or result.status != pq.ExecStatus.COPY_OUT:
        refused = _error(pg, result)
        _drain(pg)
        return refused
    get = pg.get_copy_data
    rows: list[Row] = []
    append = rows.append
    while True:
        size, data = get(1)
        if size > 0:
            append(data)
            continue
        if rows:
            consume(rows)
            rows = []
            append = rows.append
        if size == 0:
            _wait_readable(pg)
            continue
        break
    result = pg.get_result()
    message: str | None = None
    if result is None or result.status != pq.ExecStatus.COMMAND_OK:
        message = _error(pg, result)
    _drain(pg)
    return message


def _wait_readable(pg: Any) -> None:
    select.select([pg.socket], [], [])
    pg.consume_input()


def _wait(pg: Any) -> None:
    while pg.is_busy():
        _wait_readable(pg)


def _drain(pg: Any) -> None:
    _wait(pg)
    while pg.get_result() is not None:
        _wait(pg)


def _error(pg: Any, result: Any) -> str:
    raw = (result.error_message if result is not None else b"") or pg.error_message or b""
    text = bytes(raw).decode("utf-8", "replace")
    return first_lines(text) if text.strip() else "COPY ended without a result"


def table_order(sizes: Iterable[tuple[tuple[str, str], int]]) -> list[tuple[str, str]]:
    """Biggest first, so the longest COPY starts at once and the small ones fill the gaps."""
    return [table for table, _ in sorted(sizes, key=lambda item: -item[1])]
