"""S3 storage for s3://bucket/prefix: AWS and S3-compatibles (B2, R2, MinIO, Wasabi by endpoint).

Streams multipart uploads through obstore; credentials come from settings, env or an AWS profile.

Credentials, in the order the AWS CLI uses them: explicit settings, AWS_ACCESS_KEY_ID /
AWS_SECRET_ACCESS_KEY / AWS_SESSION_TOKEN, the profile (settings.profile or AWS_PROFILE) from
~/.aws/credentials and ~/.aws/config as botocore reads them, then whatever obstore finds itself
(web identity, ECS/EKS container credentials, EC2 instance role). A profile without static keys
(SSO, assume-role, credential_process) is resolved by botocore's session. resolve_s3 decides
all of it from settings, the environment and the profile's settings, without a request.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

from obstore.store import S3Store

from bika.errors import ConfigError, StorageError
from bika.storage import StorageSettings, reveal
from bika.storage.cloud import (
    CloudStorage,
    ServerReply,
    check_endpoint,
    client_options,
    one_line,
    retry_config,
    settings_error,
)
from bika.storage.facts import BucketFacts, Kind, LifecycleRule, Setting

if TYPE_CHECKING:
    from obstore.store import S3Config, S3CredentialProvider

_CREDENTIALS_HINT = (
    "; check the credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
    " (and AWS_SESSION_TOKEN for temporary ones) or AWS_PROFILE"
)
_AUTH_CODES = {
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "ExpiredToken",
    "InvalidToken",
    "TokenRefreshRequired",
    "InvalidClientTokenId",
}
# What people call them -> what S3's x-amz-server-side-encryption header says.
_SSE_NAMES = {
    "sse-s3": "AES256",
    "aes256": "AES256",
    "sse-kms": "aws:kms",
    "kms": "aws:kms",
    "aws:kms": "aws:kms",
    "dsse-kms": "aws:kms:dsse",
}
# Whatever a user's SDK or console calls them; compared upper-cased.
STORAGE_CLASSES = frozenset(
    {
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
    }
)
SEALED_CLASSES = frozenset({"GLACIER", "DEEP_ARCHIVE"})  # restore-object before reading
_REGION_CODES = {"PermanentRedirect", "AuthorizationHeaderMalformed", "IllegalLocationConstraint"}


@dataclass(frozen=True)
class S3Options:
    """What an S3Storage is built from: resolve_s3's answer, before any request."""

    bucket: str
    prefix: str
    region: str
    endpoint: str | None
    """As given, for messages and boto3; the store's own may carry the bucket in its host."""
    config: S3Config
    """obstore's S3Store settings: region, endpoint, static keys, SSE, addressing style."""
    allow_http: bool
    profile: str | None = None
    """A profile without static keys (SSO, assume-role, credential_process), for botocore to
    resolve; None when the keys are in config (or left to obstore's own chain)."""

    @property
    def secrets(self) -> tuple[str, ...]:
        """What error messages must never show."""
        found = (self.config.get("secret_access_key"), self.config.get("session_token"))
        return tuple(secret for secret in found if secret)


def resolve_s3(
    url: str,
    settings: StorageSettings,
    environ: Mapping[str, str],
    read_profile: Callable[[str], Mapping[str, str]],
) -> S3Options:
    """Where and how to reach an s3:// URL, in the order the AWS CLI looks: settings, then
    AWS_* variables, then the profile (settings.profile or AWS_PROFILE) whose merged
    ~/.aws/config and ~/.aws/credentials read_profile returns (aws_profile: botocore's
    reading). Pure: no file, no network."""
    parts = urlsplit(url)
    bucket = parts.netloc
    prefix = parts.path.strip("/")
    if not bucket:
        raise ConfigError(f"repository {url!r}: name the bucket, as in s3://bucket/prefix")
    endpoint = (
        settings.endpoint
        or environ.get("AWS_ENDPOINT_URL_S3")
        or environ.get("AWS_ENDPOINT_URL")
        or environ.get("AWS_ENDPOINT")
    )
    region = settings.region or environ.get("AWS_REGION") or environ.get("AWS_DEFAULT_REGION")
    config: S3Config = {}
    key_id, secret, token = _explicit_credentials(settings, environ)
    if key_id and secret:
        config.update(_static(key_id, secret, token))
    profile = settings.profile or (None if key_id else environ.get("AWS_PROFILE"))
    keyless_profile = None
    if profile:
        found = read_profile(profile)
        region = region or found.get("region")
        key_id, secret = found.get("aws_access_key_id"), found.get("aws_secret_access_key")
        if key_id and secret:
            config.update(_static(key_id, secret, found.get("aws_session_token")))
        else:
            keyless_profile = profile
    config["region"] = region or "us-east-1"
    if endpoint:
        check_endpoint(url, endpoint)
        config["endpoint"] = endpoint
        if settings.path_style is False:
            config["endpoint"] = _with_bucket_host(endpoint, bucket)
    if settings.path_style is False:
        config["virtual_hosted_style_request"] = True
    sse = settings.sse or ("aws:kms" if settings.sse_kms_key_id else None)
    if sse:
        config["server_side_encryption"] = _SSE_NAMES.get(sse.lower(), sse)
    if settings.sse_kms_key_id:
        config["sse_kms_key_id"] = settings.sse_kms_key_id
    allow_http = settings.allow_http
    if allow_http is None:
        allow_http = bool(endpoint and endpoint.lower().startswith("http://"))
    return S3Options(
        bucket, prefix, config["region"], endpoint, config, allow_http, keyless_profile
    )


def aws_profile(name: str) -> dict[str, str]:
    """A profile's settings as botocore reads them (AWS_CONFIG_FILE, AWS_SHARED_CREDENTIALS_FILE,
    ~/.aws/config and ~/.aws/credentials merged, the credentials file winning)."""
    import botocore.exceptions
    import botocore.session

    session = botocore.session.Session()
    files = " or ".join(
        str(Path(str(session.get_config_variable(which))).expanduser())
        for which in ("credentials_file", "config_file")
    )
    try:
        known = session.available_profiles
        if name not in known:
            raise ConfigError(
                f"AWS profile {name!r} is not in {files};"
                " run `aws configure --profile NAME` or unset AWS_PROFILE"
            )
        found = botocore.session.Session(profile=name).get_scoped_config()
    except botocore.exceptions.BotoCoreError as exc:
        raise ConfigError(f"cannot read AWS settings from {files}: {exc}") from exc
    return {str(k): v for k, v in found.items() if isinstance(v, str)}


class S3Storage(CloudStorage):
    kind: Kind = "s3"
    replaces_locked = True  # an overwrite adds a version; the locked one stays

    def __init__(
        self,
        url: str,
        settings: StorageSettings,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        options = resolve_s3(url, settings, os.environ if environ is None else environ, aws_profile)
        provider: S3CredentialProvider | None = None
        if options.profile:
            import boto3
            from obstore.auth.boto3 import Boto3CredentialProvider

            provider = Boto3CredentialProvider(boto3.Session(profile_name=options.profile))
        try:
            store = S3Store(
                options.bucket,
                prefix=options.prefix or None,
                config=options.config,
                client_options=client_options(settings, options.allow_http),
                retry_config=retry_config(settings),
                credential_provider=provider,
            )
        except Exception as exc:
            raise settings_error(url, exc, options.secrets) from exc
        super().__init__(
            url,
            store,
            settings,
            prefix=options.prefix,
            secrets=options.secrets,
            missing_container_codes=("NoSuchBucket",),
        )
        self.bucket = options.bucket
        self.prefix = options.prefix
        self.endpoint = options.endpoint
        self.region = options.region
        self._options = options

    def boto3_client(self) -> Any:
        """A boto3 S3 client with the same endpoint, region and credentials, for the bucket
        settings obstore cannot read (versioning, lifecycle, logging, object lock)."""
        import boto3
        import botocore.config

        options = self._options
        profile = options.profile
        session = boto3.Session(profile_name=profile) if profile else boto3.Session()
        path_style = self._settings.path_style
        if path_style is False:
            style = "virtual"
        else:
            style = "path" if self.endpoint or path_style else "auto"
        settings = self._settings
        return session.client(
            "s3",
            endpoint_url=self.endpoint,
            region_name=self.region,
            aws_access_key_id=options.config.get("access_key_id"),
            aws_secret_access_key=options.config.get("secret_access_key"),
            aws_session_token=options.config.get("session_token"),
            config=botocore.config.Config(
                connect_timeout=settings.connect_timeout,
                read_timeout=settings.timeout,
                retries={"max_attempts": 2, "mode": "standard"},
                s3={"addressing_style": style},
            ),
        )

    def bucket_facts(self, probe_key: str | None = None) -> BucketFacts:
        """Versioning, default encryption, lifecycle, access logging and object lock, read
        through boto3 (obstore has no bucket-level calls); each call needs its own permission,
        and one refused leaves the others readable."""
        base = BucketFacts(
            "s3",
            self.bucket,
            self.prefix,
            self.endpoint,
            storage_classes=STORAGE_CLASSES,
            sealed_classes=SEALED_CLASSES,
        )
        try:
            client = self.boto3_client()
        except Exception as exc:
            return base.all_unknown(f"cannot make an S3 client: {one_line(exc)}")
        found: dict[str, Any] = {}
        for field, call, permission, interpret in _BUCKET_READS:
            try:
                reply: dict[str, Any] = getattr(client, call)(Bucket=self.bucket)
            except Exception as exc:
                found[field] = refusal(exc, self.bucket, permission)
                continue
            found[field] = interpret(reply)
            if field == "lifecycle":
                found["rules"] = lifecycle_rules(reply)
        retention = found.get("retention")
        if isinstance(retention, Setting) and retention.state != "unknown":
            found["lockable"] = retention.state == "on"
        return dataclasses.replace(base, **found)

    # --- object lock (bika.storage.object_lock): S3 Object Lock retention, through boto3 ---

    def _key(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix else key

    def require_object_lock(self) -> None:
        try:
            reply = self.boto3_client().get_object_lock_configuration(Bucket=self.bucket)
            enabled = reply.get("ObjectLockConfiguration", {}).get("ObjectLockEnabled") == "Enabled"
        except Exception as exc:
            code = _error(exc)[0] or type(exc).__name__
            if code != "ObjectLockConfigurationNotFoundError":
                raise StorageError(
                    f"cannot read the object lock configuration of s3://{self.bucket}: {code};"
                    " the credentials need s3:GetBucketObjectLockConfiguration"
                ) from None
            enabled = False
        if not enabled:
            raise ConfigError(
                f"bucket s3://{self.bucket} does not have Object Lock enabled, so backups cannot"
                " be locked; create the bucket with it (aws s3api create-bucket"
                " --object-lock-enabled-for-bucket) or leave out --object-lock"
            )

    def retain(self, key: str, until: datetime, mode: str) -> None:
        try:
            self.boto3_client().put_object_retention(
                Bucket=self.bucket,
                Key=self._key(key),
                Retention={"Mode": mode.upper(), "RetainUntilDate": until},
            )
        except Exception as exc:
            code = _error(exc)[0] or type(exc).__name__
            raise StorageError(
                f"cannot lock {key} in s3://{self.bucket}: {code}; the credentials need"
                " s3:PutObjectRetention and the bucket Object Lock"
            ) from None

    def retained_until(self, key: str) -> datetime | None:
        try:
            # HEAD carries the lock (for s3:GetObjectRetention holders) and is what every
            # S3-compatible server implements
            reply = self.boto3_client().head_object(Bucket=self.bucket, Key=self._key(key))
        except Exception:
            return None  # gone, or not readable: not judged locked
        until = reply.get("ObjectLockRetainUntilDate")
        return until if isinstance(until, datetime) else None

    def _storage_class(self, storage_class: str) -> str:
        return storage_class.upper()

    def _hint(self, reply: ServerReply, exc: BaseException, name: str) -> str:
        code = reply.code or ""
        if code == "NoSuchBucket":
            endpoint = f" --endpoint-url {self.endpoint}" if self.endpoint else ""
            return f"; create the bucket first: aws s3 mb s3://{self.bucket}{endpoint}"
        if code == "InvalidObjectState":
            return (
                "; the object is in an archive storage class: restore it first with"
                f" aws s3api restore-object --bucket {self.bucket} --key {name}"
                " --restore-request Days=7, and retry once the restore has completed"
            )
        if code == "InvalidStorageClass":
            return "; use an S3 storage class such as STANDARD_IA, GLACIER_IR or DEEP_ARCHIVE"
        if code in _REGION_CODES or reply.status == 301:
            return "; the bucket is in another region: set AWS_REGION (or region) to it"
        if code in _AUTH_CODES or reply.status == 401:
            return _CREDENTIALS_HINT
        if code == "AccessDenied":
            return f"; these credentials may not do this: {self._permissions()}"
        if reply.status == 403:  # a HEAD's 403 has no body to tell bad keys from no right
            return f"{_CREDENTIALS_HINT}, and {self._permissions()}"
        if reply.status == 501 or code == "NotImplemented":
            return "; this S3-compatible server lacks a feature bika needs (conditional put?)"
        if reply.status is None:
            where = self.endpoint or "AWS S3"
            return f"; check that {where} is reachable and the endpoint/region are right"
        return ""

    def _permissions(self) -> str:
        return (
            "allow s3:ListBucket, s3:GetObject, s3:PutObject, s3:DeleteObject and"
            f" s3:AbortMultipartUpload on {self.bucket}"
        )


def _explicit_credentials(
    settings: StorageSettings, environ: Mapping[str, str]
) -> tuple[str | None, str | None, str | None]:
    if settings.access_key_id or settings.secret_access_key:
        return (
            reveal(settings.access_key_id),
            reveal(settings.secret_access_key),
            reveal(settings.session_token),
        )
    if settings.profile:
        return None, None, None
    return (
        environ.get("AWS_ACCESS_KEY_ID"),
        environ.get("AWS_SECRET_ACCESS_KEY"),
        environ.get("AWS_SESSION_TOKEN"),
    )


def _static(key_id: str, secret: str, token: str | None) -> S3Config:
    keys: S3Config = {"access_key_id": key_id, "secret_access_key": secret}
    if token:
        keys["session_token"] = token
    return keys


def _with_bucket_host(endpoint: str, bucket: str) -> str:
    """Virtual-hosted style wants the bucket in the endpoint's host name."""
    parts = urlsplit(endpoint)
    if parts.hostname and parts.hostname.startswith(f"{bucket}."):
        return endpoint
    return urlunsplit(parts._replace(netloc=f"{bucket}.{parts.netloc}"))


# --- bucket inspection: each reply read by a pure function (tests feed them recorded replies)

# S3 error codes that mean "this setting is simply not configured".
_NOT_SET = {
    "ServerSideEncryptionConfigurationNotFoundError",
    "NoSuchLifecycleConfiguration",
    "ObjectLockConfigurationNotFoundError",
}


def refusal(exc: BaseException, bucket: str, permission: str) -> Setting:
    """What a refused bucket-settings call means: off when unset, else unknown and why."""
    code, message = _error(exc)
    if code in _NOT_SET:
        return Setting("off", "not configured")
    if code in ("AccessDenied", "AllAccessDisabled"):
        return Setting("unknown", f"not allowed to read it ({permission})")
    if code in ("NotImplemented", "501", "MethodNotAllowed"):
        return Setting("unknown", "this S3-compatible server does not report it")
    if code == "NoSuchBucket":
        return Setting("unknown", f"the bucket {bucket} does not exist")
    return Setting("unknown", message)


def versioning(reply: dict[str, Any]) -> Setting:
    status = reply.get("Status")
    if status == "Enabled":
        mfa = ", MFA delete" if reply.get("MFADelete") == "Enabled" else ""
        return Setting("on", f"enabled{mfa}")
    return Setting("off", "suspended" if status == "Suspended" else "never enabled")


def encryption(reply: dict[str, Any]) -> Setting:
    rules = reply.get("ServerSideEncryptionConfiguration", {}).get("Rules", [])
    default = rules[0].get("ApplyServerSideEncryptionByDefault", {}) if rules else {}
    algorithm = default.get("SSEAlgorithm")
    key = default.get("KMSMasterKeyID")
    if not algorithm:
        return Setting("off", "no default rule")
    return Setting("on", f"{algorithm}" + (f" with key {key}" if key else ""))


def lifecycle_rules(reply: dict[str, Any]) -> tuple[LifecycleRule, ...]:
    return tuple(_rule(rule) for rule in reply.get("Rules", []))


def lifecycle(reply: dict[str, Any]) -> Setting:
    rules = lifecycle_rules(reply)
    return Setting("on" if rules else "off", f"{len(rules)} rule(s)")


def access_logging(reply: dict[str, Any]) -> Setting:
    target = reply.get("LoggingEnabled")
    if not target:
        return Setting("off", "off")
    return Setting("on", f"to s3://{target.get('TargetBucket')}/{target.get('TargetPrefix', '')}")


def object_lock(reply: dict[str, Any]) -> Setting:
    lock = reply.get("ObjectLockConfiguration", {})
    if lock.get("ObjectLockEnabled") != "Enabled":
        return Setting("off", "off")
    default = lock.get("Rule", {}).get("DefaultRetention", {})
    if not default:
        return Setting("on", "enabled, no default retention")
    span = f"{default['Days']} days" if "Days" in default else f"{default.get('Years')} years"
    return Setting("on", f"{default.get('Mode')} for {span}")


# (BucketFacts field, boto3 call, the IAM permission it needs, how to read its reply)
_BUCKET_READS: tuple[tuple[str, str, str, Callable[[dict[str, Any]], Setting]], ...] = (
    ("versioning", "get_bucket_versioning", "s3:GetBucketVersioning", versioning),
    ("encryption", "get_bucket_encryption", "s3:GetEncryptionConfiguration", encryption),
    ("lifecycle", "get_bucket_lifecycle_configuration", "s3:GetLifecycleConfiguration", lifecycle),
    ("logging", "get_bucket_logging", "s3:GetBucketLogging", access_logging),
    (
        "retention",
        "get_object_lock_configuration",
        "s3:GetBucketObjectLockConfiguration",
        object_lock,
    ),
)


def _rule(rule: dict[str, Any]) -> LifecycleRule:
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


def _error(exc: BaseException) -> tuple[str, str]:
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        error = response.get("Error", {})
        status = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        code = str(error.get("Code") or status or "")
        message = str(error.get("Message") or "")
        return code, f"HTTP {status}: {code}" + (f": {message}" if message else "")
    return "", one_line(exc)
