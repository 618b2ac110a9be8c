"""The Storage protocol every backend implements, the helpers written once on top of it
(read_bytes, write_bytes, read_range, bucket_facts), the one StorageSettings type, and opening a
storage from a URL.

A storage is a flat key space under a prefix; keys use '/' separators. Objects are written once.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Protocol, runtime_checkable

from pydantic import BaseModel, ByteSize, ConfigDict, Field, SecretStr

from bika.storage.facts import BucketFacts, Kind


@dataclass(frozen=True)
class ObjectInfo:
    key: str
    size: int
    modified: datetime | None = None
    """When the object was written (cloud: its upload started or completed), timezone-aware;
    None where a backend cannot say. Prune judges leftovers' age by it."""
    etag: str | None = None
    """The storage's tag for this version of the object (S3/Azure ETag, GCS etag), None where
    a backend has none: with size (else modified), what tells a rewritten object from the one
    cached in the repository's index."""


class Sink(Protocol):
    """Where a streamed write goes: write() chunks; the owning context commits or aborts."""

    def write(self, data: bytes) -> int: ...


class Source(Protocol):
    """A streamed read: read(n) returns up to n bytes, b'' at the end."""

    def read(self, n: int = -1) -> bytes: ...


class Storage(Protocol):
    """What a backend must do: stream an object in (create) and out (open, whole or a range),
    list, stat and delete. Everything else (read_bytes, write_bytes, read_range below,
    doctor's bucket inspection) is written once on top of these, or is a backend's own."""

    url: str
    """Where it points, for messages; never holds a credential."""
    kind: Kind
    """Which backend this is, for messages and doctor's fixes (never an isinstance)."""

    def create(
        self, key: str, *, overwrite: bool = False, storage_class: str | None = None
    ) -> AbstractContextManager[Sink]:
        """Stream a new object. It becomes visible only when the context exits cleanly; an
        exception inside the context aborts it and leaves nothing (or an orphan part that
        the backend's own cleanup removes). Without overwrite, an existing key raises
        ObjectExists at commit at the latest."""
        ...

    def open(
        self, key: str, start: int = 0, length: int | None = None
    ) -> AbstractContextManager[Source]:
        """Stream an object's bytes from start, length of them at most (None: to the end); a
        range past the end reads as b''. Raises ObjectNotFound."""
        ...

    def list(self, prefix: str = "", *, start_after: str | None = None) -> Iterator[ObjectInfo]:
        """Every object whose key starts with prefix, in key order; with start_after, only
        those whose key sorts after it (the storage skips the others without listing them)."""
        ...

    def folders(self, prefix: str) -> Iterator[str]:
        """The folders right under prefix (which ends in '/'), in order: each name that some
        key continues from prefix with, up to its next '/'. A folder of many objects costs as
        much as one (S3's common prefixes); a local disk's empty folder may be one too."""
        ...

    def stat(self, key: str) -> ObjectInfo | None: ...

    def delete(self, key: str) -> None:
        """Remove an object; removing a missing one is not an error. A key from leftovers()
        is removed the same way."""
        ...

    def leftovers(self, prefix: str = "") -> Iterator[ObjectInfo]:
        """What interrupted writes left under prefix that list() does not show: a local
        disk's temp files (`.tmp-*`) and empty folders (keys ending in '/'). Clouds abort
        failed uploads, so theirs is empty (an upload that could not even be aborted is for
        the bucket's lifecycle rule)."""
        ...


@runtime_checkable
class Inspectable(Protocol):
    """A backend that can read its bucket's protections for `bika doctor` (the clouds)."""

    def bucket_facts(self, probe_key: str | None = None) -> BucketFacts:
        """Versioning, encryption, lifecycle, logging and retention, each on, off or unknown
        (with why); never raises. probe_key names an object just written (Azure tells
        versioning from it)."""
        ...


_FIRST_READ = 1 << 20


def read_bytes(storage: Storage, key: str) -> bytes:
    """A whole (small) object: bika.json, a manifest, an event, a lock. Objects up to 1 MiB cost
    one request (a ranged read asks no size first); the rest of a larger one a second."""
    with storage.open(key, 0, _FIRST_READ) as source:
        head = source.read()
    if len(head) < _FIRST_READ:
        return head
    with storage.open(key, _FIRST_READ) as source:
        return head + source.read()


def read_range(storage: Storage, key: str, start: int, length: int) -> bytes:
    """Up to length bytes from start; b'' past the end."""
    with storage.open(key, start, length) as source:
        return source.read()


def write_bytes(storage: Storage, key: str, data: bytes, *, overwrite: bool = False) -> None:
    """A whole (small) object, create-only unless overwrite."""
    with storage.create(key, overwrite=overwrite) as sink:
        sink.write(data)


def bucket_facts(storage: Storage, probe_key: str | None = None) -> BucketFacts | None:
    """The settings of the bucket or container a storage lives in; None for local disk."""
    return storage.bucket_facts(probe_key) if isinstance(storage, Inspectable) else None


_MIN_PART = 256 * 1024


class StorageSettings(BaseModel):
    """How to reach an off-site storage: the [storage] table of bika.toml validates into it.
    Every field left None falls back to the cloud's usual environment variables and credential
    chain, so StorageSettings() means "as the CLIs would". Secrets are SecretStr, so a settings
    object can be printed or logged; reveal() gives a backend the value."""

    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)

    endpoint: str | None = None
    """S3-compatible endpoint (B2, R2, MinIO, Wasabi), Azure blob endpoint or GCS API/emulator
    URL. Default: AWS_ENDPOINT_URL_S3 / AWS_ENDPOINT_URL, the Azure connection string's
    BlobEndpoint, STORAGE_EMULATOR_HOST."""
    region: str | None = None
    """S3 region. Default: AWS_REGION / AWS_DEFAULT_REGION, else us-east-1."""
    path_style: bool | None = None
    """S3 path-style addressing (endpoint/bucket/key); False asks for virtual-hosted style."""
    allow_http: bool | None = None
    """Allow a plain-http endpoint. Default: yes when the endpoint itself says http://."""
    profile: str | None = None
    """AWS profile in ~/.aws/credentials and ~/.aws/config. Default: AWS_PROFILE."""
    access_key_id: SecretStr | None = None
    """S3 access key id. Default: AWS_ACCESS_KEY_ID, the profile, the instance's role."""
    secret_access_key: SecretStr | None = None
    session_token: SecretStr | None = None
    sse: str | None = None
    """S3 server-side encryption: "SSE-S3" (AES256) or "SSE-KMS" (aws:kms)."""
    sse_kms_key_id: str | None = None
    """KMS key id or ARN for SSE-KMS; implies sse="aws:kms"."""
    azure_account: str | None = None
    azure_key: SecretStr | None = None
    azure_sas: SecretStr | None = None
    azure_connection_string: SecretStr | None = None
    """Default: AZURE_STORAGE_CONNECTION_STRING."""
    gcs_credentials_file: str | None = None
    """Service-account key file. Default: GOOGLE_APPLICATION_CREDENTIALS, then application
    default credentials."""
    gcs_project: str | None = None
    part_size: Annotated[ByteSize, Field(ge=_MIN_PART)] = ByteSize(8 * 1024 * 1024)
    """Multipart / block / resumable chunk size: bytes, or a size such as "16MiB" (MiB = 2**20
    bytes; MB = 10**6). An upload holds about part_size times (upload_concurrency + 2) in memory
    (8 MiB x 4: ~50 MB); S3 allows 10,000 parts, so 8 MiB parts carry objects up to 80 GB:
    raise it for larger backups."""
    upload_concurrency: int = Field(default=4, ge=1, le=64)
    max_retries: int = Field(default=10, ge=0)
    """Transient failures (5xx, 429, resets) are retried with exponential backoff."""
    retry_timeout: float = Field(default=180.0, gt=0)
    """Seconds after which a failing request is no longer retried."""
    connect_timeout: float = Field(default=10.0, gt=0)
    timeout: float = Field(default=120.0, gt=0)
    """Seconds one request (one part, one ranged read) may take."""


def reveal(secret: SecretStr | None) -> str | None:
    """A secret setting's value, for the one call that hands it to a cloud client."""
    return secret.get_secret_value() if secret is not None else None


def open_storage(url: str, settings: StorageSettings | None = None) -> Storage:
    """The storage a repository URL or local path names: a local path or file://, s3://,
    gs://, az://container/prefix or azure://account/container/prefix."""
    from bika.errors import ConfigError
    from bika.storage.local import LocalStorage

    if "://" not in url:
        return LocalStorage(url)
    scheme = url.split("://", 1)[0].lower()
    settings = settings or StorageSettings()
    if scheme == "file":
        return LocalStorage(url.split("://", 1)[1])
    if scheme == "s3":
        from bika.storage.s3 import S3Storage

        return S3Storage(url, settings)
    if scheme in ("az", "azure"):
        from bika.storage.azure import AzureStorage

        return AzureStorage(url, settings)
    if scheme == "gs":
        from bika.storage.gcs import GCSStorage

        return GCSStorage(url, settings)
    raise ConfigError(
        f"repository {url!r}: unsupported scheme {scheme!r}; use a local path, s3://bucket/prefix,"
        " gs://bucket/prefix, az://container/prefix or azure://account/container/prefix"
    )
