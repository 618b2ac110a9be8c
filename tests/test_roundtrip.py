"""Backup → list/show → verify --read-data → restore, through the CLI, on PostgreSQL 18 and 15.

The bundled 18 tools back up and restore into 15 (what Supabase runs) as well as 18.
"""

from __future__ import annotations

import json
from collections.abc import Callable

import awkward
import psycopg
import pytest

from bika.postgres import sample
from bika.postgres.cluster import Cluster

from helpers import KeyedRepo, row_counts, run_bika


@pytest.mark.parametrize(
    ("source", "target"), [("pg18", "pg18"), ("pg15", "pg15"), ("pg15", "pg18")]
)
def test_backup_verify_restore_round_trip(
    source: str,
    target: str,
    request: pytest.FixtureRequest,
    new_database: Callable[[Cluster], str],
    keyed_repo: KeyedRepo,
) -> None:
    src: Cluster = request.getfixturevalue(source)
    dst: Cluster = request.getfixturevalue(target)
    url = new_database(src)
    sample.load(url, awkward.SQL)
    expected = row_counts(url, awkward.TABLES)

    backup_id = keyed_repo.backup(url, "--label", "round trip")
    listed = keyed_repo.list()
    assert [b["id"] for b in listed] == [backup_id]
    assert listed[0]["tables"] == len(awkward.TABLES)
    assert listed[0]["rows"] == sum(expected.values())
    assert listed[0]["server_version"].split(".")[0] == src.version.split(".")[0]

    shown = json.loads(run_bika("show", backup_id, "--repo", str(keyed_repo.repo), "--json").stdout)
    assert shown["label"] == "round trip"
    assert {f"{t['schema']}.{t['name']}": t["rows"] for t in shown["tables"]} == expected
    assert shown["large_objects"]["count"] == len(awkward.LARGE_OBJECTS)
    assert set(shown["artifacts"]) == {"database", "globals"}

    verified = run_bika(
        "verify", "--repo", str(keyed_repo.repo), "--read-data", "--identity", str(keyed_repo.key)
    )
    assert verified.returncode == 0, verified.stderr

    restored_url = dst.url(f"restored_{backup_id[-4:]}_{source}")
    try:
        result = run_bika(
            "restore",
            backup_id,
            "--repo",
            str(keyed_repo.repo),
            "--identity",
            str(keyed_repo.key),
            "--to",
            restored_url,
            "--create",
        )
        assert result.returncode == 0, result.stderr
        assert "all row counts match" in result.stdout
        assert row_counts(restored_url, awkward.TABLES) == expected
        with psycopg.connect(restored_url) as db:
            blobs = db.execute("SELECT count(*) FROM pg_largeobject_metadata").fetchone()
            assert blobs is not None and blobs[0] == len(awkward.LARGE_OBJECTS)
    finally:
        dst.drop_database(restored_url.rsplit("/", 1)[1])


def test_parallel_restore_matches(
    pg18: Cluster, new_database: Callable[[Cluster], str], keyed_repo: KeyedRepo
) -> None:
    url = new_database(pg18)
    sample.load(url, sample.SAVINGS_GROUP_SQL)
    backup_id = keyed_repo.backup(url)
    target = new_database(pg18)
    result = run_bika(
        "restore",
        backup_id,
        "--repo",
        str(keyed_repo.repo),
        "--identity",
        str(keyed_repo.key),
        "--to",
        target,
        "--jobs",
        "2",
    )
    assert result.returncode == 0, result.stderr
    assert row_counts(target, sample.SAVINGS_GROUP_TABLES) == row_counts(
        url, sample.SAVINGS_GROUP_TABLES
    )


def test_manifest_records_what_was_dumped(
    pg18: Cluster, new_database: Callable[[Cluster], str], keyed_repo: KeyedRepo
) -> None:
    url = new_database(pg18)
    sample.load(url, sample.SAVINGS_GROUP_SQL)
    backup_id = keyed_repo.backup(url, "--kind", "pre-migration")
    manifest = keyed_repo.manifest(backup_id)
    assert manifest["format_version"] == 1
    assert manifest["kind"] == "pre-migration" and "-pre-migration-" in backup_id
    assert manifest["source"]["pg_dump_version"].startswith("18")
    assert manifest["source"]["database_size"] > 1_000_000
    database = manifest["artifacts"]["database"]
    assert database["codecs"] == ["zstd", "age"]
    stored = keyed_repo.repo / database["key"]
    assert stored.stat().st_size == database["stored_size"]
    assert database["plain_size"] > database["stored_size"]
    assert manifest["roles"]["status"] == "saved"
    assert {(t["schema"], t["name"]) for t in manifest["tables"]} == set(
        sample.SAVINGS_GROUP_TABLES
    )


def test_demo_runs_the_whole_job(tmp_path: object) -> None:
    result = run_bika("demo", "--dir", str(tmp_path))
    assert result.returncode == 0, result.stderr
    assert "demo passed" in result.stdout
    assert "drill passed" in result.stderr
    assert "repository:" in result.stdout
