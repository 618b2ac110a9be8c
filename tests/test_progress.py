"""Progress on long work: backup knows about how big the dump will be (the previous backup of
the same database, else the database's size), verify --read-data counts up to the stored size,
and the live line turns those into % and time left."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import psycopg
import pytest

from bika.crypto import generate_identity, load_identities
from bika.operations.backup import BackupOptions, expected_dump_size, take_backup
from bika.operations.verify import bytes_to_read, parse_subset, verify_backup
from bika.postgres import catalog
from bika.postgres.cluster import Cluster
from bika.postgres.connection import ConnInfo
from bika.repository import Repository
from bika.storage import open_storage

MiB = 1024 * 1024


def test_the_line_shows_percent_and_time_left_against_the_expected_size() -> None:
    from bika.cli.progress import progress_line

    line = progress_line(("dumped", 100 * MiB, 400 * MiB), ("stored", 30 * MiB, None), 10.0)
    assert line == (
        "dumped 100.0 MiB of ~400.0 MiB (25%)  stored 30.0 MiB  10.0 MiB/s  10s, ~30s left"
    )
    # verify counts the stored bytes; a long remainder reads in minutes
    line = progress_line(
        ("checked", 10 * MiB, None), ("read", 1 * MiB, 100 * MiB), 2.0, estimate=False
    )
    assert line.endswith("read 1.0 MiB of 100.0 MiB (1%)  512.0 KiB/s  2s, ~3m18s left")
    # an estimate that fell short: plain counts, no made-up percentage
    line = progress_line(("dumped", 500 * MiB, 400 * MiB), ("stored", 1 * MiB, None), 5.0)
    assert line == "dumped 500.0 MiB  stored 1.0 MiB  100.0 MiB/s  5s"


@pytest.fixture
def repository(tmp_path: Path) -> tuple[Repository, list[object]]:
    recipient = generate_identity(tmp_path / "key.txt")
    repo = Repository.init(open_storage(str(tmp_path / "repo")), [recipient])
    return repo, load_identities(tmp_path / "key.txt")


def test_backup_expects_the_previous_dumps_size_else_the_databases(
    pg18: Cluster,
    new_database: Callable[[Cluster], str],
    repository: tuple[Repository, list[object]],
) -> None:
    repo, _ = repository
    url = new_database(pg18)
    psycopg.connect(url, autocommit=True).execute(
        "CREATE TABLE t AS SELECT g AS id, repeat('x', 200) AS pad FROM generate_series(1, 20000) g"
    )
    conn = ConnInfo.parse(url)
    assert expected_dump_size(repo, conn) == catalog.database_size(conn)
    first = take_backup(repo, conn, BackupOptions())
    assert expected_dump_size(repo, conn) == first.artifacts["database"].plain_size
    other = ConnInfo.parse(new_database(pg18))  # another database: not its previous backup
    assert expected_dump_size(repo, other) == catalog.database_size(other)


def test_verify_read_data_counts_up_to_the_stored_size(
    pg18: Cluster,
    new_database: Callable[[Cluster], str],
    repository: tuple[Repository, list[object]],
) -> None:
    repo, identities = repository
    url = new_database(pg18)
    psycopg.connect(url, autocommit=True).execute(
        "CREATE TABLE t AS SELECT g AS id, md5(g::text) AS h FROM generate_series(1, 50000) g"
    )
    manifest = take_backup(repo, ConnInfo.parse(url), BackupOptions())
    seen: list[tuple[int, int]] = []
    result = verify_backup(
        repo, manifest, identities=identities, progress=lambda p, s: seen.append((p, s))
    )
    assert result.ok and seen
    stored = [s for _, s in seen]
    assert stored == sorted(stored)  # counted on across the dump and the roles
    assert stored[-1] == bytes_to_read(manifest) == result.read_bytes
    plain = sum(a.plain_size for a in manifest.artifacts.values())
    assert seen[-1][0] == plain
    half = parse_subset("1/2", manifest.started_at.date())
    assert bytes_to_read(manifest, half) == sum(
        a.stored_size for a in manifest.artifacts.values() if half.contains(a.key)
    )
