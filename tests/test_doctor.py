"""`bika doctor` against the real emulators, a local folder and a live database.

Missing bucket protections are warnings with the command that fixes them (exit 0); only an
unreachable or unwritable storage, or a database bika cannot dump, fails (exit 1).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from bika.postgres.cluster import Cluster

from helpers import KeyedRepo, Offsite, run_bika, run_bika_json
from storage.servers import Server, create_s3_bucket, free_port, moto_client, s3_env


def doctor(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None) -> Any:
    code, report = run_bika_json("doctor", *args, env=env, cwd=cwd)
    report["exit"] = code
    report["by_name"] = {c["name"]: c for c in report["checks"] if c["scope"] == "repository"}
    return report


def test_doctor_warns_about_versioning_until_it_is_on(moto: Server, tmp_path: Path) -> None:
    bucket = f"doctor-{uuid.uuid4().hex[:8]}"
    create_s3_bucket(moto.endpoint, bucket)
    env = s3_env(moto.endpoint)
    repo = f"s3://{bucket}/repo"

    before = doctor("--repo", repo, env=env)
    assert before["exit"] == 0 and before["ok"]
    checks = before["by_name"]
    assert checks["reachable"]["status"] == "ok"
    assert checks["writable"]["status"] == "ok"
    assert checks["repository"]["status"] == "warn"  # not initialised yet: bika init says how
    versioning = checks["versioning"]
    assert versioning["status"] == "warn"
    assert versioning["fix"] == (
        f"aws s3api put-bucket-versioning --bucket {bucket} --versioning-configuration"
        f" Status=Enabled --endpoint-url {moto.endpoint}"
    )
    assert checks["lifecycle rules"]["status"] == "warn"
    assert "put-bucket-lifecycle-configuration" in checks["lifecycle rules"]["fix"]
    assert checks["access logging"]["status"] == "warn"
    assert checks["object lock"]["status"] == "info"
    client = moto_client(moto.endpoint)
    assert client.list_objects_v2(Bucket=bucket).get("KeyCount") == 0  # the probe is gone

    client.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    client.put_bucket_lifecycle_configuration(
        Bucket=bucket,
        LifecycleConfiguration={
            "Rules": [
                {
                    "ID": "too-eager",
                    "Status": "Enabled",
                    "Filter": {"Prefix": ""},
                    "Expiration": {"Days": 3},
                }
            ]
        },
    )
    after = doctor("--repo", repo, env=env)
    assert after["exit"] == 0
    assert after["by_name"]["versioning"]["status"] == "ok"
    lifecycle = after["by_name"]["lifecycle rules"]
    assert (
        lifecycle["status"] == "warn"
        and "'too-eager' deletes objects 3 days" in lifecycle["detail"]
    )

    # and as a person reads it: a table, then the numbered fixes, one command per line
    shown = run_bika("doctor", "--repo", repo, env=env)
    assert shown.returncode == 0
    assert "fixes:" in shown.stdout
    fixes = shown.stdout.split("fixes:", 1)[1].splitlines()
    lifecycle_fix = [line for line in fixes if "put-bucket-lifecycle-configuration" in line]
    assert lifecycle_fix and lifecycle_fix[0].endswith(f"--endpoint-url {moto.endpoint}")


def test_doctor_fails_when_the_storage_is_unreachable(tmp_path: Path) -> None:
    env = s3_env(f"http://127.0.0.1:{free_port()}")
    (tmp_path / "bika.toml").write_text("[storage]\nmax_retries = 0\nretry_timeout = 1\n")
    report = doctor("--repo", "s3://anywhere/repo", env=env, cwd=tmp_path)
    assert report["exit"] == 1 and not report["ok"]
    reachable = report["by_name"]["reachable"]
    assert reachable["status"] == "fail" and "Connection refused" in reachable["detail"]


def test_doctor_on_a_local_repository_and_a_database(
    keyed_repo: KeyedRepo, pg18: Cluster, new_database: Callable[[Cluster], str]
) -> None:
    url = new_database(pg18)
    report = doctor("--repo", str(keyed_repo.repo), "--db", url)
    assert report["exit"] == 0, report
    checks = {(c["scope"], c["name"]): c for c in report["checks"]}
    assert checks[("repository", "writable")]["status"] == "ok"
    assert checks[("repository", "repository")]["status"] == "ok"
    assert checks[("repository", "free space")]["status"] in ("ok", "warn")
    assert checks[("database", "database")]["status"] == "ok"
    pg_dump = checks[("database", "pg_dump")]
    assert pg_dump["status"] == "ok" and "pg_dump 18" in pg_dump["detail"]
    assert "s3cret-pw" not in json.dumps(report)

    bad = doctor("--repo", str(keyed_repo.repo), "--db", url.replace("s3cret-pw", "wrong"))
    assert bad["exit"] == 1
    assert "wrong" not in json.dumps(bad)


@pytest.mark.parametrize("backend", ["azure", "gcs"])
def test_doctor_reads_what_azure_and_gcs_show(
    backend: str, offsite: Callable[[str], Offsite]
) -> None:
    where = offsite(backend)
    report = doctor("--repo", where.url, env=where.env)
    assert report["exit"] == 0, report
    checks = report["by_name"]
    assert checks["writable"]["status"] == "ok"
    assert checks["default encryption"]["status"] == "ok"  # always on in both clouds
    # The emulators keep no versions, so both say it is off and how to turn it on.
    assert checks["versioning"]["status"] == "warn"
    if backend == "gcs":
        assert checks["versioning"]["fix"].startswith("gcloud storage buckets update gs://")
        assert checks["retention policy"]["status"] == "info"
    else:
        assert "--enable-versioning true" in checks["versioning"]["fix"]
        # lifecycle management is only visible to Azure Resource Manager
        assert checks["lifecycle rules"]["status"] == "unknown"
        assert checks["access logging"]["status"] in ("warn", "ok")


def test_doctor_reports_a_setting_waiting_for_an_unset_variable(tmp_path: Path) -> None:
    (tmp_path / "bika.toml").write_text(
        f'repo = "{tmp_path / "repo"}"\ndatabase_url = "${{UNSET_DOCTOR_DB}}"\n'
    )
    result = run_bika("doctor", "--json", cwd=tmp_path)
    checks = {c["scope"]: c for c in json.loads(result.stdout)["checks"]}
    assert checks["database"]["status"] == "fail"
    assert "${UNSET_DOCTOR_DB}" in checks["database"]["detail"]


def test_doctor_warns_when_a_local_repository_is_readable_by_others(keyed_repo: KeyedRepo) -> None:
    # reliability review case 29: repositories were 0755 / 0644 under the usual umask
    checks = {c["name"]: c for c in doctor("--repo", str(keyed_repo.repo))["checks"]}
    assert checks["private"]["status"] == "ok"
    assert oct(keyed_repo.repo.stat().st_mode & 0o777) == oct(0o700)
    (keyed_repo.repo / "bika.json").chmod(0o644)  # an older repository, or a copy
    report = doctor("--repo", str(keyed_repo.repo))
    private = {c["name"]: c for c in report["checks"]}["private"]
    assert private["status"] == "warn" and "bika.json" in private["detail"]
    assert private["fix"] == f"chmod -R go-rwx {keyed_repo.repo}"
