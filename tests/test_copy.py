"""`bika copy`: backups reach a second repository whole, once, and never from corrupted bytes.

Local → S3 (moto) and back, through the command line, with [copy.storage] settings in bika.toml.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from pathlib import Path

import psycopg
import pytest

from bika.crypto import generate_identity
from bika.postgres.cluster import Cluster

from helpers import KeyedRepo, assert_clean_error, run_bika
from storage.servers import BUCKET, Server, moto_client, s3_env


def copy_config(moto: Server, storage_class: str = "STANDARD_IA") -> str:
    """bika.toml for a local repository whose copies go to moto, monthly and manual alike cold."""
    return (
        "[copy.storage]\n"
        f'endpoint = "{moto.endpoint}"\n'
        'access_key_id = "test"\nsecret_access_key = "test"\nregion = "us-east-1"\n'
        'part_size = "256KiB"\n'
        "[copy.storage.classes]\n"
        f'manual = "{storage_class}"\n'
    )


@pytest.fixture
def two_backups(
    pg18: Cluster, new_database: Callable[[Cluster], str], keyed_repo: KeyedRepo
) -> tuple[KeyedRepo, list[str]]:
    url = new_database(pg18)
    with psycopg.connect(url, autocommit=True) as db:
        db.execute(
            "CREATE TABLE t AS SELECT g AS id, md5(g::text) AS v FROM generate_series(1, 20000) g"
        )
    first = keyed_repo.backup(url)
    with psycopg.connect(url, autocommit=True) as db:
        db.execute("INSERT INTO t SELECT g, 'more' FROM generate_series(1, 500) g")
    return keyed_repo, [first, keyed_repo.backup(url)]


def copy(folder: Path, *args: str, env: dict[str, str] | None = None) -> dict[str, object]:
    result = run_bika("copy", *args, "--json", cwd=folder, env=env)
    assert result.returncode in (0, 1), result.stderr
    report: dict[str, object] = json.loads(result.stdout)
    report["exit"] = result.returncode
    report["stderr"] = result.stderr
    return report


def statuses(report: dict[str, object]) -> list[str]:
    return [b["status"] for b in report["backups"]]  # type: ignore[attr-defined]


def test_copy_local_to_s3_and_back_is_idempotent(
    two_backups: tuple[KeyedRepo, list[str]], moto: Server, tmp_path: Path
) -> None:
    repo, ids = two_backups
    (tmp_path / "bika.toml").write_text(copy_config(moto))
    remote = f"s3://{BUCKET}/copy-{uuid.uuid4().hex[:8]}"

    first = copy(tmp_path, "--repo", str(repo.repo), "--to", remote, "--init")
    assert statuses(first) == ["copied", "copied"], first["stderr"]
    again = copy(tmp_path, "--repo", str(repo.repo), "--to", remote)
    assert statuses(again) == ["present", "present"]

    client = moto_client(moto.endpoint)
    prefix = remote.split("/", 3)[3]
    for backup_id in ids:
        # byte for byte the same manifest; artifacts in the destination's class for the kind
        stored = client.get_object(Bucket=BUCKET, Key=f"{prefix}/backups/{backup_id}/manifest.json")
        assert (
            stored["Body"].read()
            == (repo.repo / "backups" / backup_id / "manifest.json").read_bytes()
        )
        key = repo.manifest(backup_id)["artifacts"]["database"]["key"]
        assert (
            client.head_object(Bucket=BUCKET, Key=f"{prefix}/{key}")["StorageClass"]
            == "STANDARD_IA"
        )

    # Reading the copy needs the cloud's own settings only, as for any S3 repository.
    env = s3_env(moto.endpoint)
    verified = run_bika("verify", "--repo", remote, "--read-data", "-i", str(repo.key), env=env)
    assert verified.returncode == 0, verified.stderr
    assert "2 of 2 backups verified" in verified.stdout

    back = tmp_path / "back"
    home = tmp_path / "home"
    home.mkdir()
    restored = copy(home, "--repo", remote, "--to", str(back), "--init", env=env)
    assert statuses(restored) == ["copied", "copied"], restored["stderr"]
    assert statuses(copy(home, "--repo", remote, "--to", str(back), env=env)) == ["present"] * 2
    for backup_id in ids:
        original = repo.repo / "backups" / backup_id
        for path in original.iterdir():
            assert (back / "backups" / backup_id / path.name).read_bytes() == path.read_bytes()


def test_copy_refuses_a_corrupted_artifact_and_copies_the_rest(
    two_backups: tuple[KeyedRepo, list[str]], moto: Server, tmp_path: Path
) -> None:
    repo, (bad, good) = two_backups
    artifact = repo.repo / repo.manifest(bad)["artifacts"]["database"]["key"]
    data = bytearray(artifact.read_bytes())
    data[len(data) // 2] ^= 0x01  # same size: only the hash can tell
    artifact.write_bytes(bytes(data))
    (tmp_path / "bika.toml").write_text(copy_config(moto))
    remote = f"s3://{BUCKET}/copy-{uuid.uuid4().hex[:8]}"

    report = copy(tmp_path, "--repo", str(repo.repo), "--to", remote, "--init")
    assert report["exit"] == 1
    assert statuses(report) == ["failed", "copied"]
    assert f"FAILED {bad}: {bad}/database" in str(report["stderr"])
    assert "(corrupted); not copied" in str(report["stderr"])
    prefix = remote.split("/", 3)[3]
    keys = [
        o["Key"]
        for o in moto_client(moto.endpoint)
        .list_objects_v2(Bucket=BUCKET, Prefix=f"{prefix}/backups/{bad}/")
        .get("Contents", [])
    ]
    assert keys == [], "a corrupted artifact (or its manifest) reached the destination"
    moto_client(moto.endpoint).head_object(
        Bucket=BUCKET, Key=f"{prefix}/backups/{good}/manifest.json"
    )
    assert moto_client(moto.endpoint).list_multipart_uploads(Bucket=BUCKET).get("Uploads") in (
        None,
        [],
    )


def test_interrupted_copy_is_redone(
    two_backups: tuple[KeyedRepo, list[str]], tmp_path: Path
) -> None:
    repo, ids = two_backups
    dest = tmp_path / "dest"
    assert statuses(copy(tmp_path, "--repo", str(repo.repo), "--to", str(dest), "--init")) == [
        "copied",
        "copied",
    ]
    # As if the copy of the second backup died after its artifacts, before its manifest.
    (dest / "backups" / ids[1] / "manifest.json").unlink()
    artifact = dest / repo.manifest(ids[1])["artifacts"]["database"]["key"]
    artifact.write_bytes(artifact.read_bytes()[:100])  # and a damaged leftover

    assert statuses(copy(tmp_path, "--repo", str(repo.repo), "--to", str(dest))) == [
        "present",
        "copied",
    ]
    verified = run_bika("verify", "--repo", str(dest), "--read-data", "-i", str(repo.key))
    assert verified.returncode == 0, verified.stderr


def test_copy_refuses_a_destination_with_other_recipients(
    two_backups: tuple[KeyedRepo, list[str]], tmp_path: Path
) -> None:
    repo, _ = two_backups
    other = generate_identity(tmp_path / "other.txt")
    dest = tmp_path / "dest"
    assert run_bika("init", "--repo", str(dest), "--recipient", other).returncode == 0
    result = run_bika("copy", "--repo", str(repo.repo), "--to", str(dest))
    assert_clean_error(result, "other recipients", "same --recipient")
    assert not (dest / "backups").exists()

    missing = run_bika("copy", "--repo", str(repo.repo), "--to", str(tmp_path / "nowhere"))
    assert_clean_error(missing, "no bika repository", "--init")
    same = run_bika("copy", "--repo", str(repo.repo), "--to", str(repo.repo))
    assert_clean_error(same, "itself")
