"""Least privilege on a moto S3 that checks credentials: the writer policy `bika doctor
--print-policy s3` prints backs up but cannot delete, the pruner's can; and a rekey whose
manifest write is refused (a storage failing exactly between signature and manifest) leaves a
backup that still verifies and that a second run finishes.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from bika.crypto import generate_identity
from bika.postgres import sample
from bika.postgres.cluster import Cluster
from bika.signing import generate_signing_key

from helpers import assert_clean_error, run_bika
from storage.servers import BUCKET, AwsUser, Server, boto3, s3_env

pytestmark = pytest.mark.server


def _iam_user(server: Server, admin: AwsUser, name: str, policy: str) -> dict[str, str]:
    """A new IAM user with one inline policy; the environment bika reaches the bucket with."""
    iam = boto3().client("iam", **_client_args(server, admin))
    iam.create_user(UserName=name)
    iam.put_user_policy(UserName=name, PolicyName="bika", PolicyDocument=policy)
    key = iam.create_access_key(UserName=name)["AccessKey"]
    return _env(server, AwsUser(key["AccessKeyId"], key["SecretAccessKey"]))


def _client_args(server: Server, user: AwsUser) -> dict[str, str]:
    return {
        "endpoint_url": server.endpoint,
        "aws_access_key_id": user.access_key_id,
        "aws_secret_access_key": user.secret_access_key,
        "region_name": "us-east-1",
    }


def _env(server: Server, user: AwsUser) -> dict[str, str]:
    return {
        **s3_env(server.endpoint),
        "AWS_ACCESS_KEY_ID": user.access_key_id,
        "AWS_SECRET_ACCESS_KEY": user.secret_access_key,
    }


def _s3(env: dict[str, str]) -> Any:
    return boto3().client(
        "s3",
        endpoint_url=env["AWS_ENDPOINT_URL"],
        aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
        region_name="us-east-1",
    )


def test_the_writer_policy_backs_up_but_cannot_delete_and_the_pruner_policy_can(
    moto_with_auth: tuple[Server, AwsUser],
    pg18: Cluster,
    new_database: Callable[[Cluster], str],
    tmp_path: Path,
) -> None:
    server, admin = moto_with_auth
    bucket = f"policies-{uuid.uuid4().hex[:8]}"
    owner = _s3(_env(server, admin))
    owner.create_bucket(Bucket=bucket)
    # versioning: an overwrite then keeps the old version, which the writer cannot delete
    owner.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    url = f"s3://{bucket}/prod"
    printed = run_bika("doctor", "--print-policy", "s3", "--repo", url)
    assert printed.returncode == 0, printed.stderr
    policies = dict(
        (part.split("\n", 1)[0].strip(), part.split("\n", 1)[1])
        for part in printed.stdout.split("# ")[1:]
    )
    tag = uuid.uuid4().hex[:6]
    writer = _iam_user(server, admin, f"writer-{tag}", policies["writer"])
    # moto authorizes a DeleteObjects request against the bucket, where AWS checks
    # s3:DeleteObject on each key: the pruner's grant, as moto needs it
    pruning = json.loads(policies["pruner"])
    objects = next(s for s in pruning["Statement"] if "s3:DeleteObject" in s["Action"])
    objects["Resource"] = [objects["Resource"], f"arn:aws:s3:::{bucket}"]
    pruner = _iam_user(server, admin, f"pruner-{tag}", json.dumps(pruning))

    recipient = generate_identity(tmp_path / "key.txt")
    assert run_bika("init", "--repo", url, "--recipient", recipient, env=writer).returncode == 0
    db = new_database(pg18)
    sample.load(db, sample.SAVINGS_GROUP_SQL)
    ids = []
    for _ in range(2):
        made = run_bika("backup", "--repo", url, "--db", db, "--kind", "daily", env=writer)
        assert made.returncode == 0, made.stderr
        ids.append(made.stdout.strip().splitlines()[-1])
    older = ids[0]

    manifest_key = f"prod/backups/{older}/manifest.json"
    as_writer = _s3(writer)
    original = as_writer.head_object(Bucket=bucket, Key=manifest_key)["VersionId"]
    with pytest.raises(Exception, match="AccessDenied"):
        as_writer.delete_object(Bucket=bucket, Key=manifest_key)
    as_writer.put_object(Bucket=bucket, Key=manifest_key, Body=b"{}")  # a new version only
    with pytest.raises(Exception, match="AccessDenied"):
        as_writer.delete_object(Bucket=bucket, Key=manifest_key, VersionId=original)
    kept = owner.get_object(Bucket=bucket, Key=manifest_key, VersionId=original)
    assert json.loads(kept["Body"].read())["id"] == older
    owner.copy_object(  # the bucket's owner puts the original back
        Bucket=bucket,
        Key=manifest_key,
        CopySource={"Bucket": bucket, "Key": manifest_key, "VersionId": original},
    )

    prune = ["prune", "--repo", url, "--keep-daily", "1", "--keep-weekly", "0",
             "--keep-monthly", "0"]  # fmt: skip
    refused = run_bika(*prune, env=writer)
    assert_clean_error(refused, f"cannot delete backups/{older}/manifest.json", "AccessDenied")
    listed = json.loads(run_bika("list", "--repo", url, "--json", env=writer).stdout)
    assert [b["id"] for b in listed["backups"]] == ids
    pruned = run_bika(*prune, "--break-lock", "--json", env=pruner)
    assert pruned.returncode == 0, pruned.stderr
    verdicts = {b["id"]: b["keep"] for b in json.loads(pruned.stdout)["backups"]}
    assert verdicts == {older: False, ids[1]: True}
    listed = json.loads(run_bika("list", "--repo", url, "--json", env=pruner).stdout)
    assert [b["id"] for b in listed["backups"]] == [ids[1]]


def test_a_rekey_stopped_between_signature_and_manifest_leaves_a_backup_that_verifies(
    moto_with_auth: tuple[Server, AwsUser],
    pg18: Cluster,
    new_database: Callable[[Cluster], str],
    tmp_path: Path,
) -> None:
    server, admin = moto_with_auth
    url = f"s3://{BUCKET}/rekey-{uuid.uuid4().hex[:8]}"
    prefix = url.split("/", 3)[3]
    signing_key = tmp_path / "signing.key"
    public = generate_signing_key(signing_key)
    old_key, new_key = tmp_path / "old.txt", tmp_path / "new.txt"
    env = {**_env(server, admin), "BIKA_REPO": url, "BIKA_TRUSTED_SIGNERS": public}
    host = {**env, "BIKA_SIGNING_KEY": str(signing_key)}
    assert run_bika("init", "--recipient", generate_identity(old_key), env=env).returncode == 0
    db = new_database(pg18)
    sample.load(db, sample.SAVINGS_GROUP_SQL)
    made = run_bika("backup", "--db", db, env=host)
    assert made.returncode == 0, made.stderr
    backup_id = made.stdout.strip().splitlines()[-1]
    assert run_bika("key", "add", generate_identity(new_key), env=env).returncode == 0

    # a storage that takes every write but the manifest's: the rekey fails right after it
    # wrote the new signature
    manifest_key = f"{prefix}/backups/{backup_id}/manifest.json"
    no_manifest = json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {"Effect": "Allow", "Action": "s3:*", "Resource": "*"},
                {
                    "Effect": "Deny",
                    "Action": "s3:PutObject",
                    "Resource": f"arn:aws:s3:::{BUCKET}/{manifest_key}",
                },
            ],
        }
    )
    failing = {**host, **_iam_user(server, admin, f"rekey-{uuid.uuid4().hex[:6]}", no_manifest)}
    stopped = run_bika("rekey", backup_id, "-i", str(old_key), env=failing)
    assert_clean_error(stopped, "not rekeyed")
    sig = json.loads(_s3(env).get_object(Bucket=BUCKET, Key=f"{manifest_key}.sig")["Body"].read())
    assert len(sig["previous"]) == 1  # the new manifest's signature, and the old one's
    verified = run_bika("verify", backup_id, "--read-data", "-i", str(old_key), env=env)
    assert verified.returncode == 0, verified.stderr

    finished = run_bika("rekey", backup_id, "-i", str(old_key), env=host)
    assert finished.returncode == 0, finished.stderr
    sig = json.loads(_s3(env).get_object(Bucket=BUCKET, Key=f"{manifest_key}.sig")["Body"].read())
    assert "previous" not in sig
    verified = run_bika("verify", backup_id, "--read-data", "-i", str(new_key), env=env)
    assert verified.returncode == 0, verified.stderr

    # without the signing key, rekey refuses before it changes anything
    unsigned = run_bika("rekey", backup_id, "--force", "-i", str(new_key), env=env)
    assert_clean_error(unsigned, "signing_key")
    assert unsigned.returncode == 2
