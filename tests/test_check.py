"""`bika check` on real repositories with real backups: exit codes, JSON, metrics."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import psycopg
from prometheus_client.parser import text_string_to_metric_families

from bika.crypto import generate_identity
from bika.postgres.cluster import Cluster

from helpers import KeyedRepo, run_bika
from storage.servers import BUCKET, Server, s3_env


def _small_database(pg18: Cluster, new_database: Callable[[Cluster], str]) -> str:
    url = new_database(pg18)
    with psycopg.connect(url) as db:
        db.execute("CREATE TABLE members (id int PRIMARY KEY, name text)")
        db.execute("INSERT INTO members SELECT g, 'm' || g FROM generate_series(1, 500) g")
    return url


def _check(keyed_repo: KeyedRepo, *args: str) -> tuple[int, dict[str, object]]:
    result = run_bika("check", "--repo", str(keyed_repo.repo), "--json", *args)
    assert "Traceback" not in result.stderr, result.stderr
    return result.returncode, json.loads(result.stdout)


def test_check_empty_repository_is_critical(keyed_repo: KeyedRepo) -> None:
    code, report = _check(keyed_repo)
    assert code == 2
    assert report["status"] == "CRITICAL" and report["ok"] is False
    findings = report["findings"]
    assert isinstance(findings, list)
    assert any(f["what"] == "freshness" and f["level"] == "error" for f in findings)


def test_check_warns_until_a_drill_proves_the_backup(
    pg18: Cluster, new_database: Callable[[Cluster], str], keyed_repo: KeyedRepo, tmp_path: Path
) -> None:
    url = _small_database(pg18, new_database)
    backup_id = keyed_repo.backup(url)
    code, report = _check(keyed_repo)
    assert code == 1, report
    assert report["status"] == "WARNING"
    warned = [f for f in report["findings"] if f["level"] == "warn"]  # type: ignore[union-attr]
    assert [f["what"] for f in warned] == ["drill"]
    drilled = run_bika(
        "drill", backup_id, "--repo", str(keyed_repo.repo), "-i", str(keyed_repo.key)
    )
    assert drilled.returncode == 0, drilled.stderr
    code, report = _check(keyed_repo, "--textfile", str(tmp_path))
    assert code == 0, report
    assert report["status"] == "OK" and report["ok"] is True
    metrics = {
        sample.name: sample
        for family in text_string_to_metric_families((tmp_path / "bika.prom").read_text())
        for sample in family.samples
    }
    assert metrics["bika_last_drill_passed"].value == 1
    assert metrics["bika_last_backup_rows"].value == 500
    assert metrics["bika_backups"].value == 1
    assert metrics["bika_last_success_timestamp_seconds"].value > 1.7e9
    human = run_bika("check", "--repo", str(keyed_repo.repo))
    assert human.returncode == 0 and "status: OK" in human.stdout


def test_check_of_an_unreachable_repository_is_unknown(tmp_path: Path) -> None:
    result = run_bika("check", "--repo", str(tmp_path / "nope"), "--json")
    assert result.returncode == 3, result.stderr
    assert json.loads(result.stdout)["status"] == "UNKNOWN"
    assert result.stderr.strip().startswith("bika: error: cannot read the repository")


def test_check_of_an_unreachable_repository_reports_this_hosts_failed_backup_run(
    moto: Server, tmp_path: Path
) -> None:
    url = f"s3://{BUCKET}/unreachable-{os.urandom(4).hex()}"
    env = {**s3_env(moto.endpoint), "XDG_STATE_HOME": str(tmp_path / "state")}
    made = run_bika(
        "init", "--repo", url, "--recipient", generate_identity(tmp_path / "k"), env=env
    )
    assert made.returncode == 0, made.stderr
    (tmp_path / "bika.toml").write_text("[storage]\nmax_retries = 0\nretry_timeout = 1\n")
    gone = {**env, "AWS_ENDPOINT_URL": "http://127.0.0.1:9"}
    failed = run_bika(
        "backup", "--repo", url, "--db", "postgresql://127.0.0.1:9/x", cwd=tmp_path, env=gone
    )
    assert failed.returncode != 0

    result = run_bika("check", "--repo", url, "--json", cwd=tmp_path, env=gone)
    report = json.loads(result.stdout)
    assert result.returncode == 2 and report["status"] == "CRITICAL", result.stderr
    levels = {f["what"]: f["level"] for f in report["findings"]}
    assert levels == {"repository": "unknown", "last-run": "error"}
    assert "cannot read the repository" in result.stderr
