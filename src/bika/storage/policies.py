"""Least-privilege bucket policies for bika's three jobs (`bika doctor --print-policy`): the
backup writer (create and list, never delete), the pruner (also delete) and restore (read, and
write its run-log event and drill records). Pure text: no cloud call.
"""

from __future__ import annotations

import json

BACKENDS = ("s3", "gcs", "azure")

# Every job lists and reads: bika.json, manifests and events are read by all of them.
_S3_READ = ["s3:GetObject"]
_S3_LIST = ["s3:ListBucket", "s3:GetBucketLocation"]
_S3_WRITE = ["s3:PutObject", "s3:AbortMultipartUpload", "s3:ListMultipartUploadParts"]
_S3_DELETE = ["s3:DeleteObject"]
# `init --object-lock`: the writer locks what it writes (and prune reads the lock); a lock can
# only be extended (compliance), or shortened with s3:BypassGovernanceRetention, denied below
_S3_LOCK = ["s3:PutObjectRetention", "s3:GetObjectRetention"]
_S3_NEVER = [
    "s3:DeleteObject",
    "s3:DeleteObjectVersion",
    "s3:BypassGovernanceRetention",
    "s3:PutBucketObjectLockConfiguration",
    "s3:PutLifecycleConfiguration",
    "s3:PutBucketPolicy",
]


def _s3(
    bucket: str,
    prefix: str,
    sid: str,
    objects: list[str],
    deny: list[str],
    write_under: tuple[str, ...] = (),
) -> str:
    keys = f"arn:aws:s3:::{bucket}/{prefix}*"
    statements: list[dict[str, object]] = [
        {
            "Sid": f"{sid}List",
            "Effect": "Allow",
            "Action": _S3_LIST,
            "Resource": f"arn:aws:s3:::{bucket}",
            **({"Condition": {"StringLike": {"s3:prefix": [f"{prefix}*"]}}} if prefix else {}),
        },
        {"Sid": f"{sid}Objects", "Effect": "Allow", "Action": objects, "Resource": keys},
    ]
    if write_under:
        statements.append(
            {
                "Sid": f"{sid}RunLog",
                "Effect": "Allow",
                "Action": _S3_WRITE,
                "Resource": [f"arn:aws:s3:::{bucket}/{prefix}{top}*" for top in write_under],
            }
        )
    if deny:
        statements.append(
            {"Sid": f"{sid}NeverDelete", "Effect": "Deny", "Action": deny, "Resource": keys}
        )
    return json.dumps({"Version": "2012-10-17", "Statement": statements}, indent=2)


def s3_policies(bucket: str, prefix: str = "") -> dict[str, str]:
    """IAM policies (attach each to its own user or role) for s3://bucket/prefix."""
    prefix = f"{prefix.strip('/')}/" if prefix.strip("/") else ""
    return {
        "writer": _s3(bucket, prefix, "BikaWriter", _S3_READ + _S3_WRITE + _S3_LOCK, _S3_NEVER),
        "pruner": _s3(
            bucket, prefix, "BikaPruner", _S3_READ + _S3_WRITE + _S3_LOCK + _S3_DELETE, []
        ),
        # reads everything; writes only its run-log event and drill records
        "restore": _s3(
            bucket, prefix, "BikaRestore", _S3_READ, _S3_NEVER, write_under=("events/", "drills/")
        ),
    }


def gcs_policies(bucket: str, prefix: str = "") -> dict[str, str]:
    """gcloud commands granting each job's service account what it needs on gs://bucket."""
    where = f"gs://{bucket}"
    scoped = (
        f" (IAM conditions can narrow it to objects under {prefix.strip('/')}/:"
        f" resource.name.startsWith('projects/_/buckets/{bucket}/objects/{prefix.strip('/')}/'))"
        if prefix.strip("/")
        else ""
    )

    def grant(account: str, role: str) -> str:
        return (
            f"gcloud storage buckets add-iam-policy-binding {where}"
            f" --member=serviceAccount:{account} --role={role}"
        )

    writer = "bika-writer@PROJECT.iam.gserviceaccount.com"
    pruner = "bika-pruner@PROJECT.iam.gserviceaccount.com"
    locker = "projects/PROJECT/roles/bikaObjectLock"
    lock = [
        "# with bika init --object-lock: set each backup object's retention (a Locked one can"
        " only be extended; shortening an Unlocked one needs"
        " storage.objects.overrideUnlockedRetention, which this role leaves out)",
        "gcloud iam roles create bikaObjectLock --project=PROJECT"
        " --permissions=storage.objects.setRetention,storage.objects.update",
    ]
    return {
        "writer": "\n".join(
            [
                "# create (bika never overwrites: ifGenerationMatch=0) and read; no delete"
                + scoped,
                grant(writer, "roles/storage.objectCreator"),
                grant(writer, "roles/storage.objectViewer"),
                *lock,
                grant(writer, locker),
            ]
        ),
        "pruner": "\n".join(
            [
                "# also delete (prune), and rewrite bika.json / manifests (key add/remove, rekey)",
                grant(pruner, "roles/storage.objectUser"),
                "# with bika init --object-lock (rekey locks the objects it writes)",
                grant(pruner, locker),
            ]
        ),
        "restore": "\n".join(
            [
                "# read, and create its run-log event and drill records",
                grant("bika-restore@PROJECT.iam.gserviceaccount.com", "roles/storage.objectViewer"),
                grant(
                    "bika-restore@PROJECT.iam.gserviceaccount.com", "roles/storage.objectCreator"
                ),
            ]
        ),
    }


_BLOBS = "Microsoft.Storage/storageAccounts/blobServices/containers/blobs"


def _azure_role(name: str, description: str, data_actions: list[str]) -> str:
    return json.dumps(
        {
            "Name": name,
            "IsCustom": True,
            "Description": description,
            "Actions": ["Microsoft.Storage/storageAccounts/blobServices/containers/read"],
            "DataActions": data_actions,
            "NotDataActions": [],
            "AssignableScopes": [
                "/subscriptions/SUBSCRIPTION/resourceGroups/GROUP/providers/"
                "Microsoft.Storage/storageAccounts/ACCOUNT/blobServices/default/containers/CONTAINER"
            ],
        },
        indent=2,
    )


def azure_policies(container: str, prefix: str = "") -> dict[str, str]:
    """Custom role definitions (az role definition create --role-definition FILE): Azure's
    built-in Storage Blob Data Contributor includes delete, so the writer needs its own."""
    read, write, delete = f"{_BLOBS}/read", f"{_BLOBS}/write", f"{_BLOBS}/delete"
    add = f"{_BLOBS}/add/action"
    return {
        "writer": _azure_role(
            "bika backup writer",
            f"create and read blobs of {container}; no delete",
            [read, write, add],
        ),
        "pruner": _azure_role(
            "bika pruner",
            f"create, read and delete blobs of {container}",
            [read, write, add, delete],
        ),
        "restore": _azure_role(
            "bika restore", f"read blobs of {container}, write run-log events", [read, write, add]
        ),
    }


def policies(backend: str, bucket: str, prefix: str = "") -> dict[str, str]:
    """writer / pruner / restore → the policy text for a backend of BACKENDS."""
    if backend == "s3":
        return s3_policies(bucket, prefix)
    if backend == "gcs":
        return gcs_policies(bucket, prefix)
    return azure_policies(bucket, prefix)
