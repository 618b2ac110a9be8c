"""Each backend's reading of its bucket settings, fed the replies its SDK hands back (no server).

The same functions run against moto, azurite and fake-gcs-server in tests/test_doctor.py; here
the replies those emulators never give (object lock, KMS, legal hold, refusals) are covered.
"""

from __future__ import annotations

from typing import Any

from azure.storage.blob import (
    BlobAnalyticsLogging,
    BlobProperties,
    ContainerEncryptionScope,
    ContainerProperties,
    RetentionPolicy,
)
from botocore.exceptions import ClientError
from google.auth.credentials import AnonymousCredentials
from google.cloud import storage as gcs_sdk  # type: ignore[import-untyped]

from bika.storage import azure, gcs, s3
from bika.storage.facts import BucketFacts, LifecycleRule, Setting


def client_error(code: str, status: int = 400) -> ClientError:
    reply: Any = {"Error": {"Code": code}, "ResponseMetadata": {"HTTPStatusCode": status}}
    return ClientError(reply, "GetBucketSomething")


def test_s3_replies_read_as_on_off_with_details() -> None:
    assert s3.versioning({"Status": "Enabled", "MFADelete": "Enabled"}) == Setting(
        "on", "enabled, MFA delete"
    )
    assert s3.versioning({"Status": "Suspended"}) == Setting("off", "suspended")
    assert s3.versioning({}) == Setting("off", "never enabled")
    kms = {
        "ServerSideEncryptionConfiguration": {
            "Rules": [
                {
                    "ApplyServerSideEncryptionByDefault": {
                        "SSEAlgorithm": "aws:kms",
                        "KMSMasterKeyID": "alias/backups",
                    }
                }
            ]
        }
    }
    assert s3.encryption(kms) == Setting("on", "aws:kms with key alias/backups")
    assert s3.encryption({"ServerSideEncryptionConfiguration": {"Rules": []}}).state == "off"
    assert s3.access_logging(
        {"LoggingEnabled": {"TargetBucket": "logs", "TargetPrefix": "b/"}}
    ) == (Setting("on", "to s3://logs/b/"))
    assert s3.access_logging({}) == Setting("off", "off")
    locked = {
        "ObjectLockConfiguration": {
            "ObjectLockEnabled": "Enabled",
            "Rule": {"DefaultRetention": {"Mode": "COMPLIANCE", "Days": 30}},
        }
    }
    assert s3.object_lock(locked) == Setting("on", "COMPLIANCE for 30 days")
    no_default = {"ObjectLockConfiguration": {"ObjectLockEnabled": "Enabled"}}
    assert s3.object_lock(no_default) == Setting("on", "enabled, no default retention")
    assert s3.object_lock({}) == Setting("off", "off")


def test_s3_lifecycle_rules_keep_what_matters_to_a_repository() -> None:
    reply = {
        "Rules": [
            {
                "ID": "expire",
                "Status": "Enabled",
                "Filter": {"And": {"Prefix": "repo/"}},
                "Expiration": {"Days": 3},
                "NoncurrentVersionExpiration": {"NoncurrentDays": 30},
            },
            {"ID": "uploads", "Status": "Disabled", "AbortIncompleteMultipartUpload": {}},
        ]
    }
    assert s3.lifecycle_rules(reply) == (
        LifecycleRule("expire", "repo/", True, 3, deletes_noncurrent=True),
        LifecycleRule("uploads", "", False, aborts_uploads=True),
    )
    assert s3.lifecycle(reply) == Setting("on", "2 rule(s)")
    assert s3.lifecycle({"Rules": []}) == Setting("off", "0 rule(s)")


def test_an_s3_refusal_says_whether_the_setting_is_unset_or_unreadable() -> None:
    refused = s3.refusal(client_error("AccessDenied", 403), "b", "s3:GetBucketLogging")
    assert refused == Setting("unknown", "not allowed to read it (s3:GetBucketLogging)")
    unset = s3.refusal(client_error("NoSuchLifecycleConfiguration", 404), "b", "x")
    assert unset == Setting("off", "not configured")
    assert "does not report it" in s3.refusal(client_error("NotImplemented", 501), "b", "x").detail
    assert (
        s3.refusal(client_error("NoSuchBucket", 404), "b", "x").detail
        == "the bucket b does not exist"
    )
    other = s3.refusal(client_error("SlowDown", 503), "b", "x")
    assert other == Setting("unknown", "HTTP 503: SlowDown")
    assert s3.refusal(OSError("connection reset\nby peer"), "b", "x").detail == "connection reset"


def test_gcs_bucket_metadata_reads_as_settings() -> None:
    client = gcs_sdk.Client(project="p", credentials=AnonymousCredentials())  # type: ignore[no-untyped-call]
    bucket = gcs_sdk.Bucket(client, "b")
    bucket._set_properties(
        {
            "name": "b",
            "versioning": {"enabled": True},
            "encryption": {"defaultKmsKeyName": "projects/p/keys/k"},
            "retentionPolicy": {"retentionPeriod": "604800", "isLocked": True},
            "lifecycle": {
                "rule": [
                    {
                        "action": {"type": "Delete"},
                        "condition": {"age": 30, "matchesPrefix": ["r/"]},
                    },
                    {"action": {"type": "Delete"}, "condition": {"numNewerVersions": 3}},
                ]
            },
            "logging": {"logBucket": "logs", "logObjectPrefix": "b/"},
        }
    )
    facts = gcs.bucket_settings(BucketFacts("gcs", "b", ""), bucket)
    assert facts.versioning == Setting("on", "enabled")
    assert facts.encryption == Setting("on", "customer-managed key projects/p/keys/k")
    assert facts.retention == Setting("on", "bucket retention policy 7 days, locked")
    assert facts.logging == Setting("on", "to gs://logs/b/")
    assert facts.rules == (
        LifecycleRule("rule 1 (Delete)", "r/", deletes_current_after_days=30),
        LifecycleRule("rule 2 (Delete)", "", deletes_noncurrent=True),
    )
    bare = gcs_sdk.Bucket(client, "b")
    facts = gcs.bucket_settings(BucketFacts("gcs", "b", ""), bare)
    assert (facts.versioning.state, facts.lifecycle.state, facts.retention.state) == ("off",) * 3
    assert facts.encryption == Setting("on", "Google-managed keys (always on)")
    assert facts.retention.detail == "no object retention, no retention policy"
    lockable = gcs_sdk.Bucket(client, "b")
    lockable._set_properties({"name": "b", "objectRetention": {"mode": "Enabled"}})
    retention = gcs.bucket_settings(BucketFacts("gcs", "b", ""), lockable).retention
    assert retention == Setting(
        "on", "object retention enabled (bika init --object-lock can lock backups)"
    )


def test_azure_properties_read_as_settings() -> None:
    base = BucketFacts("azure", "c", "", account="acct")
    service = {
        "analytics_logging": BlobAnalyticsLogging(read=True, delete=True),
        "delete_retention_policy": RetentionPolicy(enabled=True, days=7),
    }
    container = ContainerProperties()
    container.encryption_scope = ContainerEncryptionScope(default_encryption_scope="scope1")
    container.has_legal_hold = True
    probe = BlobProperties()
    probe.version_id = "2026-12-03T10:00:00.0000000Z"
    facts = azure.container_settings(base, service, container, probe)
    assert facts.logging == Setting("on", "Storage Analytics logs read, delete")
    assert facts.versioning == Setting("on", "enabled; blob soft delete 7 days")
    assert facts.encryption == Setting("on", "always on; default encryption scope scope1")
    assert facts.retention == Setting("on", "legal hold")

    refused = azure.container_settings(base, 403, 404, None)
    assert refused.logging == Setting("unknown", "HTTP 403 reading the service properties")
    assert refused.versioning == Setting("unknown", "no probe blob to tell from")
    assert (
        refused.encryption
        == refused.retention
        == Setting("unknown", "HTTP 404 reading the container")
    )
    plain = azure.container_settings(base, {}, ContainerProperties(), BlobProperties())
    assert plain.versioning == Setting(
        "off", "off (a new blob got no version id); blob soft delete off"
    )
    assert plain.encryption.detail.endswith("$account-encryption-key")
    assert plain.retention == Setting("off", "off")
    worm = ContainerProperties()
    worm.immutable_storage_with_versioning_enabled = True
    assert azure.container_settings(base, {}, worm, None).retention == Setting(
        "on", "version-level immutability (bika init --object-lock can lock backups)"
    )
