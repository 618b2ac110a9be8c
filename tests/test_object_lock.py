"""Object Lock on moto's S3: every backup's objects are locked for the repository's days, so
nobody (the backup writer's credentials included) can delete a locked version, and prune keeps
a locked backup and says until when. GCS (object retention) and Azure (blob immutability
policies) as far as their emulators go: fake-gcs-server keeps an object's retention but
enforces nothing and has no bucket setting for it; azurite implements none of it (501).
"""

from __future__ import annotations

import json
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from bika.crypto import generate_identity
from bika.postgres import sample
from bika.postgres.cluster import Cluster
from bika.repository import Repository
from bika.storage import open_storage, write_bytes

from helpers import Offsite, assert_clean_error, run_bika, run_bika_json
from storage.servers import Server, azure_settings, gcs_settings, moto_client, s3_env


@pytest.fixture
def locked_bucket(moto: Server) -> tuple[str, dict[str, str], Any]:
    """A bucket with Object Lock enabled (and so versioning), its repository URL and env."""
    bucket = f"locked-{uuid.uuid4().hex[:8]}"
    client = moto_client(moto.endpoint)
    client.create_bucket(Bucket=bucket, ObjectLockEnabledForBucket=True)
    return f"s3://{bucket}/prod", s3_env(moto.endpoint), client


def test_init_refuses_object_lock_on_a_bucket_without_it(
    offsite: Callable[[str], Offsite], tmp_path: Path
) -> None:
    s3 = offsite("s3")
    recipient = generate_identity(tmp_path / "key.txt")
    result = run_bika(
        "init", "--repo", s3.url, "--recipient", recipient, "--object-lock", "7", env=s3.env
    )
    assert_clean_error(result, "does not have object lock enabled", "--object-lock-enabled")
    assert run_bika("list", "--repo", s3.url, env=s3.env).returncode != 0  # nothing created


@pytest.mark.parametrize(
    ("backend", "what", "how"),
    [
        ("gcs", "does not have object retention enabled", "--enable-per-object-retention"),
        ("azure", "does not have version-level immutability enabled", "--enable-vlw"),
    ],
)
def test_init_refuses_object_lock_where_the_bucket_cannot_lock(
    backend: str, what: str, how: str, offsite: Callable[[str], Offsite], tmp_path: Path
) -> None:
    # neither emulator offers the bucket setting (fake-gcs-server has no objectRetention on
    # buckets, azurite no version-level immutability), so init says what to change
    where = offsite(backend)
    recipient = generate_identity(tmp_path / "key.txt")
    result = run_bika(
        "init", "--repo", where.url, "--recipient", recipient, "--object-lock", "7", env=where.env
    )
    assert_clean_error(result, what, how, "or leave out --object-lock")
    assert run_bika("list", "--repo", where.url, env=where.env).returncode != 0  # nothing made


def test_init_refuses_object_lock_on_a_local_folder(tmp_path: Path) -> None:
    recipient = generate_identity(tmp_path / "key.txt")
    result = run_bika(
        "init", "--repo", str(tmp_path / "repo"), "--recipient", recipient, "--object-lock", "7"
    )
    assert_clean_error(result, "a local folder cannot lock files")
    assert not (tmp_path / "repo" / "bika.json").exists()


def _locked_repository(where: Offsite, recipient: str, days: int) -> None:
    """A repository whose bika.json asks for object lock, as `bika init --object-lock` writes
    it on a bucket that supports it (which no emulator but moto can say it does)."""
    make = gcs_settings if where.backend == "gcs" else azure_settings
    storage = open_storage(where.url, make(where.server.endpoint))
    repo = Repository.init(storage, [recipient])
    config = {**repo.config, "object_lock": {"days": days, "mode": "compliance"}}
    write_bytes(storage, "bika.json", json.dumps(config).encode(), overwrite=True)


def _gcs_objects(where: Offsite, prefix: str) -> list[dict[str, Any]]:
    """The object resources fake-gcs-server holds under a prefix, read without bika."""
    bucket, _, root = where.url.removeprefix("gs://").partition("/")
    query = urllib.parse.urlencode({"prefix": f"{root}/{prefix}"})
    with urllib.request.urlopen(f"{where.server.endpoint}/storage/v1/b/{bucket}/o?{query}") as r:
        return list(json.load(r).get("items", []))


def _doctor_lock_check(url: str, env: dict[str, str]) -> dict[str, Any]:
    _, report = run_bika_json("doctor", "--repo", url, env=env)
    return next(c for c in report["checks"] if c["name"] == "backup lock")


@pytest.mark.parametrize("backend", ["gcs", "azure"])
def test_doctor_fails_a_locked_repository_on_a_bucket_that_cannot_lock(
    backend: str, offsite: Callable[[str], Offsite], tmp_path: Path
) -> None:
    where = offsite(backend)
    _locked_repository(where, generate_identity(tmp_path / "key.txt"), days=10)
    lock = _doctor_lock_check(where.url, where.env)
    assert lock["status"] == "fail"
    assert "backups will fail until it can" in lock["detail"]
    assert ("--enable-per-object-retention" if backend == "gcs" else "--enable-vlw") in lock["fix"]


def test_gcs_backups_get_object_retention_and_prune_keeps_them(
    offsite: Callable[[str], Offsite],
    pg18: Cluster,
    new_database: Callable[[Cluster], str],
    tmp_path: Path,
) -> None:
    # fake-gcs-server stores an object's retention (objects.patch) and returns it, which is
    # what bika sets and reads; it does not refuse deleting a retained object, as GCS does
    where = offsite("gcs")
    _locked_repository(where, generate_identity(tmp_path / "key.txt"), days=10)
    db = new_database(pg18)
    sample.load(db, sample.SAVINGS_GROUP_SQL)
    ids = []
    for _ in range(2):
        made = run_bika("backup", "--repo", where.url, "--db", db, "--kind", "daily", env=where.env)
        assert made.returncode == 0, made.stderr
        ids.append(made.stdout.strip().splitlines()[-1])
    older = ids[0]
    objects = _gcs_objects(where, f"backups/{older}/")
    assert len(objects) == 3  # database, globals, manifest
    for resource in objects:
        retention = resource["retention"]
        assert retention["mode"] == "Locked"  # compliance: it can only be extended
        until = datetime.fromisoformat(retention["retainUntilTime"].replace("Z", "+00:00"))
        assert until > datetime.now(UTC) + timedelta(days=9)

    pruned = run_bika(
        "prune", "--repo", where.url, "--keep-daily", "1", "--keep-weekly", "0",
        "--keep-monthly", "0", "--json", env=where.env,
    )  # fmt: skip
    assert pruned.returncode == 0, pruned.stderr
    verdicts = {b["id"]: b for b in json.loads(pruned.stdout)["backups"]}
    assert verdicts[older]["keep"] is True
    assert verdicts[older]["reason"].startswith("object lock until ")
    listed = json.loads(run_bika("list", "--repo", where.url, "--json", env=where.env).stdout)
    assert [b["id"] for b in listed["backups"]] == ids

    # GCS refuses to replace a retained object: rekey says so up front and writes nothing
    before = {o["name"] for o in _gcs_objects(where, "backups/")}
    rekeyed = run_bika(
        "rekey", "--repo", where.url, older, "--force", "--identity", str(tmp_path / "key.txt"),
        "--json", env=where.env,
    )  # fmt: skip
    assert rekeyed.returncode != 0
    assert "cannot replace a locked manifest: rekey it after" in rekeyed.stdout + rekeyed.stderr
    assert {o["name"] for o in _gcs_objects(where, "backups/")} == before


def test_azure_backup_fails_cleanly_where_immutability_policies_are_refused(
    offsite: Callable[[str], Offsite],
    pg18: Cluster,
    new_database: Callable[[Cluster], str],
    tmp_path: Path,
) -> None:
    # azurite answers Set Blob Immutability Policy with 501: the backup must fail, say why,
    # and leave no backup behind (its artifacts are locked before the manifest is written)
    where = offsite("azure")
    _locked_repository(where, generate_identity(tmp_path / "key.txt"), days=10)
    db = new_database(pg18)
    made = run_bika("backup", "--repo", where.url, "--db", db, env=where.env)
    assert_clean_error(made, "cannot lock", "does not implement blob immutability policies")
    listed = json.loads(run_bika("list", "--repo", where.url, "--json", env=where.env).stdout)
    assert listed["backups"] == []


def test_locked_backups_cannot_be_deleted_and_prune_says_until_when(
    locked_bucket: tuple[str, dict[str, str], Any],
    pg18: Cluster,
    new_database: Callable[[Cluster], str],
    tmp_path: Path,
) -> None:
    url, env, client = locked_bucket
    bucket = url.split("/")[2]
    recipient = generate_identity(tmp_path / "key.txt")
    init = ["init", "--repo", url, "--recipient", recipient, "--object-lock", "10"]
    assert run_bika(*init, env=env).returncode == 0
    config = json.loads(client.get_object(Bucket=bucket, Key="prod/bika.json")["Body"].read())
    assert config["object_lock"] == {"days": 10, "mode": "compliance"}
    lock = _doctor_lock_check(url, env)
    assert lock["status"] == "ok" and "locked 10 days, compliance" in lock["detail"]

    db = new_database(pg18)
    sample.load(db, sample.SAVINGS_GROUP_SQL)
    ids = []
    for _ in range(2):
        made = run_bika("backup", "--repo", url, "--db", db, "--kind", "daily", env=env)
        assert made.returncode == 0, made.stderr
        ids.append(made.stdout.strip().splitlines()[-1])
    older = ids[0]
    keys = [
        o["Key"]
        for o in client.list_objects_v2(Bucket=bucket, Prefix=f"prod/backups/{older}/")["Contents"]
    ]
    assert len(keys) == 3  # database, globals, manifest
    for key in keys:
        head = client.head_object(Bucket=bucket, Key=key)
        assert head["ObjectLockMode"] == "COMPLIANCE"
        assert head["ObjectLockRetainUntilDate"] > datetime.now(UTC) + timedelta(days=9)

    # the writer's credentials (any credentials, in compliance mode) cannot delete a version
    manifest_key = f"prod/backups/{older}/manifest.json"
    version = client.head_object(Bucket=bucket, Key=manifest_key)["VersionId"]
    with pytest.raises(Exception, match="AccessDenied"):
        client.delete_object(Bucket=bucket, Key=manifest_key, VersionId=version)

    # retention would drop the older backup; the lock keeps it, and prune says until when
    pruned = run_bika(
        "prune", "--repo", url, "--keep-daily", "1", "--keep-weekly", "0", "--keep-monthly", "0",
        "--json", env=env,
    )  # fmt: skip
    assert pruned.returncode == 0, pruned.stderr
    verdicts = {b["id"]: b for b in json.loads(pruned.stdout)["backups"]}
    assert verdicts[older]["keep"] is True
    assert verdicts[older]["reason"].startswith("object lock until ")
    listed = json.loads(run_bika("list", "--repo", url, "--json", env=env).stdout)
    assert [b["id"] for b in listed["backups"]] == ids
