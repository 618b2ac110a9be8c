"""Off-site repositories through the command line, as a user runs them: S3, Azure Blob and GCS.

Each backend's emulator is reached with the variables a user would export (AWS_*, an Azure
connection string, STORAGE_EMULATOR_HOST); small parts make even the sample database's dump
take the multipart / block / resumable path.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import awkward
import psycopg
import pytest

from bika.crypto import generate_identity
from bika.postgres import sample
from bika.postgres.cluster import Cluster

from helpers import Offsite, assert_clean_error, offline_env, row_counts, run_bika
from storage.servers import (
    BUCKET,
    AwsUser,
    Server,
    azure_access_tier,
    create_s3_bucket,
    moto_client,
    s3_env,
    start_moto,
)

SMALL_PARTS = """
[storage]
part_size = "256KiB"
upload_concurrency = 2
max_retries = 2
retry_timeout = 10
"""


class User:
    """Runs bika in a folder holding bika.toml, with a cloud's variables set."""

    def __init__(self, folder: Path, env: dict[str, str], config: str = SMALL_PARTS) -> None:
        self.folder = folder
        self.env = env
        self.key = folder / "key.txt"
        self.recipient = generate_identity(self.key)
        (folder / "bika.toml").write_text(config)

    def ok(self, *args: str) -> str:
        result = run_bika(*args, env=self.env, cwd=self.folder)
        assert result.returncode == 0, result.stderr
        return result.stdout


@pytest.mark.parametrize("backend", ["s3", "azure", "gcs"])
def test_backup_list_verify_restore_on_each_cloud(
    backend: str,
    offsite: Callable[[str], Offsite],
    pg18: Cluster,
    new_database: Callable[[Cluster], str],
    tmp_path: Path,
) -> None:
    where = offsite(backend)
    user = User(tmp_path, where.env)
    url = new_database(pg18)
    sample.load(url, sample.SAVINGS_GROUP_SQL)
    expected = row_counts(url, sample.SAVINGS_GROUP_TABLES)

    user.ok("init", "--repo", where.url, "--recipient", user.recipient)
    backup_id = user.ok("backup", "--repo", where.url, "--db", url).strip().splitlines()[-1]

    listed = json.loads(user.ok("list", "--repo", where.url, "--json"))
    assert listed["repository"] == where.url
    assert [b["id"] for b in listed["backups"]] == [backup_id]
    assert listed["backups"][0]["rows"] == sum(expected.values())
    shown = json.loads(user.ok("show", backup_id, "--repo", where.url, "--json"))
    assert shown["artifacts"]["database"]["stored_size"] > 256 * 1024  # multipart, not one put

    verified = user.ok("verify", "--repo", where.url, "--read-data", "--identity", str(user.key))
    assert "1 of 1 backups verified with --read-data" in verified

    target = new_database(pg18)
    restored = user.ok(
        "restore", backup_id, "--repo", where.url, "--identity", str(user.key), "--to", target
    )
    assert "all row counts match" in restored
    assert row_counts(target, sample.SAVINGS_GROUP_TABLES) == expected


# --- per-kind storage classes ---


def stored_class(where: Offsite, key: str) -> str:
    """The storage class (access tier) the server recorded for an object, asked directly."""
    path = f"{where.url.split('/', 3)[3]}/{key}"
    if where.backend == "s3":
        head = moto_client(where.server.endpoint).head_object(Bucket=BUCKET, Key=path)
        return str(head.get("StorageClass", "STANDARD"))
    if where.backend == "azure":
        return azure_access_tier(where.server.endpoint, BUCKET, path)
    quoted = urllib.parse.quote(path, safe="")
    with urllib.request.urlopen(f"{where.server.endpoint}/storage/v1/b/{BUCKET}/o/{quoted}") as r:
        return str(json.load(r)["storageClass"])


@pytest.mark.parametrize(
    ("backend", "cold", "recorded", "sealed"),
    [
        ("s3", "GLACIER", "GLACIER", "aws s3api restore-object"),
        ("azure", "Archive", "Archive", "az storage blob set-tier"),
        ("gcs", "COLDLINE", "COLDLINE", None),  # GCS's cold classes read at once
    ],
)
def test_monthly_backups_go_to_the_kinds_storage_class(
    backend: str,
    cold: str,
    recorded: str,
    sealed: str | None,
    offsite: Callable[[str], Offsite],
    pg18: Cluster,
    new_database: Callable[[Cluster], str],
    tmp_path: Path,
) -> None:
    where = offsite(backend)
    user = User(tmp_path, where.env, f'[storage.classes]\nmonthly = "{cold}"\n')
    url = new_database(pg18)
    sample.load(url, awkward.SQL)
    user.ok("init", "--repo", where.url, "--recipient", user.recipient)
    backup_id = user.ok("backup", "--repo", where.url, "--db", url, "--kind", "monthly").split()[-1]
    manual_id = user.ok("backup", "--repo", where.url, "--db", url).split()[-1]

    manifest = json.loads(user.ok("show", backup_id, "--repo", where.url, "--json"))
    for artifact in manifest["artifacts"].values():
        assert stored_class(where, artifact["key"]) == recorded
    # The manifest stays in the default class: listing and monitoring never wait for a restore.
    assert stored_class(where, f"backups/{backup_id}/manifest.json") != recorded
    manual = json.loads(user.ok("show", manual_id, "--repo", where.url, "--json"))
    assert stored_class(where, manual["artifacts"]["database"]["key"]) != recorded
    assert "2 of 2 backups verified" in user.ok("verify", "--repo", where.url)

    read = run_bika(
        "verify",
        backup_id,
        "--repo",
        where.url,
        "--read-data",
        "--identity",
        str(user.key),
        env=where.env,
        cwd=tmp_path,
    )
    if sealed is None:
        assert read.returncode == 0, read.stderr
        return
    assert read.returncode == 1
    failures = [line for line in read.stderr.splitlines() if "FAILED " in line]
    assert failures and all(sealed in line for line in failures), read.stderr
    restore = run_bika(
        "restore",
        backup_id,
        "--repo",
        where.url,
        "--identity",
        str(user.key),
        "--to",
        new_database(pg18),
        env=where.env,
        cwd=tmp_path,
    )
    assert_clean_error(restore, sealed, backup_id)


# --- what goes wrong ---


def test_wrong_secret_key_is_one_line_without_the_secret(
    moto_with_auth: tuple[Server, AwsUser], tmp_path: Path
) -> None:
    server, user = moto_with_auth
    secret = "wrong-secret-never-print-me"
    env = {
        "AWS_ENDPOINT_URL": server.endpoint,
        "AWS_ACCESS_KEY_ID": user.access_key_id,
        "AWS_SECRET_ACCESS_KEY": secret,
        "AWS_REGION": "us-east-1",
    }
    recipient = generate_identity(tmp_path / "key.txt")
    for args in (
        ("init", "--repo", f"s3://{BUCKET}/wrong", "--recipient", recipient),
        ("list", "--repo", f"s3://{BUCKET}/wrong"),
    ):
        result = run_bika(*args, env=env, cwd=tmp_path)
        assert_clean_error(result, f"s3://{BUCKET}/wrong", "AWS_SECRET_ACCESS_KEY")
        assert secret not in result.stderr + result.stdout


@pytest.mark.parametrize(
    ("backend", "create"),
    [
        ("s3", "aws s3 mb s3://bika-missing-bucket"),
        ("azure", "az storage container create --name bika-missing-bucket"),
        ("gcs", "gcloud storage buckets create gs://bika-missing-bucket"),
    ],
)
def test_missing_bucket_says_how_to_create_it(
    backend: str, create: str, offsite: Callable[[str], Offsite], tmp_path: Path
) -> None:
    where = offsite(backend)
    scheme = where.url.split("://")[0]
    repo = f"{scheme}://bika-missing-bucket/repo"
    recipient = generate_identity(tmp_path / "key.txt")
    result = run_bika("init", "--repo", repo, "--recipient", recipient, env=where.env)
    assert_clean_error(result, "cannot write bika.json", repo, create)


# --- the storage goes away while a backup streams ---

FAIL_FAST = """
[storage]
part_size = "1MiB"
upload_concurrency = 2
max_retries = 1
retry_timeout = 2
connect_timeout = 1
timeout = 5
"""


@pytest.fixture(scope="module")
def big_database(pg18: Cluster) -> Iterator[str]:
    """About 50 MB of dump (25 MB stored): still streaming when the storage goes away."""
    name = f"offsite_big_{uuid.uuid4().hex[:8]}"
    url = pg18.create_database(name)
    with psycopg.connect(url, autocommit=True) as db:
        db.execute(
            "CREATE TABLE big AS SELECT g AS id, md5(g::text) || md5((g * 7)::text) AS payload"
            " FROM generate_series(1, 700000) g"
        )
    yield url
    pg18.drop_database(name)


def start_backup(user: User, repo: str, url: str) -> subprocess.Popen[str]:
    env = {
        **offline_env({k: v for k, v in os.environ.items() if not k.startswith("BIKA_")}),
        **user.env,
    }
    return subprocess.Popen(
        [sys.executable, "-m", "bika", "backup", "--repo", repo, "--db", url],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=user.folder,
    )


def wait_for_upload(endpoint: str, bucket: str, proc: subprocess.Popen[str]) -> None:
    """Until the backup's multipart upload has begun on the server."""
    client = moto_client(endpoint)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()
        if client.list_multipart_uploads(Bucket=bucket).get("Uploads"):
            return
        time.sleep(0.05)
    pytest.fail("the backup never started its multipart upload")


def dumps_running(pg18: Cluster, url: str) -> int:
    database = url.rsplit("/", 1)[1].split("?")[0]
    rows = pg18.query(
        f"SELECT count(*) FROM pg_stat_activity WHERE datname = '{database}'"
        " AND pid <> pg_backend_pid()"
    )
    return int(rows[0][0])


def test_storage_server_killed_mid_backup_fails_cleanly_and_the_copy_survives(
    moto: Server,
    pg18: Cluster,
    new_database: Callable[[Cluster], str],
    big_database: str,
    tmp_path: Path,
) -> None:
    primary = start_moto(tmp_path)
    try:
        create_s3_bucket(primary.endpoint, "primary")
        copy_to = f"s3://{BUCKET}/copy-{uuid.uuid4().hex[:8]}"
        user = User(
            tmp_path,
            s3_env(primary.endpoint),
            FAIL_FAST
            + f'\n[copy]\nto = "{copy_to}"\n[copy.storage]\nendpoint = "{moto.endpoint}"\n'
            'access_key_id = "test"\nsecret_access_key = "test"\nregion = "us-east-1"\n',
        )
        small = new_database(pg18)
        psycopg.connect(small, autocommit=True).execute(
            "CREATE TABLE t AS SELECT generate_series(1, 1000) AS id"
        )
        user.ok("init", "--repo", "s3://primary/repo", "--recipient", user.recipient)
        first = user.ok("backup", "--repo", "s3://primary/repo", "--db", small).split()[-1]
        user.ok("copy", "--repo", "s3://primary/repo", "--init")  # the 3-2-1 copy, on moto

        proc = start_backup(user, "s3://primary/repo", big_database)
        wait_for_upload(primary.endpoint, "primary", proc)
        primary.kill()
        _, stderr = proc.communicate(timeout=90)
    finally:
        primary.stop()
    result = subprocess.CompletedProcess([], proc.returncode, "", stderr)
    assert_clean_error(
        result,
        "cannot write backups/",
        "database.pgdump.zst.age in s3://primary/repo",
        primary.endpoint,
    )
    deadline = time.monotonic() + 10
    while dumps_running(pg18, big_database) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert dumps_running(pg18, big_database) == 0, "pg_dump outlived the failed backup"

    # The second copy, on the other server, still holds the earlier backup, whole; it is read
    # with its own settings and nothing of the dead server.
    (tmp_path / "copy.toml").write_text(
        f'repo = "{copy_to}"\n[storage]\nendpoint = "{moto.endpoint}"\n'
        'access_key_id = "test"\nsecret_access_key = "test"\n'
    )
    user.env = {}
    listed = json.loads(user.ok("--config", "copy.toml", "list", "--json"))
    assert [b["id"] for b in listed["backups"]] == [first]
    verified = user.ok("--config", "copy.toml", "verify", "--read-data", "-i", str(user.key))
    assert "1 of 1 backups verified" in verified


def test_bucket_deleted_mid_backup_fails_cleanly(
    moto: Server, big_database: str, tmp_path: Path
) -> None:
    bucket = f"doomed-{uuid.uuid4().hex[:8]}"
    create_s3_bucket(moto.endpoint, bucket)
    user = User(tmp_path, s3_env(moto.endpoint), FAIL_FAST)
    repo = f"s3://{bucket}/repo"
    user.ok("init", "--repo", repo, "--recipient", user.recipient)
    proc = start_backup(user, repo, big_database)
    wait_for_upload(moto.endpoint, bucket, proc)
    client = moto_client(moto.endpoint)
    client.delete_object(Bucket=bucket, Key="repo/bika.json")
    client.delete_bucket(Bucket=bucket)
    _, stderr = proc.communicate(timeout=90)
    assert_clean_error(
        subprocess.CompletedProcess([], proc.returncode, "", stderr),
        f"in {repo}",
        "NoSuchBucket",
        f"aws s3 mb s3://{bucket}",
    )
