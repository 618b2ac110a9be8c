"""Least privilege: the read-only backup role `bika doctor --print-sql` prints can back up the
whole database and change nothing; the bucket policies give the writer no delete.
(A role that cannot read one table is named before dumping: tests/test_backup_scope.py.)
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from bika.postgres import sample
from bika.postgres.backup_role import backup_role_sql
from bika.postgres.cluster import Cluster

from helpers import KeyedRepo, run_bika


def _statements(script: str) -> list[str]:
    """The script's SQL, as psql would run it (comments and psql meta-commands left out)."""
    lines = [line for line in script.splitlines() if line and not line.startswith(("--", "\\"))]
    return [line.split("--")[0].strip() for line in lines]


def test_the_printed_role_backs_up_everything_and_can_change_nothing(
    pg: Cluster, new_database: Callable[[Cluster], str], keyed_repo: KeyedRepo
) -> None:
    url = new_database(pg)
    sample.load(url, sample.SAVINGS_GROUP_SQL)
    role = f"bika_backup_{uuid.uuid4().hex[:6]}"
    printed = run_bika("doctor", "--print-sql", "--role", role, "--db", url)
    assert printed.returncode == 0, printed.stderr
    assert f"GRANT pg_read_all_data TO {role};" in printed.stdout  # 15 and 18 are 14+
    dbname = url.rsplit("/", 1)[1]
    with psycopg.connect(url, autocommit=True) as db:
        for statement in _statements(printed.stdout):
            db.execute(statement.encode())
        db.execute(sql.SQL("ALTER ROLE {} PASSWORD 'pw'").format(sql.Identifier(role)))
    role_url = pg.url(dbname, user=role, password="pw")
    try:
        backup_id = keyed_repo.backup(role_url)
        tables = {f"{t['schema']}.{t['name']}" for t in keyed_repo.manifest(backup_id)["tables"]}
        assert {f"{s}.{n}" for s, n in sample.SAVINGS_GROUP_TABLES} <= tables
        with psycopg.connect(role_url) as db, pytest.raises(psycopg.Error):
            db.execute("DELETE FROM members")
    finally:
        with psycopg.connect(url, autocommit=True) as db:
            db.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(role)))
        pg.drop_database(dbname)
        pg.execute(f"DROP ROLE {role}")


def test_before_14_the_role_gets_explicit_grants_per_schema() -> None:
    script = backup_role_sql("bika_backup", "ibimina", 130012, ["public", "Ledger"])
    assert "pg_read_all_data" not in script
    for schema in ("public", '"Ledger"'):
        assert f"GRANT SELECT ON ALL TABLES IN SCHEMA {schema} TO bika_backup;" in script
        assert f"GRANT USAGE ON SCHEMA {schema} TO bika_backup;" in script
        assert f"ALTER DEFAULT PRIVILEGES IN SCHEMA {schema} GRANT SELECT ON TABLES" in script
    assert "PASSWORD '" not in script.upper()  # no password in a script


def test_print_sql_without_a_database_prints_the_14_plus_script(tmp_path: Path) -> None:
    result = run_bika("doctor", "--print-sql", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "GRANT pg_read_all_data TO bika_backup;" in result.stdout
    assert "GRANT CONNECT ON DATABASE your_database TO bika_backup;" in result.stdout


def test_s3_writer_may_create_but_never_delete(tmp_path: Path) -> None:
    result = run_bika("doctor", "--print-policy", "s3", "--repo", "s3://bk/prod", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    documents = {}
    for part in result.stdout.split("# ")[1:]:
        job, _, body = part.partition("\n")
        documents[job] = json.loads(body)

    def actions(job: str, effect: str) -> set[str]:
        return {
            action
            for s in documents[job]["Statement"]
            if s["Effect"] == effect
            for action in s["Action"]
        }

    assert set(documents) == {"writer", "pruner", "restore"}
    assert "s3:PutObject" in actions("writer", "Allow")
    assert "s3:DeleteObject" not in actions("writer", "Allow")
    assert {"s3:DeleteObject", "s3:BypassGovernanceRetention"} <= actions("writer", "Deny")
    assert "s3:DeleteObject" in actions("pruner", "Allow")
    # with --object-lock the writer locks what it writes; only a bypass could shorten a lock
    assert "s3:PutObjectRetention" in actions("writer", "Allow") & actions("pruner", "Allow")
    assert "s3:GetObject" in actions("restore", "Allow")
    resources = [s["Resource"] for s in documents["writer"]["Statement"]]
    assert "arn:aws:s3:::bk/prod/*" in resources


@pytest.mark.parametrize("backend", ["gcs", "azure"])
def test_gcs_and_azure_writers_get_no_delete(backend: str, tmp_path: Path) -> None:
    result = run_bika("doctor", "--print-policy", backend, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    writer = result.stdout.split("# pruner")[0]
    assert "delete" not in writer.replace("no delete", "").lower()
    assert "objectUser" in result.stdout or "blobs/delete" in result.stdout
    if backend == "gcs":  # what bika init --object-lock needs, without the override
        granted = [line for line in writer.splitlines() if "--permissions=" in line]
        assert granted and "storage.objects.setRetention" in granted[0]
        assert "overrideUnlockedRetention" not in granted[0]


def test_print_policy_for_an_unknown_backend_is_a_usage_error(tmp_path: Path) -> None:
    result = run_bika("doctor", "--print-policy", "ftp", cwd=tmp_path)
    assert result.returncode == 2
