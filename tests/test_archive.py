"""The custom-format archive reader: exact rows and hashes, whatever the read chunking."""

from __future__ import annotations

import hashlib
import random
import subprocess
from collections.abc import Callable
from pathlib import Path

import awkward
import psycopg
import pytest

from bika.errors import DumpError
from bika.postgres import binaries, sample
from bika.postgres.archive import ArchiveTap, read_toc, row_frame, write_data_offsets
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
    sample.load(url, awkward.SQL)
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
        assert other.large_objects == whole.large_objects == len(awkward.LARGE_OBJECTS)
        assert other.data_offsets == whole.data_offsets


def test_rows_are_exact_and_hash_is_the_framed_copy_text(awkward_dump: tuple[str, bytes]) -> None:
    url, data = awkward_dump
    summary = _read(data, lambda: 4096).finish()
    assert {(t.schema, t.name) for t in summary.tables} == set(awkward.TABLES)
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


def test_data_offsets_are_where_pg_dump_puts_them_in_a_file(
    awkward_dump: tuple[str, bytes], tmp_path: Path
) -> None:
    """A streamed archive's TOC has no data offsets; the tap finds the same ones pg_dump
    writes when its output is a seekable file, and pg_restore reads the patched file."""
    url, streamed = awkward_dump
    seekable = tmp_path / "seekable.dump"
    _dump(url, "-Z0", f"--file={seekable}")
    expected = read_toc(seekable.read_bytes())
    assert expected is not None and expected.data_offsets
    assert len(expected.data_offsets) == sum(e.had_dumper for e in expected.entries)
    before = read_toc(streamed)
    assert before is not None and before.data_offsets == {}

    offsets = _read(streamed, lambda: 777).finish().data_offsets
    assert offsets == expected.data_offsets

    patched = tmp_path / "patched.dump"
    patched.write_bytes(streamed)
    with patched.open("r+b") as file:
        assert write_data_offsets(file, offsets) == len(offsets)
    data = patched.read_bytes()
    after = read_toc(data)
    assert after is not None and after.data_offsets == expected.data_offsets
    assert len(data) == len(streamed)  # the TOC changed in place, nothing moved
    pg_restore = binaries.tool("pg_restore", binaries.find_bin_dir())

    def table_data(path: Path) -> list[bytes]:
        script = subprocess.run(
            [str(pg_restore), "--data-only", "--table=texts", "--file=-", str(path)],
            capture_output=True,
            check=True,
        ).stdout
        # pg_dump 18 brackets scripts with a random \restrict key
        return [line for line in script.splitlines() if b"restrict " not in line]

    restored = table_data(patched)
    assert any(line.startswith(b"COPY public.texts") for line in restored)
    assert restored == table_data(seekable)


def test_wrong_data_offsets_make_pg_restore_fail(
    awkward_dump: tuple[str, bytes], tmp_path: Path
) -> None:
    """The offsets really are what pg_restore follows: shifted by one byte, it fails."""
    _, streamed = awkward_dump
    offsets = _read(streamed, lambda: 65536).finish().data_offsets
    patched = tmp_path / "shifted.dump"
    patched.write_bytes(streamed)
    with patched.open("r+b") as file:
        write_data_offsets(file, {dump_id: at + 1 for dump_id, at in offsets.items()})
    pg_restore = binaries.tool("pg_restore", binaries.find_bin_dir())
    result = subprocess.run(
        [str(pg_restore), "--data-only", "--file=-", str(patched)], capture_output=True
    )
    assert result.returncode != 0
