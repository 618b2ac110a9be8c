"""The two backends the lean WAL path speaks: a local folder and s3:// (obstore directly).

The same keys and bytes as bika.storage's backends (a local object is written to a `.tmp-`
file, fsynced, linked into place, the folder fsynced); what is missing here is only what
`wal push`/`wal fetch` never need (streaming, ranges, profiles resolved through boto3).
"""

from __future__ import annotations

import errno
import os

from bika.errors import ConfigError, ObjectExists, ObjectNotFound, StorageError
from bika.wal.settings import as_bool

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

TEMP_PREFIX = ".tmp-"  # as storage/local.py, so prune sees an interrupted write as a leftover
FOLDER_MODE = 0o700
FILE_MODE = 0o600


class Stored:
    __slots__ = ("key", "size")

    def __init__(self, key: str, size: int) -> None:
        self.key = key
        self.size = size


class WalStore:
    """What both backends offer (a plain base class: typing.Protocol costs start-up)."""

    url: str

    def list(self, prefix: str) -> list[Stored]:
        """Every object whose key starts with prefix. Raises StorageError when the storage
        could not answer (never an empty list for "could not ask")."""
        raise NotImplementedError

    def get(self, key: str) -> bytes:
        """Raises ObjectNotFound, or StorageError."""
        raise NotImplementedError

    def put_new(self, key: str, data: bytes) -> None:
        """Store durably, create-only: raises ObjectExists if the key is taken."""
        raise NotImplementedError


class LocalWalStore(WalStore):
    def __init__(self, root: str) -> None:
        self.root = os.path.abspath(os.path.expanduser(root))
        self.url = self.root

    def _fail(self, action: str, path: str, exc: OSError) -> StorageError:
        hint = ""
        if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
            hint = (
                f"; the OS user running this (uid {os.geteuid()}) must be allowed to write the"
                " repository: chown it to the server's OS user"
            )
        elif exc.errno == errno.ENOSPC:
            hint = "; free some space in the repository"
        return StorageError(f"cannot {action} {path}: {exc.strerror or exc}{hint}")

    def list(self, prefix: str) -> list[Stored]:
        folder, _, start = prefix.rpartition("/")
        where = os.path.join(self.root, folder)
        try:
            entries = list(os.scandir(where))
        except FileNotFoundError:
            if not os.path.isdir(self.root):
                raise StorageError(
                    f"repository {self.root} does not exist; check --repo / BIKA_REPO"
                ) from None
            return []
        except OSError as exc:
            raise self._fail("list", where, exc) from exc
        found = []
        for entry in entries:
            if entry.name.startswith(start) and not entry.name.startswith(TEMP_PREFIX):
                try:
                    if not entry.is_file():
                        continue
                    size = entry.stat().st_size
                except FileNotFoundError:
                    continue
                key = f"{folder}/{entry.name}" if folder else entry.name
                found.append(Stored(key, size))
        return sorted(found, key=lambda s: s.key)

    def get(self, key: str) -> bytes:
        path = os.path.join(self.root, key)
        try:
            with open(path, "rb") as handle:
                return handle.read()
        except FileNotFoundError:
            raise ObjectNotFound(f"{path} does not exist") from None
        except OSError as exc:
            raise self._fail("read", path, exc) from exc

    def put_new(self, key: str, data: bytes) -> None:
        path = os.path.join(self.root, key)
        if not os.path.isdir(self.root):
            raise StorageError(f"repository {self.root} does not exist; check --repo / BIKA_REPO")
        parent, name = os.path.split(path)
        tmp = os.path.join(parent, f"{TEMP_PREFIX}{name}.{os.urandom(4).hex()}")
        try:
            made = _make_folders(parent)
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
            try:
                os.fchmod(fd, FILE_MODE)
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view) :]
                os.fsync(fd)
            finally:
                os.close(fd)
            try:
                os.link(tmp, path)
            except FileExistsError:
                # the other writer may not have synced the folder yet: "exists" must mean
                # durably, since a push reports it as stored
                _fsync_dir(parent)
                raise ObjectExists(f"{path} already exists") from None
            _fsync_dir(parent)
            for folder in made:
                _fsync_dir(os.path.dirname(folder))
        except OSError as exc:
            raise self._fail("write", path, exc) from exc
        finally:
            try:  # noqa: SIM105 - contextlib is an import every push would pay for
                os.unlink(tmp)
            except OSError:
                pass


def _make_folders(folder: str) -> list[str]:
    made = []
    missing = []
    while not os.path.exists(folder):
        missing.append(folder)
        folder = os.path.dirname(folder)
    for item in reversed(missing):
        try:
            os.mkdir(item, FOLDER_MODE)
            made.append(item)
        except FileExistsError:
            pass
    return made


def _fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class S3WalStore(WalStore):
    def __init__(self, url: str, storage: dict[str, Any]) -> None:
        from datetime import timedelta
        from urllib.parse import urlsplit

        from obstore.store import S3Store

        parts = urlsplit(url)
        if not parts.netloc:
            raise ConfigError(f"repository {url!r}: name the bucket, as in s3://bucket/prefix")
        self.url = url
        environ = os.environ
        endpoint = (
            storage.get("endpoint")
            or environ.get("AWS_ENDPOINT_URL_S3")
            or environ.get("AWS_ENDPOINT_URL")
            or environ.get("AWS_ENDPOINT")
        )
        config: dict[str, Any] = {
            "region": storage.get("region")
            or environ.get("AWS_REGION")
            or environ.get("AWS_DEFAULT_REGION")
            or "us-east-1"
        }
        for name in ("access_key_id", "secret_access_key", "session_token", "sse_kms_key_id"):
            if storage.get(name):
                config[name] = storage[name]
        if storage.get("sse"):
            sse = str(storage["sse"]).lower()
            config["server_side_encryption"] = "aws:kms" if "kms" in sse else "AES256"
        if endpoint:
            config["endpoint"] = endpoint
        if as_bool(storage.get("path_style")) is False:
            config["virtual_hosted_style_request"] = True
        allow_http = as_bool(storage.get("allow_http"))
        if allow_http is None:
            allow_http = bool(endpoint and str(endpoint).lower().startswith("http://"))
        self._secrets = tuple(
            str(config[k]) for k in ("secret_access_key", "session_token") if k in config
        )
        try:
            self._store = S3Store(
                parts.netloc,
                prefix=parts.path.strip("/") or None,
                config=config,  # type: ignore[arg-type]
                client_options={
                    "allow_http": allow_http,
                    "connect_timeout": timedelta(seconds=float(storage.get("connect_timeout", 10))),
                    "timeout": timedelta(seconds=float(storage.get("timeout", 120))),
                },
                retry_config={
                    "max_retries": int(storage.get("max_retries", 10)),
                    "retry_timeout": timedelta(seconds=60),
                    "backoff": {
                        "init_backoff": timedelta(milliseconds=100),
                        "max_backoff": timedelta(seconds=15),
                        "base": 2,
                    },
                },
            )
        except Exception as exc:
            raise ConfigError(f"repository {url!r}: {self._said(exc)}") from None

    def _said(self, exc: BaseException) -> str:
        text = " ".join(str(exc).split("\n\nDebug source:", 1)[0].split())
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text[:300]

    def _fail(self, action: str, key: str, exc: BaseException) -> StorageError:
        return StorageError(f"cannot {action} {self.url}/{key}: {self._said(exc)}")

    def list(self, prefix: str) -> list[Stored]:
        import obstore

        folder = prefix.rsplit("/", 1)[0] if "/" in prefix else ""
        found = []
        try:
            for batch in obstore.list(self._store, folder or None, chunk_size=1000):
                for meta in batch:
                    key = str(meta["path"])
                    if key.startswith(prefix):
                        found.append(Stored(key, int(meta["size"])))
        except Exception as exc:
            raise self._fail("list", prefix, exc) from exc
        return sorted(found, key=lambda s: s.key)

    def get(self, key: str) -> bytes:
        import obstore

        try:
            return obstore.get(self._store, key).bytes().to_bytes()
        except FileNotFoundError:
            raise ObjectNotFound(f"{self.url}/{key} does not exist") from None
        except Exception as exc:
            raise self._fail("read", key, exc) from exc

    def put_new(self, key: str, data: bytes) -> None:
        import obstore
        from obstore.exceptions import AlreadyExistsError, PreconditionError

        try:
            obstore.put(self._store, key, data, mode="create", use_multipart=False)
        except (AlreadyExistsError, PreconditionError):
            raise ObjectExists(f"{self.url}/{key} already exists") from None
        except Exception as exc:
            raise self._fail("write", key, exc) from exc


def open_store(url: str, storage: dict[str, Any]) -> WalStore:
    if "://" not in url:
        return LocalWalStore(url)
    scheme = url.split("://", 1)[0].lower()
    if scheme == "file":
        return LocalWalStore(url.split("://", 1)[1])
    if scheme == "s3":
        return S3WalStore(url, storage)
    raise ConfigError(
        f"repository {url!r}: wal push/fetch support local folders and s3:// repositories;"
        f" {scheme}:// is not supported for WAL archiving yet"
    )
