"""What `bika doctor` concludes from the facts it gathered: one check per line, with the fix.

Pure: facts in (plain dataclasses, filled by operations/doctor.py), checks out; no I/O here.

A missing protective setting (versioning, encryption, lifecycle, logging, retention) is a
warning with the exact command that fixes it; only a storage that cannot be reached or written
and a database that cannot be dumped are failures.
"""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass, field
from typing import Literal

from bika.storage.facts import BucketFacts, Setting
from bika.units import size

Status = Literal["ok", "warn", "fail", "info", "unknown"]
Backend = Literal["local", "s3", "gcs", "azure"]

GiB = 1024**3
# Whatever a user's SDK or console calls them; compared upper-cased (Azure tiers by name).
KNOWN_CLASSES: dict[str, set[str]] = {
    "s3": {
        "STANDARD",
        "STANDARD_IA",
        "ONEZONE_IA",
        "INTELLIGENT_TIERING",
        "GLACIER_IR",
        "GLACIER",
        "DEEP_ARCHIVE",
        "REDUCED_REDUNDANCY",
        "EXPRESS_ONEZONE",
        "OUTPOSTS",
        "SNOW",
    },
    "gcs": {"STANDARD", "NEARLINE", "COLDLINE", "ARCHIVE"},
    "azure": {"HOT", "COOL", "COLD", "ARCHIVE"},
}
# Classes whose objects must be restored or rehydrated before they can be read.
SEALED_CLASSES = {"GLACIER", "DEEP_ARCHIVE", "ARCHIVE"}
SEALED_BACKENDS = {"s3", "azure"}  # GCS ARCHIVE reads at once (at a price)


@dataclass(frozen=True)
class StorageFacts:
    url: str
    backend: Backend
    reachable: bool
    reach_error: str = ""
    repository: Literal["ok", "missing", "invalid", "unknown"] = "unknown"
    repository_detail: str = ""
    writable: bool | None = None
    write_detail: str = ""
    free_bytes: int | None = None
    """Local repositories: free space on their file system."""
    newest_backup_bytes: int | None = None
    exposed: list[str] | None = None
    """Local repositories: its files and folders that others than the owner may read (or
    enter), relative to it; None if not looked at."""
    classes: dict[str, str] = field(default_factory=dict)
    """Configured storage class per backup kind."""
    bucket: BucketFacts | None = None


@dataclass(frozen=True)
class DatabaseFacts:
    where: str
    """The database URL without its password."""
    reachable: bool
    error: str = ""
    server_version: str | None = None
    pg_dump_version: str | None = None
    pg_dump_error: str = ""
    encrypted: bool | None = None
    """Whether the connection uses TLS; None when it is a local socket or unknown."""
    role: str = ""
    tables_in_scope: int | None = None
    """Tables and sequences a backup (with the configured scope) reads; None if not asked."""
    unreadable: str = ""
    """Which of them the role cannot read, and why; empty when it can read them all."""
    unreadable_fix: str = ""
    profile: str = ""
    """`postgres` or `supabase`, and how it was decided (profile_how)."""
    profile_how: str = ""


@dataclass(frozen=True)
class Check:
    name: str
    status: Status
    detail: str
    fix: str = ""


def diagnose(storage: StorageFacts | None, database: DatabaseFacts | None) -> list[Check]:
    checks: list[Check] = []
    if storage is not None:
        checks += storage_checks(storage)
    if database is not None:
        checks += database_checks(database)
    return checks


def failed(checks: list[Check]) -> bool:
    return any(c.status == "fail" for c in checks)


# --- the repository's storage ---


def storage_checks(facts: StorageFacts) -> list[Check]:
    if not facts.reachable:
        return [Check("reachable", "fail", facts.reach_error or f"cannot reach {facts.url}")]
    checks = [Check("reachable", "ok", facts.url)]
    checks.append(_repository_check(facts))
    checks.append(_writable_check(facts))
    if facts.backend == "local":
        checks.append(_free_space_check(facts))
        if facts.exposed is not None:
            checks.append(_privacy_check(facts))
    checks += _class_checks(facts)
    if facts.bucket is not None:
        checks += bucket_checks(facts.bucket)
    return checks


def _repository_check(facts: StorageFacts) -> Check:
    if facts.repository == "ok":
        return Check("repository", "ok", facts.repository_detail)
    if facts.repository == "missing":
        return Check(
            "repository",
            "warn",
            f"no bika repository at {facts.url} yet",
            f"bika init --repo {shlex.quote(facts.url)} --recipient age1…",
        )
    return Check(
        "repository",
        "fail" if facts.repository == "invalid" else "unknown",
        facts.repository_detail,
    )


def _writable_check(facts: StorageFacts) -> Check:
    if facts.writable is None:
        return Check("writable", "unknown", facts.write_detail)
    if facts.writable:
        return Check("writable", "ok", facts.write_detail or "wrote and deleted a probe object")
    return Check("writable", "fail", facts.write_detail)


def _free_space_check(facts: StorageFacts) -> Check:
    if facts.free_bytes is None:
        return Check("free space", "unknown", "could not read the file system's free space")
    newest = facts.newest_backup_bytes
    # Room for two more backups of the newest's size, and never less than 1 GiB.
    wanted = max(2 * newest, GiB) if newest else GiB
    detail = f"{size(facts.free_bytes)} free" + (
        f"; the newest backup took {size(newest)}" if newest else ""
    )
    if facts.free_bytes < wanted:
        return Check(
            "free space",
            "warn",
            f"{detail}; less than {size(wanted)}",
            "free some space, or move the repository to a larger disk (bika copy --to NEW --init)",
        )
    return Check("free space", "ok", detail)


def _privacy_check(facts: StorageFacts) -> Check:
    exposed = facts.exposed or []
    if not exposed:
        return Check("private", "ok", "only its owner may read the repository")
    example = ", ".join(exposed[:3]) + (f" and {len(exposed) - 3} more" if len(exposed) > 3 else "")
    return Check(
        "private",
        "warn",
        f"other users may read the repository's table names, row counts and labels: {example}",
        f"chmod -R go-rwx {shlex.quote(facts.url)}",
    )


def _class_checks(facts: StorageFacts) -> list[Check]:
    if not facts.classes:
        return []
    listed = ", ".join(f"{kind}={cls}" for kind, cls in sorted(facts.classes.items()))
    if facts.backend == "local":
        return [Check("storage classes", "info", f"{listed}: ignored on a local disk")]
    known = KNOWN_CLASSES[facts.backend]
    unknown = [cls for cls in facts.classes.values() if cls.upper() not in known]
    if unknown:
        return [
            Check(
                "storage classes",
                "warn",
                f"{listed}: {', '.join(unknown)} is not a {facts.backend} storage class"
                " (an S3-compatible server may still accept it)",
                f"use one of {', '.join(sorted(known))} in [storage.classes] of bika.toml",
            )
        ]
    sealed = [
        kind
        for kind, cls in facts.classes.items()
        if cls.upper() in SEALED_CLASSES and facts.backend in SEALED_BACKENDS
    ]
    if sealed:
        return [
            Check(
                "storage classes",
                "info",
                f"{listed}: {', '.join(sorted(sealed))} backups must be restored or rehydrated"
                " (hours) before verify --read-data, drill or restore can read them",
            )
        ]
    return [Check("storage classes", "ok", listed)]


# --- the bucket's own settings ---


def bucket_checks(b: BucketFacts) -> list[Check]:
    return [
        _versioning(b),
        _encryption(b),
        *_lifecycle(b),
        _logging(b),
        _retention(b),
    ]


def _unknown(name: str, setting: Setting, how_to_look: str = "") -> Check:
    return Check(name, "unknown", setting.detail or "could not be read", how_to_look)


def _versioning(b: BucketFacts) -> Check:
    name = "versioning"
    if b.versioning.state == "on":
        return Check(name, "ok", b.versioning.detail or "enabled")
    why = "a deleted or overwritten object cannot be recovered"
    if b.versioning.state == "unknown":
        if b.backend == "azure":
            return _unknown(
                name, b.versioning, _az(b, "storage account blob-service-properties show")
            )
        return _unknown(name, b.versioning)
    fix = {
        "s3": _aws(b, "put-bucket-versioning", "--versioning-configuration Status=Enabled"),
        "gcs": f"gcloud storage buckets update gs://{b.bucket} --versioning",
        "azure": _az(b, "storage account blob-service-properties update --enable-versioning true"),
    }[b.backend]
    detail = b.versioning.detail or "off"
    return Check(name, "warn", f"{detail}: {why}", fix)


def _encryption(b: BucketFacts) -> Check:
    name = "default encryption"
    if b.encryption.state == "on":
        return Check(name, "ok", b.encryption.detail or "on")
    if b.encryption.state == "unknown":
        return _unknown(name, b.encryption)
    config = {
        "Rules": [
            {
                "ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "aws:kms"},
                "BucketKeyEnabled": True,
            }
        ]
    }
    return Check(
        name,
        "warn",
        (b.encryption.detail or "off")
        + ": objects are stored without server-side encryption (bika's age encryption still"
        " protects the data)",
        _aws(
            b,
            "put-bucket-encryption",
            f"--server-side-encryption-configuration {_json(config)}",
        ),
    )


def _lifecycle(b: BucketFacts) -> list[Check]:
    name = "lifecycle rules"
    if b.lifecycle.state == "unknown":
        if b.backend == "azure":
            return [_unknown(name, b.lifecycle, _az(b, "storage account management-policy show"))]
        return [_unknown(name, b.lifecycle)]
    rules = [r for r in b.rules if r.enabled and _covers(r.prefix, b.prefix)]
    if b.lifecycle.state == "off" or not rules:
        detail = (
            "none"
            if b.lifecycle.state == "off"
            else "none applies to the repository's prefix (the fix replaces the bucket's"
            " rules: merge them)"
        )
        kept = (
            "parts of interrupted uploads and old object versions"
            if b.backend == "s3"
            else "old object versions"
        )
        return [
            Check(
                name,
                "warn",
                f"{detail}: {kept} are kept (and billed) forever",
                _lifecycle_fix(b),
            )
        ]
    checks = []
    expiring = [r for r in rules if r.deletes_current_after_days is not None]
    if expiring:
        rule = expiring[0]
        checks.append(
            Check(
                name,
                "warn",
                f"rule {rule.name!r} deletes objects {rule.deletes_current_after_days} days"
                " after they were written, whatever bika's retention says: backups (or their"
                " manifests) vanish on the bucket's schedule",
                "let bika prune delete backups; limit the bucket's rules to old versions and"
                " unfinished uploads: " + _lifecycle_fix(b),
            )
        )
    # GCS resumable uploads (what bika uses there) expire by themselves after a week.
    if b.backend == "s3" and not any(r.aborts_uploads for r in rules):
        checks.append(
            Check(
                "upload cleanup",
                "info",
                f"{len(rules)} rule(s), none aborts incomplete multipart uploads: parts of an"
                " interrupted backup stay billed",
                "add AbortIncompleteMultipartUpload (7 days) to the bucket's lifecycle rules",
            )
        )
    if not expiring:
        checks.insert(0, Check(name, "ok", f"{len(rules)} rule(s) apply to the repository"))
    return checks


def _lifecycle_fix(b: BucketFacts) -> str:
    prefix = f"{b.prefix}/" if b.prefix else ""
    if b.backend == "s3":
        config = {
            "Rules": [
                {
                    "ID": "bika",
                    "Status": "Enabled",
                    "Filter": {"Prefix": prefix},
                    "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 7},
                    "NoncurrentVersionExpiration": {"NoncurrentDays": 30},
                }
            ]
        }
        return _aws(
            b,
            "put-bucket-lifecycle-configuration",
            f"--lifecycle-configuration {_json(config)}",
        )
    if b.backend == "gcs":
        condition: dict[str, object] = {"matchesPrefix": [prefix]} if prefix else {}
        config = {
            "rule": [
                {
                    "action": {"type": "Delete"},
                    "condition": {"isLive": False, "daysSinceNoncurrentTime": 30, **condition},
                },
            ]
        }
        return (
            f"echo {_json(config)} > lifecycle.json && gcloud storage buckets update"
            f" gs://{b.bucket} --lifecycle-file=lifecycle.json"
        )
    policy = {
        "rules": [
            {
                "name": "bika",
                "enabled": True,
                "type": "Lifecycle",
                "definition": {
                    "filters": {
                        "blobTypes": ["blockBlob"],
                        "prefixMatch": [f"{b.bucket}/{prefix}"],
                    },
                    "actions": {"version": {"delete": {"daysAfterCreationGreaterThan": 30}}},
                },
            }
        ]
    }
    return f"echo {_json(policy)} > policy.json && " + _az(
        b, "storage account management-policy create --policy @policy.json"
    )


def _logging(b: BucketFacts) -> Check:
    name = "access logging"
    if b.logging.state == "on":
        return Check(name, "ok", b.logging.detail or "on")
    if b.logging.state == "unknown":
        return _unknown(name, b.logging)
    why = "no record of who read or deleted backups"
    if b.backend == "s3":
        status = {"LoggingEnabled": {"TargetBucket": "LOG-BUCKET", "TargetPrefix": f"{b.bucket}/"}}
        fix = _aws(b, "put-bucket-logging", f"--bucket-logging-status {_json(status)}")
    elif b.backend == "gcs":
        fix = (
            f"gcloud storage buckets update gs://{b.bucket} --log-bucket=gs://LOG-BUCKET"
            f" --log-object-prefix={b.bucket}"
        )
    else:
        fix = (
            f"az storage logging update --account-name {b.account} --services b --log rwd"
            " --retention 90 (or a diagnostic setting in Azure Monitor)"
        )
    return Check(name, "warn", f"{b.logging.detail or 'off'}: {why}", fix)


def _retention(b: BucketFacts) -> Check:
    name = {"s3": "object lock", "gcs": "retention policy", "azure": "immutability"}[b.backend]
    if b.retention.state == "on":
        return Check(name, "ok", b.retention.detail or "on")
    if b.retention.state == "unknown":
        return _unknown(name, b.retention)
    # Not a warning: a lock longer than the shortest retention makes prune fail, so it is a
    # choice, not a default; say how.
    if b.backend == "s3":
        config = {
            "ObjectLockEnabled": "Enabled",
            "Rule": {"DefaultRetention": {"Mode": "GOVERNANCE", "Days": 7}},
        }
        fix = _aws(
            b, "put-object-lock-configuration", f"--object-lock-configuration {_json(config)}"
        )
    elif b.backend == "gcs":
        fix = f"gcloud storage buckets update gs://{b.bucket} --retention-period=7d"
    else:
        fix = _az(
            b,
            f"storage container immutability-policy create --container-name {b.bucket} --period 7",
        )
    return Check(
        name,
        "info",
        (b.retention.detail or "off")
        + ": credentials that can write can also delete backups; a retention lock of at most"
        " the shortest keep (7 days for dailies) stops that",
        fix,
    )


def _covers(rule_prefix: str, repo_prefix: str) -> bool:
    """Whether a rule with this prefix applies to some of the repository's objects."""
    repo = f"{repo_prefix}/" if repo_prefix else ""
    return repo.startswith(rule_prefix) or rule_prefix.startswith(repo)


def _aws(b: BucketFacts, command: str, arguments: str) -> str:
    endpoint = f" --endpoint-url {b.endpoint}" if b.endpoint else ""
    return f"aws s3api {command} --bucket {b.bucket} {arguments}{endpoint}"


def _az(b: BucketFacts, command: str) -> str:
    return f"az {command} --account-name {b.account} --resource-group RESOURCE-GROUP"


def _json(value: object) -> str:
    return shlex.quote(json.dumps(value, separators=(",", ":")))


# --- the database ---


def database_checks(facts: DatabaseFacts) -> list[Check]:
    if not facts.reachable:
        return [Check("database", "fail", facts.error)]
    checks = [Check("database", "ok", f"{facts.where}, PostgreSQL {facts.server_version}")]
    if facts.pg_dump_version is None:
        checks.append(Check("pg_dump", "fail", facts.pg_dump_error))
    elif facts.server_version is not None and _major(facts.pg_dump_version) < _major(
        facts.server_version
    ):
        checks.append(
            Check(
                "pg_dump",
                "fail",
                f"pg_dump {facts.pg_dump_version} cannot dump PostgreSQL {facts.server_version}",
                "remove pg_bin_dir to use the bundled PostgreSQL 18 tools, or point it at"
                f" PostgreSQL {_major(facts.server_version)}+ binaries",
            )
        )
    else:
        checks.append(
            Check(
                "pg_dump",
                "ok",
                f"pg_dump {facts.pg_dump_version} dumps PostgreSQL {facts.server_version};"
                f" restores need pg_restore {_major(facts.pg_dump_version)}+",
            )
        )
    if facts.profile == "supabase":
        checks.append(
            Check(
                "profile",
                "ok",
                f"supabase ({facts.profile_how}): backups hold the project's own schemas, the"
                " user's rows in auth/storage/…, and custom roles; restore with --profile supabase",
            )
        )
    elif facts.profile:
        checks.append(Check("profile", "ok", f"postgres ({facts.profile_how})"))
    if facts.tables_in_scope is not None:
        if facts.unreadable:
            checks.append(Check("table access", "fail", facts.unreadable, facts.unreadable_fix))
        else:
            checks.append(
                Check(
                    "table access",
                    "ok",
                    f"role {facts.role} can read all {facts.tables_in_scope} tables and"
                    " sequences in the backup's scope",
                )
            )
    if facts.encrypted is False:
        checks.append(
            Check(
                "database TLS",
                "warn",
                "the connection is not encrypted: passwords and data cross the network in clear",
                "add sslmode=require (or verify-full) to the database URL",
            )
        )
    elif facts.encrypted:
        checks.append(Check("database TLS", "ok", "the connection is encrypted"))
    return checks


def _major(version: str) -> int:
    digits = ""
    for char in version.strip():
        if not char.isdigit():
            break
        digits += char
    return int(digits or 0)
