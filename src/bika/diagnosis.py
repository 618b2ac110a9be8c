"""What `bika doctor` concludes from the facts it gathered: one finding per check, with the fix.

Pure: facts in (plain dataclasses, filled by operations/doctor.py), bika.findings.Finding out
(what: the check's name; message: its detail); no I/O here.

A missing protective setting (versioning, encryption, lifecycle, logging, retention) is a
warning with the exact command that fixes it; only a storage that cannot be reached or written
and a database that cannot be dumped are failures.
"""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass, field
from typing import Literal

from bika.findings import Finding
from bika.storage.facts import BucketFacts, Kind, Setting
from bika.units import size

Backend = Kind

GiB = 1024**3


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
    object_lock: str = ""
    """bika.json's object lock ("30 days, compliance"); empty when backups are not locked."""


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


def diagnose(storage: StorageFacts | None, database: DatabaseFacts | None) -> list[Finding]:
    checks: list[Finding] = []
    if storage is not None:
        checks += storage_checks(storage)
    if database is not None:
        checks += database_checks(database)
    return checks


def failed(checks: list[Finding]) -> bool:
    return any(c.level == "error" for c in checks)


def status(finding: Finding) -> str:
    """Doctor's word for a finding's level, in its table and --json: an error is "fail"."""
    return "fail" if finding.level == "error" else finding.level


# --- the repository's storage ---


def storage_checks(facts: StorageFacts) -> list[Finding]:
    if not facts.reachable:
        return [Finding("error", "reachable", facts.reach_error or f"cannot reach {facts.url}")]
    checks = [Finding("ok", "reachable", facts.url)]
    checks.append(_repository_check(facts))
    checks.append(_writable_check(facts))
    if facts.backend == "local":
        checks.append(_free_space_check(facts))
        if facts.exposed is not None:
            checks.append(_privacy_check(facts))
    checks += _class_checks(facts)
    if facts.bucket is not None:
        checks += bucket_checks(facts.bucket)
    if facts.object_lock:
        checks.append(_object_lock_check(facts))
    return checks


def _object_lock_check(facts: StorageFacts) -> Finding:
    """A repository that locks its backups, on a bucket that can (or cannot) lock them."""
    name, wanted = "backup lock", f"every backup is locked {facts.object_lock}"
    bucket = facts.bucket
    if bucket is None:
        return Finding("error", name, f"{wanted}, but a local folder cannot lock files")
    if bucket.lockable is None:
        return Finding(
            "unknown",
            name,
            f"{wanted}; whether the bucket can lock is unknown ({bucket.retention.detail})",
        )
    if bucket.lockable:
        return Finding("ok", name, f"{wanted}; {bucket.retention.detail}")
    return Finding(
        "error",
        name,
        f"{wanted}, but the bucket cannot lock objects ({bucket.retention.detail or 'off'}):"
        " backups will fail until it can",
        _retention(bucket).fix,
    )


def _repository_check(facts: StorageFacts) -> Finding:
    if facts.repository == "ok":
        return Finding("ok", "repository", facts.repository_detail)
    if facts.repository == "missing":
        return Finding(
            "warn",
            "repository",
            f"no bika repository at {facts.url} yet",
            f"bika init --repo {shlex.quote(facts.url)} --recipient age1…",
        )
    return Finding(
        "error" if facts.repository == "invalid" else "unknown",
        "repository",
        facts.repository_detail,
    )


def _writable_check(facts: StorageFacts) -> Finding:
    if facts.writable is None:
        return Finding("unknown", "writable", facts.write_detail)
    if facts.writable:
        return Finding("ok", "writable", facts.write_detail or "wrote and deleted a probe object")
    return Finding("error", "writable", facts.write_detail)


def _free_space_check(facts: StorageFacts) -> Finding:
    if facts.free_bytes is None:
        return Finding("unknown", "free space", "could not read the file system's free space")
    newest = facts.newest_backup_bytes
    # Room for two more backups of the newest's size, and never less than 1 GiB.
    wanted = max(2 * newest, GiB) if newest else GiB
    detail = f"{size(facts.free_bytes)} free" + (
        f"; the newest backup took {size(newest)}" if newest else ""
    )
    if facts.free_bytes < wanted:
        return Finding(
            "warn",
            "free space",
            f"{detail}; less than {size(wanted)}",
            "free some space, or move the repository to a larger disk (bika copy --to NEW --init)",
        )
    return Finding("ok", "free space", detail)


def _privacy_check(facts: StorageFacts) -> Finding:
    exposed = facts.exposed or []
    if not exposed:
        return Finding("ok", "private", "only its owner may read the repository")
    example = ", ".join(exposed[:3]) + (f" and {len(exposed) - 3} more" if len(exposed) > 3 else "")
    return Finding(
        "warn",
        "private",
        f"other users may read the repository's table names, row counts and labels: {example}",
        f"chmod -R go-rwx {shlex.quote(facts.url)}",
    )


def _class_checks(facts: StorageFacts) -> list[Finding]:
    if not facts.classes:
        return []
    listed = ", ".join(f"{kind}={cls}" for kind, cls in sorted(facts.classes.items()))
    if facts.backend == "local":
        return [Finding("info", "storage classes", f"{listed}: ignored on a local disk")]
    # each backend names its own classes (and the sealed ones) in its bucket facts
    known = facts.bucket.storage_classes if facts.bucket else frozenset()
    sealed_classes = facts.bucket.sealed_classes if facts.bucket else frozenset()
    unknown = [cls for cls in facts.classes.values() if cls.upper() not in known]
    if known and unknown:
        return [
            Finding(
                "warn",
                "storage classes",
                f"{listed}: {', '.join(unknown)} is not a {facts.backend} storage class"
                " (an S3-compatible server may still accept it)",
                f"use one of {', '.join(sorted(known))} in [storage.classes] of bika.toml",
            )
        ]
    sealed = [kind for kind, cls in facts.classes.items() if cls.upper() in sealed_classes]
    if sealed:
        return [
            Finding(
                "info",
                "storage classes",
                f"{listed}: {', '.join(sorted(sealed))} backups must be restored or rehydrated"
                " (hours) before verify --read-data, drill or restore can read them",
            )
        ]
    return [Finding("ok", "storage classes", listed)]


# --- the bucket's own settings ---


def bucket_checks(b: BucketFacts) -> list[Finding]:
    return [
        _versioning(b),
        _encryption(b),
        *_lifecycle(b),
        _logging(b),
        _retention(b),
    ]


def _unknown(name: str, setting: Setting, how_to_look: str = "") -> Finding:
    return Finding("unknown", name, setting.detail or "could not be read", how_to_look)


def _versioning(b: BucketFacts) -> Finding:
    name = "versioning"
    if b.versioning.state == "on":
        return Finding("ok", name, b.versioning.detail or "enabled")
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
    return Finding("warn", name, f"{detail}: {why}", fix)


def _encryption(b: BucketFacts) -> Finding:
    name = "default encryption"
    if b.encryption.state == "on":
        return Finding("ok", name, b.encryption.detail or "on")
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
    return Finding(
        "warn",
        name,
        (b.encryption.detail or "off")
        + ": objects are stored without server-side encryption (bika's age encryption still"
        " protects the data)",
        _aws(
            b,
            "put-bucket-encryption",
            f"--server-side-encryption-configuration {_json(config)}",
        ),
    )


def _lifecycle(b: BucketFacts) -> list[Finding]:
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
            Finding(
                "warn", name, f"{detail}: {kept} are kept (and billed) forever", _lifecycle_fix(b)
            )
        ]
    checks = []
    expiring = [r for r in rules if r.deletes_current_after_days is not None]
    if expiring:
        rule = expiring[0]
        checks.append(
            Finding(
                "warn",
                name,
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
            Finding(
                "info",
                "upload cleanup",
                f"{len(rules)} rule(s), none aborts incomplete multipart uploads: parts of an"
                " interrupted backup stay billed",
                "add AbortIncompleteMultipartUpload (7 days) to the bucket's lifecycle rules",
            )
        )
    if not expiring:
        checks.insert(0, Finding("ok", name, f"{len(rules)} rule(s) apply to the repository"))
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


def _logging(b: BucketFacts) -> Finding:
    name = "access logging"
    if b.logging.state == "on":
        return Finding("ok", name, b.logging.detail or "on")
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
    return Finding("warn", name, f"{b.logging.detail or 'off'}: {why}", fix)


def _retention(b: BucketFacts) -> Finding:
    name = {"s3": "object lock", "gcs": "retention policy", "azure": "immutability"}[b.backend]
    if b.retention.state == "on":
        return Finding("ok", name, b.retention.detail or "on")
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
        # per object, not a bucket retention policy: that would also hold the objects bika
        # deletes or rewrites (locks, index, bika.json)
        fix = (
            "gcloud storage buckets create gs://NEW-BUCKET --enable-per-object-retention"
            " (or the console's Protection tab for this one), then bika init --object-lock 7"
        )
    else:
        fix = (
            f"az storage container-rm create --storage-account {b.account} --resource-group"
            " RESOURCE-GROUP --name NEW-CONTAINER --enable-vlw (blob versioning on), then bika"
            " init --object-lock 7"
        )
    return Finding(
        "info",
        name,
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


def database_checks(facts: DatabaseFacts) -> list[Finding]:
    if not facts.reachable:
        return [Finding("error", "database", facts.error)]
    checks = [Finding("ok", "database", f"{facts.where}, PostgreSQL {facts.server_version}")]
    if facts.pg_dump_version is None:
        checks.append(Finding("error", "pg_dump", facts.pg_dump_error))
    elif facts.server_version is not None and _major(facts.pg_dump_version) < _major(
        facts.server_version
    ):
        checks.append(
            Finding(
                "error",
                "pg_dump",
                f"pg_dump {facts.pg_dump_version} cannot dump PostgreSQL {facts.server_version}",
                "remove pg_bin_dir to use the bundled PostgreSQL 18 tools, or point it at"
                f" PostgreSQL {_major(facts.server_version)}+ binaries",
            )
        )
    else:
        checks.append(
            Finding(
                "ok",
                "pg_dump",
                f"pg_dump {facts.pg_dump_version} dumps PostgreSQL {facts.server_version};"
                f" restores need pg_restore {_major(facts.pg_dump_version)}+",
            )
        )
    if facts.profile == "supabase":
        checks.append(
            Finding(
                "ok",
                "profile",
                f"supabase ({facts.profile_how}): backups hold the project's own schemas, the"
                " user's rows in auth/storage/…, and custom roles; restore with --profile supabase",
            )
        )
    elif facts.profile:
        checks.append(Finding("ok", "profile", f"postgres ({facts.profile_how})"))
    if facts.tables_in_scope is not None:
        if facts.unreadable:
            checks.append(Finding("error", "table access", facts.unreadable, facts.unreadable_fix))
        else:
            checks.append(
                Finding(
                    "ok",
                    "table access",
                    f"role {facts.role} can read all {facts.tables_in_scope} tables and"
                    " sequences in the backup's scope",
                )
            )
    if facts.encrypted is False:
        checks.append(
            Finding(
                "warn",
                "database TLS",
                "the connection is not encrypted: passwords and data cross the network in clear",
                "add sslmode=require (or verify-full) to the database URL",
            )
        )
    elif facts.encrypted:
        checks.append(Finding("ok", "database TLS", "the connection is encrypted"))
    return checks


def _major(version: str) -> int:
    digits = ""
    for char in version.strip():
        if not char.isdigit():
            break
        digits += char
    return int(digits or 0)


# --- signatures ---


def signing_check(signs_as: str | None, pinned: list[str], recorded: list[str]) -> Finding:
    """Whether backups are signed, and whether this host pins the keys that sign them
    (signs_as: this host's signing public key; recorded: bika.json's signers)."""
    short = [f"{key[:16]}…" for key in recorded if key not in pinned and key != signs_as]
    if pinned and short:
        return Finding(
            "warn",
            "signatures",
            f"bika.json lists signer {', '.join(short)}, which this host does not trust: the"
            " backups it signs are refused here",
            "add it to trusted_signers if it is your backup host's key (check with its operator,"
            " not from the bucket)",
        )
    if pinned:
        return Finding("ok", "signatures", f"only backups signed by {len(pinned)} pinned key(s)")
    if signs_as:
        return Finding("ok", "signatures", f"this host signs what it writes as {signs_as[:16]}…")
    if recorded:
        return Finding(
            "warn",
            "signatures",
            f"backups are signed ({', '.join(k[:16] + '…' for k in recorded)}) but this host"
            " pins no key, so a substitute signed by another key in a rewritten bika.json would"
            " pass",
            f'set trusted_signers = ["{recorded[0]}"] after checking it with the backup host',
        )
    return Finding(
        "info",
        "signatures",
        "backups are not signed: a substitute written by someone with access to the bucket"
        " cannot be told from yours",
        "bika key generate --signing --out FILE on the backup host, then signing_key there and"
        " trusted_signers on restoring hosts (docs/SECURITY.md)",
    )
