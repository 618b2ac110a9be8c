"""Reading a bucket's protective settings for `bika doctor`: versioning, encryption, lifecycle,
logging, object lock or retention, each as on, off or unknown (with why).

S3 through boto3 (obstore has no bucket-level calls), GCS through google-cloud-storage's bucket
metadata, Azure through signed data-plane requests (lifecycle management lives in Azure
Resource Manager, which storage credentials cannot read). Nothing here raises: a setting that
cannot be read is "unknown", with the server's reason.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from xml.etree import ElementTree

from bika.storage import Storage
from bika.storage.facts import BucketFacts, LifecycleRule, Setting

if TYPE_CHECKING:
    from bika.storage.azure import AzureStorage
    from bika.storage.gcs import GCSStorage
    from bika.storage.s3 import S3Storage

# S3 error codes that mean "this setting is simply not configured".
_S3_NOT_SET = {
    "ServerSideEncryptionConfigurationNotFoundError",
    "NoSuchLifecycleConfiguration",
    "ObjectLockConfigurationNotFoundError",
}


def bucket_facts(storage: Storage, probe_key: str | None = None) -> BucketFacts | None:
    """The settings of the bucket or container a cloud storage lives in; None for local disk.
    probe_key names an object just written (Azure tells versioning from its reply)."""
    # Imported here: every command imports this module, and these pull in the cloud SDKs.
    from bika.storage.azure import AzureStorage
    from bika.storage.gcs import GCSStorage
    from bika.storage.s3 import S3Storage

    if isinstance(storage, S3Storage):
        return _s3(storage)
    if isinstance(storage, GCSStorage):
        return _gcs(storage)
    if isinstance(storage, AzureStorage):
        return _azure(storage, probe_key)
    return None


# --- S3 ---


def _s3(storage: S3Storage) -> BucketFacts:
    base = BucketFacts("s3", storage.bucket, storage.prefix, storage.endpoint)
    try:
        client = storage.boto3_client()
    except Exception as exc:
        why = Setting("unknown", f"cannot make an S3 client: {_first_line(exc)}")
        return _all(base, why)
    bucket = storage.bucket

    def ask(call: str, permission: str) -> tuple[dict[str, Any] | None, Setting | None]:
        """The reply, or (None, the Setting to report): off when unset, else unknown."""
        try:
            reply: dict[str, Any] = getattr(client, call)(Bucket=bucket)
            return reply, None
        except Exception as exc:
            code, message = _s3_error(exc)
            if code in _S3_NOT_SET:
                return None, Setting("off", "not configured")
            if code in ("AccessDenied", "AllAccessDisabled"):
                return None, Setting("unknown", f"not allowed to read it ({permission})")
            if code in ("NotImplemented", "501", "MethodNotAllowed"):
                return None, Setting("unknown", "this S3-compatible server does not report it")
            if code == "NoSuchBucket":
                return None, Setting("unknown", f"the bucket {bucket} does not exist")
            return None, Setting("unknown", message)

    reply, problem = ask("get_bucket_versioning", "s3:GetBucketVersioning")
    if problem is None and reply is not None:
        status = reply.get("Status")
        if status == "Enabled":
            problem = Setting(
                "on", "enabled" + (", MFA delete" if reply.get("MFADelete") == "Enabled" else "")
            )
        else:
            problem = Setting("off", "suspended" if status == "Suspended" else "never enabled")
    versioning = problem or Setting("unknown")

    reply, problem = ask("get_bucket_encryption", "s3:GetEncryptionConfiguration")
    if problem is None and reply is not None:
        rules = reply.get("ServerSideEncryptionConfiguration", {}).get("Rules", [])
        default = rules[0].get("ApplyServerSideEncryptionByDefault", {}) if rules else {}
        algorithm = default.get("SSEAlgorithm")
        key = default.get("KMSMasterKeyID")
        problem = (
            Setting("on", f"{algorithm}" + (f" with key {key}" if key else ""))
            if algorithm
            else Setting("off", "no default rule")
        )
    encryption = problem or Setting("unknown")

    reply, problem = ask("get_bucket_lifecycle_configuration", "s3:GetLifecycleConfiguration")
    rules_found: tuple[LifecycleRule, ...] = ()
    if problem is None and reply is not None:
        rules_found = tuple(_s3_rule(rule) for rule in reply.get("Rules", []))
        problem = Setting("on" if rules_found else "off", f"{len(rules_found)} rule(s)")
    lifecycle = problem or Setting("unknown")

    reply, problem = ask("get_bucket_logging", "s3:GetBucketLogging")
    if problem is None and reply is not None:
        target = reply.get("LoggingEnabled")
        problem = (
            Setting("on", f"to s3://{target.get('TargetBucket')}/{target.get('TargetPrefix', '')}")
            if target
            else Setting("off", "off")
        )
    logging = problem or Setting("unknown")

    reply, problem = ask("get_object_lock_configuration", "s3:GetBucketObjectLockConfiguration")
    if problem is None and reply is not None:
        lock = reply.get("ObjectLockConfiguration", {})
        if lock.get("ObjectLockEnabled") == "Enabled":
            default_retention = lock.get("Rule", {}).get("DefaultRetention", {})
            if default_retention:
                span = (
                    f"{default_retention['Days']} days"
                    if "Days" in default_retention
                    else f"{default_retention.get('Years')} years"
                )
                problem = Setting("on", f"{default_retention.get('Mode')} for {span}")
            else:
                problem = Setting("on", "enabled, no default retention")
        else:
            problem = Setting("off", "off")
    retention = problem or Setting("unknown")

    return BucketFacts(
        "s3",
        storage.bucket,
        storage.prefix,
        storage.endpoint,
        versioning=versioning,
        encryption=encryption,
        lifecycle=lifecycle,
        rules=rules_found,
        logging=logging,
        retention=retention,
    )


def _s3_rule(rule: dict[str, Any]) -> LifecycleRule:
    filter_ = rule.get("Filter", {})
    prefix = filter_.get("Prefix", filter_.get("And", {}).get("Prefix", rule.get("Prefix", "")))
    expiration = rule.get("Expiration", {})
    return LifecycleRule(
        name=str(rule.get("ID", "")),
        prefix=str(prefix or ""),
        enabled=rule.get("Status") == "Enabled",
        deletes_current_after_days=expiration.get("Days"),
        deletes_noncurrent="NoncurrentVersionExpiration" in rule,
        aborts_uploads="AbortIncompleteMultipartUpload" in rule,
    )


def _s3_error(exc: BaseException) -> tuple[str, str]:
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        error = response.get("Error", {})
        status = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        code = str(error.get("Code") or status or "")
        message = str(error.get("Message") or "")
        return code, f"HTTP {status}: {code}" + (f": {message}" if message else "")
    return "", _first_line(exc)


# --- GCS ---


def _gcs(storage: GCSStorage) -> BucketFacts:
    base = BucketFacts("gcs", storage.bucket_name, storage.prefix, storage.endpoint)
    try:
        bucket = storage.bucket_metadata()
    except Exception as exc:
        code = getattr(exc, "code", None)
        if code == 403:
            why = "not allowed to read the bucket's settings (storage.buckets.get)"
        elif code == 404:
            why = f"the bucket {storage.bucket_name} does not exist"
        else:
            why = _first_line(exc)
        return _all(base, Setting("unknown", why))

    versioning = (
        Setting("on", "enabled") if bucket.versioning_enabled else Setting("off", "never enabled")
    )
    kms = bucket.default_kms_key_name
    encryption = Setting(
        "on", f"customer-managed key {kms}" if kms else "Google-managed keys (always on)"
    )
    rules = tuple(_gcs_rule(i, rule) for i, rule in enumerate(bucket.lifecycle_rules or []))
    lifecycle = Setting("on" if rules else "off", f"{len(rules)} rule(s)")
    log = bucket.get_logging()
    logging = (
        Setting("on", f"to gs://{log.get('logBucket')}/{log.get('logObjectPrefix', '')}")
        if log
        else Setting("off", "off")
    )
    period = bucket.retention_period
    if period:
        locked = ", locked" if bucket.retention_policy_locked else ""
        retention = Setting("on", f"{int(period) // 86400} days{locked}")
    else:
        retention = Setting("off", "no retention policy")
    return BucketFacts(
        "gcs",
        storage.bucket_name,
        storage.prefix,
        storage.endpoint,
        versioning=versioning,
        encryption=encryption,
        lifecycle=lifecycle,
        rules=rules,
        logging=logging,
        retention=retention,
    )


def _gcs_rule(index: int, rule: Any) -> LifecycleRule:
    action = dict(rule.get("action", {}))
    condition = dict(rule.get("condition", {}))
    prefixes = condition.get("matchesPrefix") or [""]
    kind = action.get("type")
    noncurrent = condition.get("isLive") is False or any(
        k in condition for k in ("numNewerVersions", "daysSinceNoncurrentTime")
    )
    age = condition.get("age")
    return LifecycleRule(
        name=f"rule {index + 1} ({kind})",
        prefix=str(prefixes[0]),
        deletes_current_after_days=int(age)
        if kind == "Delete" and age and not noncurrent
        else None,
        deletes_noncurrent=kind == "Delete" and noncurrent,
        aborts_uploads=kind == "AbortIncompleteMultipartUpload",
    )


# --- Azure ---


def _azure(storage: AzureStorage, probe_key: str | None) -> BucketFacts:
    base = BucketFacts(
        "azure",
        storage.container,
        storage.prefix,
        storage.endpoint,
        account=storage.account,
        lifecycle=Setting(
            "unknown",
            "lifecycle management is an account setting only Azure Resource Manager shows",
        ),
    )
    try:
        service = storage.rest("GET", "", {"restype": "service", "comp": "properties"})
        container = storage.rest("GET", storage.container, {"restype": "container"})
        probe = None
        if probe_key is not None:
            name = f"{storage.prefix}/{probe_key}" if storage.prefix else probe_key
            probe = storage.rest("HEAD", f"{storage.container}/{name}")
    except Exception as exc:
        return _all(base, Setting("unknown", _first_line(exc)), keep_lifecycle=True)
    if service is None or container is None:
        why = Setting("unknown", "needs an account key or SAS to read (Azure AD is not used here)")
        return _all(base, why, keep_lifecycle=True)

    soft_delete = ""
    logging = Setting("unknown", f"HTTP {service.status} reading the service properties")
    if service.status == 200:
        root = ElementTree.fromstring(service.body)
        log = root.find("Logging")
        flags = [
            op.lower()
            for op in ("Read", "Write", "Delete")
            if log is not None and (log.findtext(op) or "").lower() == "true"
        ]
        logging = (
            Setting("on", f"Storage Analytics logs {', '.join(flags)}")
            if flags
            else Setting("off", "Storage Analytics logging off")
        )
        policy = root.find("DeleteRetentionPolicy")
        if policy is not None and (policy.findtext("Enabled") or "").lower() == "true":
            soft_delete = f"; blob soft delete {policy.findtext('Days')} days"
        else:
            soft_delete = "; blob soft delete off"

    if probe is not None and probe.status == 200:
        version = probe.header("x-ms-version-id")
        versioning = (
            Setting("on", f"enabled{soft_delete}")
            if version
            else Setting("off", f"off (a new blob got no version id){soft_delete}")
        )
    else:
        versioning = Setting("unknown", f"no probe blob to tell from{soft_delete}")

    encryption = Setting("unknown", f"HTTP {container.status} reading the container")
    retention = encryption
    if container.status == 200:
        scope = container.header("x-ms-default-encryption-scope") or "$account-encryption-key"
        encryption = Setting("on", f"always on; default encryption scope {scope}")
        flags = [
            label
            for header, label in (
                ("x-ms-has-immutability-policy", "time-based policy"),
                ("x-ms-has-legal-hold", "legal hold"),
                ("x-ms-immutable-storage-with-versioning-enabled", "version-level immutability"),
            )
            if (container.header(header) or "").lower() == "true"
        ]
        retention = Setting("on", ", ".join(flags)) if flags else Setting("off", "off")
    return BucketFacts(
        "azure",
        storage.container,
        storage.prefix,
        storage.endpoint,
        account=storage.account,
        versioning=versioning,
        encryption=encryption,
        lifecycle=base.lifecycle,
        logging=logging,
        retention=retention,
    )


def _all(base: BucketFacts, why: Setting, keep_lifecycle: bool = False) -> BucketFacts:
    return BucketFacts(
        base.backend,
        base.bucket,
        base.prefix,
        base.endpoint,
        account=base.account,
        versioning=why,
        encryption=why,
        lifecycle=base.lifecycle if keep_lifecycle else why,
        logging=why,
        retention=why,
    )


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return " ".join(text.splitlines()[0].split()) if text else type(exc).__name__
