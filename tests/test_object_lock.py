"""Object Lock on moto's S3: every backup's objects are locked for the repository's days, so
nobody (the backup writer's credentials included) can delete a locked version, and prune keeps
a locked backup and says until when. GCS and Azure say plainly that bika does not set it yet.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from bika.crypto import generate_identity
from bika.postgres import sample
from bika.postgres.cluster import Cluster

from helpers import Offsite, assert_clean_error, run_bika
from storage.servers import Server, moto_client, s3_env


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


@pytest.mark.parametrize("backend", ["gcs", "azure"])
def test_object_lock_elsewhere_says_what_is_supported(
    backend: str, offsite: Callable[[str], Offsite], tmp_path: Path
) -> None:
    where = offsite(backend)
    recipient = generate_identity(tmp_path / "key.txt")
    result = run_bika(
        "init", "--repo", where.url, "--recipient", recipient, "--object-lock", "7", env=where.env
    )
    assert_clean_error(result, "not set by bika yet", "bika doctor reports")


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
