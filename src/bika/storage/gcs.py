"""Google Cloud Storage for gs://bucket/prefix, through google-cloud-storage's JSON API.

Streams resumable uploads. Not obstore: its XML-API writes fail against fake-gcs-server.

Credentials: settings.gcs_credentials_file or GOOGLE_APPLICATION_CREDENTIALS, else application
default credentials (gcloud auth application-default login, workload identity, the metadata
server). An endpoint from STORAGE_EMULATOR_HOST, or any http:// endpoint, is an emulator and
gets anonymous credentials. Create-only writes send ifGenerationMatch=0, which GCS enforces at
commit for simple and resumable uploads alike (fake-gcs-server only for simple ones, hence the
shared pre-commit check in transfer.py).
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

import google.auth
import google.auth.exceptions
import google.oauth2.credentials
from google.api_core import exceptions as api_exceptions
from google.api_core.retry import Retry
from google.auth.credentials import AnonymousCredentials, Credentials
from google.cloud import storage  # type: ignore[import-untyped]
from google.cloud.storage.fileio import BlobWriter  # type: ignore[import-untyped]
from google.cloud.storage.retry import DEFAULT_RETRY  # type: ignore[import-untyped]
from google.oauth2 import service_account

from bika.errors import ConfigError, ObjectNotFound, StorageError
from bika.storage import ObjectInfo, Source, StorageSettings
from bika.storage.cloud import check_endpoint, check_key, one_line
from bika.storage.facts import BucketFacts, Kind, LifecycleRule, Setting
from bika.storage.transfer import RangedReader, Upload, overwrite_refused

STORAGE_CLASSES = frozenset({"STANDARD", "NEARLINE", "COLDLINE", "ARCHIVE"})
# bika's object-lock modes in GCS's words: a Locked retention can only be extended; an Unlocked
# one can be shortened or removed by holders of storage.objects.overrideUnlockedRetention
RETENTION_MODES = {"compliance": "Locked", "governance": "Unlocked"}
# none sealed: GCS ARCHIVE reads at once (at a price)
_SCOPES = ["https://www.googleapis.com/auth/devstorage.read_write"]
_RESUMABLE_MULTIPLE = 256 * 1024
_JSON_MESSAGE = re.compile(r'"message"\s*:\s*"([^"]+)"')
_URL_QUERY = re.compile(r"(https?://[^\s?]+)\?\S*")
_ERRNO = re.compile(r"\[Errno -?\d+\] ([^'\")\]]+)")
_GAVE_UP = re.compile(r"Timeout of ([\d.]+)s exceeded")
_CREDENTIALS_HINT = (
    "; check the credentials: set GOOGLE_APPLICATION_CREDENTIALS to a service-account key"
    " file, or run `gcloud auth application-default login`"
)


@dataclass(frozen=True)
class GCSOptions:
    """What a GCSStorage is built from: resolve_gcs's answer, before any request."""

    bucket: str
    prefix: str
    endpoint: str | None
    anonymous: bool
    """An emulator: no credentials at all."""
    credentials_file: str | None
    """A service-account or authorized-user file; None: application default credentials."""
    project: str | None


def resolve_gcs(url: str, settings: StorageSettings, environ: Mapping[str, str]) -> GCSOptions:
    """Where and how to reach a gs:// URL: settings, then STORAGE_EMULATOR_HOST (an emulator,
    reached anonymously, as is any http:// endpoint without a credentials file) and
    GOOGLE_CLOUD_PROJECT. Pure."""
    parts = urlsplit(url)
    if not parts.netloc:
        raise ConfigError(f"repository {url!r}: name the bucket, as in gs://bucket/prefix")
    emulator = environ.get("STORAGE_EMULATOR_HOST")
    endpoint = settings.endpoint or emulator
    if endpoint and "://" not in endpoint:
        endpoint = f"http://{endpoint}"
    endpoint = check_endpoint(url, endpoint).rstrip("/") if endpoint else None
    # An emulator takes no credentials; a credentials file asks for them anyway.
    anonymous = bool(
        endpoint
        and not settings.gcs_credentials_file
        and (endpoint.startswith("http://") or (emulator and not settings.endpoint))
    )
    return GCSOptions(
        parts.netloc,
        parts.path.strip("/"),
        endpoint,
        anonymous,
        settings.gcs_credentials_file,
        settings.gcs_project or environ.get("GOOGLE_CLOUD_PROJECT"),
    )


class GCSStorage:
    url: str
    kind: Kind = "gcs"
    replaces_locked = False  # GCS refuses to replace a retained object

    def __init__(
        self, url: str, settings: StorageSettings, environ: Mapping[str, str] | None = None
    ) -> None:
        options = resolve_gcs(url, settings, os.environ if environ is None else environ)
        self.url = url
        self.bucket_name = options.bucket
        self.prefix = options.prefix
        self._prefix = f"{options.prefix}/" if options.prefix else ""
        self._settings = settings
        self._options = options
        self.endpoint = options.endpoint
        self._part_size = -(-settings.part_size // _RESUMABLE_MULTIPLE) * _RESUMABLE_MULTIPLE
        self._retry: Retry = DEFAULT_RETRY.with_timeout(settings.retry_timeout).with_delay(
            initial=0.1, maximum=15.0, multiplier=2.0
        )
        self._timeout = (settings.connect_timeout, settings.timeout)
        self._client: Any = None

    # --- client, made on first use so that opening a storage never fails on credentials ---

    def _bucket(self) -> Any:
        if self._client is None:
            self._client = self._make_client()
        return self._client.bucket(self.bucket_name)

    def _make_client(self) -> Any:
        options = self._options
        credentials: Credentials
        project = options.project
        if options.anonymous:
            credentials = AnonymousCredentials()  # type: ignore[no-untyped-call]
            project = project or "bika"
        else:
            path = options.credentials_file
            try:
                if path:
                    credentials, found = _credentials_from_file(path)
                else:
                    credentials, found = google.auth.default(scopes=_SCOPES)
            except (google.auth.exceptions.GoogleAuthError, ValueError, OSError) as exc:
                raise StorageError(
                    f"cannot open {self.url}: no usable Google credentials"
                    f" ({_first_line(exc)}){_CREDENTIALS_HINT}"
                ) from exc
            project = project or found
        endpoint = {"api_endpoint": self.endpoint} if self.endpoint else None
        return storage.Client(project=project, credentials=credentials, client_options=endpoint)

    def bucket_facts(self, probe_key: str | None = None) -> BucketFacts:
        """Versioning, default KMS key, lifecycle, logging and retention policy from the
        bucket's metadata (one call; needs storage.buckets.get)."""
        base = BucketFacts(
            "gcs", self.bucket_name, self.prefix, self.endpoint, storage_classes=STORAGE_CLASSES
        )
        try:
            bucket = self._bucket().client.get_bucket(
                self.bucket_name, retry=self._retry, timeout=self._timeout
            )
        except Exception as exc:
            code = getattr(exc, "code", None)
            if code == 403:
                why = "not allowed to read the bucket's settings (storage.buckets.get)"
            elif code == 404:
                why = f"the bucket {self.bucket_name} does not exist"
            else:
                why = one_line(exc)
            return base.all_unknown(why)
        return bucket_settings(base, bucket)

    # --- object lock (bika.storage.object_lock): GCS object retention (Object Retention Lock) ---

    def _get_bucket(self, why: str) -> Any:
        try:
            return self._bucket().client.get_bucket(
                self.bucket_name, retry=self._retry, timeout=self._timeout
            )
        except Exception as exc:
            status, text = _reply(exc)
            hint = "; the credentials need storage.buckets.get" if status == 403 else ""
            raise StorageError(f"cannot {why} of gs://{self.bucket_name}: {text}{hint}") from None

    def require_object_lock(self) -> None:
        bucket = self._get_bucket("read the object retention setting")
        if bucket.object_retention_mode != "Enabled":
            raise ConfigError(
                f"bucket gs://{self.bucket_name} does not have object retention enabled, so"
                " backups cannot be locked; create the bucket with it (gcloud storage buckets"
                f" create gs://{self.bucket_name} --enable-per-object-retention), enable it on"
                " the bucket's Protection tab in the console, or leave out --object-lock"
            )

    def retain(self, key: str, until: datetime, mode: str) -> None:
        blob = self._blob(key)
        retention = blob.retention
        retention.mode = RETENTION_MODES[mode]
        retention.retain_until_time = until
        retention.pop("retentionExpirationTime", None)  # the server's to say, not ours to send
        try:
            blob.patch(retry=self._retry, timeout=self._timeout)
        except Exception as exc:
            status, text = _reply(exc)
            hint = (
                "; the credentials need storage.objects.setRetention and storage.objects.update,"
                " and the bucket object retention"
                if status in (400, 403)
                else ""
            )
            raise StorageError(f"cannot lock {key} in {self.url}: {text}{hint}") from None

    def retained_until(self, key: str) -> datetime | None:
        """The object's own retention, or the bucket retention policy's expiry if later."""
        try:
            blob = self._find(key, "stat")
        except StorageError:
            return None  # not readable: not judged locked
        if blob is None:
            return None
        times = [
            t
            for t in (blob.retention.retain_until_time, blob.retention_expiration_time)
            if isinstance(t, datetime)
        ]
        return max(times) if times else None

    def _blob(self, key: str) -> Any:
        return self._bucket().blob(self._prefix + check_key(self.url, key))

    # --- errors ---

    def _fail(self, action: str, key: str, exc: BaseException) -> StorageError:
        if isinstance(exc, StorageError):
            return exc
        status, text = _reply(exc)
        hint = ""
        if status == 401 or isinstance(exc, google.auth.exceptions.RefreshError):
            hint = _CREDENTIALS_HINT
        elif status == 403:
            hint = (
                "; these credentials may not do this: grant roles/storage.objectAdmin"
                f" on gs://{self.bucket_name}"
            )
        elif status == 404 and action in ("write", "list"):
            hint = (
                f"; the bucket gs://{self.bucket_name} does not exist: create it with"
                f" gcloud storage buckets create gs://{self.bucket_name}"
            )
        elif status == 400 and "class" in text.lower():
            hint = "; use a GCS storage class: STANDARD, NEARLINE, COLDLINE or ARCHIVE"
        elif status is None:
            where = self.endpoint or "storage.googleapis.com"
            hint = f"; check that {where} is reachable"
        where = f"{key} in {self.url}" if key else self.url
        return StorageError(f"cannot {action} {where}: {text}{hint}")

    def _refuse(self, key: str) -> StorageError:
        return overwrite_refused(self.url, key)

    # --- the protocol ---

    @contextmanager
    def create(
        self, key: str, *, overwrite: bool = False, storage_class: str | None = None
    ) -> Iterator[Upload]:
        blob = self._blob(key)
        if storage_class:
            blob.storage_class = storage_class.upper()
        generation = None if overwrite else 0

        def put_whole(data: bytes) -> None:
            try:
                blob.upload_from_string(
                    data,
                    content_type="application/octet-stream",
                    if_generation_match=generation,
                    retry=self._retry,
                    timeout=self._timeout,
                )
            except api_exceptions.PreconditionFailed as exc:
                raise self._refuse(key) from exc

        def put_stream(chunks: Iterator[bytes]) -> None:
            writer = BlobWriter(
                blob,
                chunk_size=self._part_size,
                ignore_flush=True,
                retry=self._retry,
                content_type="application/octet-stream",
                if_generation_match=generation,
                timeout=self._timeout,
            )
            try:
                for chunk in chunks:
                    writer.write(chunk)
            except BaseException as exc:
                # Cancel the resumable session so nothing is stored; should that fail too,
                # GCS drops the unfinished session after a week.
                with contextlib.suppress(Exception):
                    writer.terminate()
                if _reply(exc)[0] == 412:  # GCS checks ifGenerationMatch=0 at the start too
                    raise self._refuse(key) from exc
                raise
            try:
                writer.close()
            except Exception as exc:
                if _reply(exc)[0] == 412:  # and at the commit, atomically
                    raise self._refuse(key) from exc
                raise

        upload = Upload(
            part_size=self._part_size,
            put_whole=put_whole,
            put_stream=put_stream,
            exists=lambda: self._find(key, "write") is not None,
            refuse=lambda: self._refuse(key),
            fail=lambda exc: self._fail("write", key, exc),
            overwrite=overwrite,
        )
        with upload.writing():
            yield upload

    @contextmanager
    def open(self, key: str, start: int = 0, length: int | None = None) -> Iterator[Source]:
        if length is not None and length <= self._part_size:
            # one request, no metadata read first: a manifest's or an archive header's read
            yield io.BytesIO(self._read_range(key, start, length))
            return
        blob = self._find(key, "read")
        if blob is None:
            raise ObjectNotFound(f"{key} does not exist in {self.url}")
        size = int(blob.size or 0)
        # The blob carries its generation now, so every range reads that same version.
        reader = RangedReader(
            lambda begin, count: self._download(blob, key, begin, count),
            size if length is None else min(size, start + length),
            self._part_size,
            start,
        )
        try:
            yield reader
        finally:
            reader.close()

    def _download(self, blob: Any, key: str, start: int, length: int) -> bytes:
        try:
            data: bytes = blob.download_as_bytes(
                start=start,
                end=start + length - 1,
                raw_download=True,
                checksum=None,
                retry=self._retry,
                timeout=self._timeout,
            )
        except api_exceptions.NotFound as exc:
            raise ObjectNotFound(f"{key} does not exist in {self.url}") from exc
        except Exception as exc:
            raise self._fail("read", key, exc) from exc
        return data

    def _read_range(self, key: str, start: int, length: int) -> bytes:
        if length <= 0:
            check_key(self.url, key)
            return b""
        try:
            return self._download(self._blob(key), key, start, length)
        except ObjectNotFound:
            raise
        except StorageError as exc:
            if isinstance(exc.__cause__, api_exceptions.RequestRangeNotSatisfiable):
                info = self.stat(key)
                if info is None:
                    raise ObjectNotFound(f"{key} does not exist in {self.url}") from exc
                if start >= info.size:
                    return b""
            raise

    def list(self, prefix: str = "", *, start_after: str | None = None) -> Iterator[ObjectInfo]:
        found: list[ObjectInfo] = []
        try:
            client = self._bucket().client
            for blob in client.list_blobs(
                self.bucket_name,
                prefix=self._prefix + prefix,
                start_offset=self._prefix + start_after if start_after else None,
                retry=self._retry,
                timeout=self._timeout,
            ):
                key = blob.name[len(self._prefix) :]
                if start_after is None or key > start_after:
                    found.append(_info(key, blob))
        except Exception as exc:
            raise self._fail("list", prefix or "objects", exc) from exc
        yield from sorted(found, key=lambda info: info.key)

    def folders(self, prefix: str) -> Iterator[str]:
        start = self._prefix + prefix
        try:
            client = self._bucket().client
            pages = client.list_blobs(
                self.bucket_name,
                prefix=start,
                delimiter="/",
                retry=self._retry,
                timeout=self._timeout,
            )
            for _ in pages:
                pass  # the prefixes are gathered while the pages are read
            names = sorted(str(p)[len(start) :].rstrip("/") for p in pages.prefixes)
        except Exception as exc:
            raise self._fail("list", prefix or "objects", exc) from exc
        yield from names

    def _find(self, key: str, action: str) -> Any:
        path = self._prefix + check_key(self.url, key)
        try:
            return self._bucket().get_blob(path, retry=self._retry, timeout=self._timeout)
        except Exception as exc:
            raise self._fail(action, key, exc) from exc

    def stat(self, key: str) -> ObjectInfo | None:
        blob = self._find(key, "stat")
        return None if blob is None else _info(key, blob)

    def leftovers(self, prefix: str = "") -> Iterator[ObjectInfo]:
        return iter(())

    def delete(self, key: str) -> None:
        blob = self._blob(key)
        try:
            blob.delete(retry=self._retry, timeout=self._timeout)
        except api_exceptions.NotFound:
            return
        except Exception as exc:
            raise self._fail("delete", key, exc) from exc


def bucket_settings(base: BucketFacts, bucket: Any) -> BucketFacts:
    """What google-cloud-storage's Bucket (its metadata, no further calls) says."""
    versioning = (
        Setting("on", "enabled") if bucket.versioning_enabled else Setting("off", "never enabled")
    )
    kms = bucket.default_kms_key_name
    encryption = Setting(
        "on", f"customer-managed key {kms}" if kms else "Google-managed keys (always on)"
    )
    rules = tuple(_rule(i, rule) for i, rule in enumerate(bucket.lifecycle_rules or []))
    lifecycle = Setting("on" if rules else "off", f"{len(rules)} rule(s)")
    log = bucket.get_logging()
    logging = (
        Setting("on", f"to gs://{log.get('logBucket')}/{log.get('logObjectPrefix', '')}")
        if log
        else Setting("off", "off")
    )
    return replace(
        base,
        versioning=versioning,
        encryption=encryption,
        lifecycle=lifecycle,
        rules=rules,
        logging=logging,
        retention=retention_setting(bucket),
        lockable=bucket.object_retention_mode == "Enabled",
    )


def retention_setting(bucket: Any) -> Setting:
    """Object retention (what bika's --object-lock sets per backup object) and the bucket
    retention policy (Bucket Lock, which holds every object, bika's locks and index too)."""
    found = []
    if bucket.object_retention_mode == "Enabled":
        found.append("object retention enabled (bika init --object-lock can lock backups)")
    period = bucket.retention_period
    if period:
        locked = ", locked" if bucket.retention_policy_locked else ""
        found.append(f"bucket retention policy {int(period) // 86400} days{locked}")
    if not found:
        return Setting("off", "no object retention, no retention policy")
    return Setting("on", "; ".join(found))


def _rule(index: int, rule: Any) -> LifecycleRule:
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


def _info(key: str, blob: Any) -> ObjectInfo:
    return ObjectInfo(key, int(blob.size or 0), blob.updated, blob.etag)


def _credentials_from_file(path: str) -> tuple[Credentials, str | None]:
    """A service-account key or an authorized-user file (what gcloud writes)."""
    with open(path, encoding="utf-8") as handle:
        info = json.load(handle)
    kind = info.get("type") if isinstance(info, dict) else None
    if kind == "service_account":
        account = service_account.Credentials.from_service_account_info(  # type: ignore[no-untyped-call]
            info, scopes=_SCOPES
        )
        return account, info.get("project_id")
    if kind == "authorized_user":
        user = google.oauth2.credentials.Credentials.from_authorized_user_info(  # type: ignore[no-untyped-call]
            info, _SCOPES
        )
        return user, info.get("quota_project_id")
    raise ValueError(
        f"{path} holds {kind!r} credentials; give a service_account or authorized_user file,"
        " or set GOOGLE_APPLICATION_CREDENTIALS for other kinds"
    )


def _reply(exc: BaseException) -> tuple[int | None, str]:
    """HTTP status and one line of what the server (or the network) said."""
    status: int | None = None
    if isinstance(exc, api_exceptions.GoogleAPICallError):
        status = exc.code
        match = _JSON_MESSAGE.search(str(exc))
        message = match.group(1) if match else (exc.message or "").split(":")[0]
        text = f"HTTP {status}: {message}" if status else message
    else:
        response = getattr(exc, "response", None)
        code = getattr(response, "status_code", None)
        if isinstance(code, int):
            status = code
            body = getattr(response, "text", "") or ""
            match = _JSON_MESSAGE.search(body)
            text = f"HTTP {code}" + (f": {match.group(1)}" if match else "")
        else:
            text = _network_failure(str(exc)) or _first_line(exc)
    return status, " ".join(_URL_QUERY.sub(r"\1", text).split())


def _network_failure(text: str) -> str | None:
    """'connection failed: Connection refused' out of requests' nested error text."""
    reason = _ERRNO.findall(text)
    if reason:
        summary = f"connection failed: {reason[-1].strip()}"
    elif "timed out" in text.lower():
        summary = "connection timed out"
    else:
        return None
    gave_up = _GAVE_UP.search(text)
    return summary + (f" (gave up after {gave_up.group(1)}s)" if gave_up else "")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
