"""The custom-format archive reader: exact rows and hashes, whatever the read chunking."""

from __future__ import annotations

import hashlib
import random
import subprocess
from collections.abc import Callable

import psycopg
import pytest

from bika.errors import DumpError
from bika.postgres import binaries, sample
from bika.postgres.archive import ArchiveTap, row_frame
from bika.postgres.cluster import Cluster
from bika.postgres.connection import ConnInfo


def _dump(url: str, *extra: str) -> bytes:
    conninfo, env = ConnInfo.parse(url).libpq_args()
    pg_dump = binaries.tool("pg_dump", binaries.find_bin_dir())
    return subprocess.run(
        [str(pg_dump), "-Fc", *extra, f"--dbname={conninfo}"],
        capture_output=True,
        check=True,
        env={**env, "PATH": "/usr/bin:/bin"},
    ).stdout


def _read(data: bytes, sizes: Callable[[], int]) -> ArchiveTap:
    tap = ArchiveTap()
    pos = 0
    while pos < len(data):
        n = sizes()
        tap.feed(data[pos : pos + n])
        pos += n
    return tap


@pytest.fixture
def awkward_dump(pg: Cluster, new_database: Callable[[Cluster], str]) -> tuple[str, bytes]:
    url = new_database(pg)
    sample.load(url, sample.AWKWARD_SQL)
    return url, _dump(url, "-Z0")


def test_rows_and_hashes_do_not_depend_on_chunking(awkward_dump: tuple[str, bytes]) -> None:
    _, data = awkward_dump
    whole = _read(data, lambda: len(data)).finish()
    rng = random.Random(7)
    for sizes in (lambda: 1, lambda: 5, lambda: rng.randint(1, 700), lambda: 65536):
        other = _read(data, sizes).finish()
        assert [(t.schema, t.name, t.rows, t.sha256) for t in other.tables] == [
            (t.schema, t.name, t.rows, t.sha256) for t in whole.tables
        ]
        assert other.large_objects == whole.large_objects == len(sample.AWKWARD_LARGE_OBJECTS)


def test_rows_are_exact_and_hash_is_the_framed_copy_text(awkward_dump: tuple[str, bytes]) -> None:
    url, data = awkward_dump
    summary = _read(data, lambda: 4096).finish()
    assert {(t.schema, t.name) for t in summary.tables} == set(sample.AWKWARD_TABLES)
    with psycopg.connect(url) as db:
        for table in summary.tables:
            ident = psycopg.sql.Identifier(table.schema, table.name)
            count = db.execute(psycopg.sql.SQL("SELECT count(*) FROM ONLY {}").format(ident))
            assert table.rows == count.fetchone()[0], table.name  # type: ignore[index]
        texts = next(t for t in summary.tables if t.name == "texts")
        db.execute("SET extra_float_digits = 3; SET DateStyle = ISO")
        with db.cursor().copy(
            psycopg.sql.SQL("COPY {} TO STDOUT").format(psycopg.sql.Identifier("public", "texts"))
        ) as copy:
            copied = b"".join(bytes(chunk) for chunk in copy)
    digest = hashlib.sha256()
    for row in copied.splitlines(keepends=True):
        digest.update(row_frame(row))
    assert texts.sha256 == digest.hexdigest()


def test_truncated_archive_is_an_error(awkward_dump: tuple[str, bytes]) -> None:
    _, data = awkward_dump
    tap = _read(data[: len(data) * 2 // 3], lambda: 8192)
    with pytest.raises(DumpError, match=r"truncated|middle"):
        tap.finish()


def test_compressed_archive_is_refused(awkward_dump: tuple[str, bytes]) -> None:
    url, _ = awkward_dump
    tap = ArchiveTap()
    with pytest.raises(DumpError, match="-Z0"):
        tap.feed(_dump(url))  # pg_dump's default: gzip inside the archive
