"""The Storage protocol over an obstore object store; s3.py and azure.py configure one each.

Also turns obstore's multi-line errors into bika's one-line StorageError messages.

The subclasses only build the obstore store and say what to do about a backend's error codes
(_hint). Keys are relative to the repository's prefix, which the store itself applies.
"""

from __future__ import annotations

import io
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import obstore
from obstore.exceptions import (
    AlreadyExistsError,
    PermissionDeniedError,
    PreconditionError,
    UnauthenticatedError,
)

from bika.errors import ConfigError, ObjectNotFound, StorageError
from bika.storage import ObjectInfo, Source, StorageSettings
from bika.storage.facts import Kind
from bika.storage.transfer import RangedReader, Upload, overwrite_refused

if TYPE_CHECKING:
    from obstore.store import ClientConfig, ObjectStore, RetryConfig

_STATUS = re.compile(r"status code: (\d{3})(?: ([A-Za-z][A-Za-z ]*))?")
_XML_CODE = re.compile(r"<Code>([^<]+)</Code>")
# obstore's S3 delete (a DeleteObjects request) tells each key's error as "(code: AccessDenied)"
_KEY_CODE = re.compile(r"\(code: ([A-Za-z]+)\)")
_XML_MESSAGE = re.compile(r"<Message>([^<\n]+)")
_JSON_MESSAGE = re.compile(r'"message"\s*:\s*"([^"]+)"')
_URL_QUERY = re.compile(r"(https?://[^\s?]+)\?\S*")
_OS_MESSAGE = re.compile(r'message: "([^"]+)"')
_RETRIES = re.compile(r"after (\d+) retries")


@dataclass(frozen=True)
class ServerReply:
    """What a failed request came back with, as far as the error text tells."""

    status: int | None
    code: str | None
    text: str
    """One line for a person: HTTP status, the server's error code and message."""


def server_reply(exc: BaseException, secrets: tuple[str, ...] = ()) -> ServerReply:
    """Digest an obstore error (a Rust error chain with a debug dump) into one line."""
    raw = str(exc)
    head = raw.split("\n\nDebug source:", 1)[0]
    status_match = _STATUS.search(head)
    status = int(status_match.group(1)) if status_match else None
    code_match = _XML_CODE.search(head) or _KEY_CODE.search(head)
    code = code_match.group(1).strip() if code_match else None
    message_match = _XML_MESSAGE.search(head) or _JSON_MESSAGE.search(head)
    if status_match:
        reason = (status_match.group(2) or "").strip()
        parts = [f"HTTP {status}" + (f" {reason}" if reason else "")]
        if code:
            parts.append(code)
        if message_match:
            parts.append(message_match.group(1).strip().rstrip("."))
        text = ": ".join(parts)
    else:
        # No HTTP answer (connection refused, timeout, DNS): the last clause says what, the
        # debug dump's innermost message why.
        first = head.strip().splitlines()[0] if head.strip() else type(exc).__name__
        text = first.rsplit(" - ", 1)[-1].strip() if " - " in first else first
        detail = _OS_MESSAGE.findall(raw)
        if detail:
            text += f" ({detail[-1]})"
        retries = _RETRIES.search(head)
        if retries and retries.group(1) != "0":
            text += f", after {retries.group(1)} retries"
    text = _URL_QUERY.sub(r"\1", text)
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return ServerReply(status, code, " ".join(text.split()))


def check_endpoint(url: str, endpoint: str) -> str:
    """An endpoint must be a full http(s) URL; say so before any request goes astray."""
    try:
        parts = urlsplit(endpoint)
        valid = parts.scheme in ("http", "https") and bool(parts.hostname)
        _ = parts.port
    except ValueError:
        valid = False
    if not valid:
        raise ConfigError(
            f"repository {url!r}: endpoint {endpoint!r} is not a URL; write it in full,"
            " as https://host[:port] (or http:// for a local server)"
        )
    return endpoint


def settings_error(url: str, exc: BaseException, secrets: tuple[str, ...]) -> ConfigError:
    """obstore refused the settings themselves (a malformed endpoint, an unknown option)."""
    reason = server_reply(exc, secrets).text.split(" Debug source:")[0]
    return ConfigError(
        f"repository {url!r}: {reason}; check the endpoint (with http:// or https://),"
        " region and credential settings"
    )


def client_options(settings: StorageSettings, allow_http: bool) -> ClientConfig:
    return {
        "allow_http": allow_http,
        "connect_timeout": timedelta(seconds=settings.connect_timeout),
        "timeout": timedelta(seconds=settings.timeout),
    }


def retry_config(settings: StorageSettings) -> RetryConfig:
    return {
        "max_retries": settings.max_retries,
        "retry_timeout": timedelta(seconds=settings.retry_timeout),
        "backoff": {
            "init_backoff": timedelta(milliseconds=100),
            "max_backoff": timedelta(seconds=15),
            "base": 2,
        },
    }


def one_line(exc: BaseException) -> str:
    """An exception's first line, its whitespace collapsed (its type's name if it has none)."""
    text = str(exc).strip()
    return " ".join(text.splitlines()[0].split()) if text else type(exc).__name__


def check_key(url: str, key: str) -> str:
    if not key or key.startswith("/") or key.endswith("/") or "//" in key:
        raise StorageError(f"{url}: invalid object key {key!r}")
    if any(part in (".", "..") for part in key.split("/")):
        raise StorageError(f"{url}: invalid object key {key!r}")
    return key


class CloudStorage:
    """A Storage backed by an obstore ObjectStore (S3 or Azure Blob)."""

    url: str
    kind: Kind

    def __init__(
        self,
        url: str,
        store: ObjectStore,
        settings: StorageSettings,
        *,
        prefix: str = "",
        secrets: tuple[str, ...] = (),
        missing_container_codes: tuple[str, ...] = (),
    ) -> None:
        self.url = url
        self._store = store
        self._prefix = prefix
        self._settings = settings
        self._secrets = secrets
        self._missing_container_codes = missing_container_codes

    # --- what each backend says about its own errors ---

    def _hint(self, reply: ServerReply, exc: BaseException, name: str) -> str:
        """Advice for the person, starting with '; ', or ''. name is the object's full name
        in the bucket or container (prefix included)."""
        return ""

    def _storage_class(self, storage_class: str) -> str:
        return storage_class

    # --- error mapping ---

    def _fail(self, action: str, key: str, exc: BaseException) -> StorageError:
        reply = server_reply(exc, self._secrets)
        where = f"{key} in {self.url}" if key else self.url
        hint = self._hint(reply, exc, f"{self._prefix}/{key}" if self._prefix else key)
        if not hint and isinstance(exc, UnauthenticatedError | PermissionDeniedError):
            hint = "; check the credentials"
        return StorageError(f"cannot {action} {where}: {reply.text}{hint}")

    def _not_found(self, action: str, key: str, exc: BaseException) -> StorageError:
        """A 404 is a missing object, unless the bucket or container itself is missing."""
        reply = server_reply(exc, self._secrets)
        if reply.code in self._missing_container_codes:
            return self._fail(action, key, exc)
        return ObjectNotFound(f"{key} does not exist in {self.url}")

    def _refuse(self, key: str) -> StorageError:
        return overwrite_refused(self.url, key)

    # --- the protocol ---

    @contextmanager
    def create(
        self, key: str, *, overwrite: bool = False, storage_class: str | None = None
    ) -> Iterator[Upload]:
        path = check_key(self.url, key)
        attributes: dict[str, str] = {}
        if storage_class:
            attributes["Storage-Class"] = self._storage_class(storage_class)
        settings = self._settings

        def put_whole(data: bytes) -> None:
            try:
                obstore.put(
                    self._store,
                    path,
                    data,
                    mode="overwrite" if overwrite else "create",
                    attributes=attributes or None,
                    use_multipart=False,
                )
            except (AlreadyExistsError, PreconditionError) as exc:
                if overwrite:
                    raise self._fail("write", key, exc) from exc
                raise self._refuse(key) from exc
            except FileNotFoundError as exc:
                raise self._fail("write", key, exc) from exc

        def put_stream(chunks: Iterator[bytes]) -> None:
            obstore.put(
                self._store,
                path,
                chunks,
                attributes=attributes or None,
                use_multipart=True,
                chunk_size=settings.part_size,
                max_concurrency=settings.upload_concurrency,
            )

        upload = Upload(
            part_size=settings.part_size,
            put_whole=put_whole,
            put_stream=put_stream,
            exists=lambda: self._exists(path, key, "write"),
            refuse=lambda: self._refuse(key),
            fail=lambda exc: self._fail("write", key, exc),
            overwrite=overwrite,
        )
        with upload.writing():
            yield upload

    @contextmanager
    def open(self, key: str, start: int = 0, length: int | None = None) -> Iterator[Source]:
        path = check_key(self.url, key)
        if length is not None and length <= self._settings.part_size:
            # one request, no HEAD first: a manifest's or an archive header's read
            yield io.BytesIO(self._read_range(path, key, start, length))
            return
        try:
            size = obstore.head(self._store, path)["size"]
        except FileNotFoundError as exc:
            raise self._not_found("read", key, exc) from exc
        except Exception as exc:
            raise self._fail("read", key, exc) from exc
        end = size if length is None else min(size, start + length)
        reader = RangedReader(
            lambda begin, count: self._get_range(key, path, begin, count),
            end,
            self._settings.part_size,
            start,
        )
        try:
            yield reader
        finally:
            reader.close()

    def _get_range(self, key: str, path: str, start: int, length: int) -> bytes:
        try:
            return obstore.get_range(self._store, path, start=start, length=length).to_bytes()
        except FileNotFoundError as exc:
            raise self._not_found("read", key, exc) from exc
        except Exception as exc:
            raise self._fail("read", key, exc) from exc

    def _read_range(self, path: str, key: str, start: int, length: int) -> bytes:
        if length <= 0:
            return b""
        try:
            return obstore.get_range(self._store, path, start=start, length=length).to_bytes()
        except FileNotFoundError as exc:
            raise self._not_found("read", key, exc) from exc
        except Exception as exc:
            # A range that starts at or past the end is an error to S3 and Azure, but an
            # empty read to a file.
            text = str(exc)
            if server_reply(exc).status == 416 or "Wanted range starting at" in text:
                info = self._head(path, key, "read")
                if info is None:
                    raise ObjectNotFound(f"{key} does not exist in {self.url}") from exc
                if start >= info.size:
                    return b""
            raise self._fail("read", key, exc) from exc

    def list(self, prefix: str = "", *, start_after: str | None = None) -> Iterator[ObjectInfo]:
        # obstore matches prefixes by whole path segments; ask for the enclosing folder and
        # filter by characters, as the protocol promises.
        folder = prefix.rsplit("/", 1)[0] if "/" in prefix else ""
        found: list[ObjectInfo] = []
        try:
            for batch in obstore.list(
                self._store, folder or None, offset=start_after, chunk_size=1000
            ):
                for meta in batch:
                    key = _meta_path(meta)
                    if key.startswith(prefix) and (start_after is None or key > start_after):
                        found.append(_info(key, meta))
        except Exception as exc:
            raise self._fail("list", prefix or "objects", exc) from exc
        yield from sorted(found, key=lambda info: info.key)

    def folders(self, prefix: str) -> Iterator[str]:
        folder = prefix.rstrip("/")
        try:
            result = obstore.list_with_delimiter(self._store, folder or None)
        except Exception as exc:
            raise self._fail("list", prefix or "objects", exc) from exc
        start = f"{folder}/" if folder else ""
        yield from sorted(
            name[len(start) :].rstrip("/")
            for name in (str(p) for p in result["common_prefixes"])
            if name.startswith(start)
        )

    def stat(self, key: str) -> ObjectInfo | None:
        return self._head(check_key(self.url, key), key, "stat")

    def _head(self, path: str, key: str, action: str) -> ObjectInfo | None:
        try:
            meta = obstore.head(self._store, path)
        except FileNotFoundError:
            return None
        except Exception as exc:
            raise self._fail(action, key, exc) from exc
        return _info(key, meta)

    def leftovers(self, prefix: str = "") -> Iterator[ObjectInfo]:
        return iter(())

    def _exists(self, path: str, key: str, action: str) -> bool:
        return self._head(path, key, action) is not None

    def delete(self, key: str) -> None:
        path = check_key(self.url, key)
        try:
            obstore.delete(self._store, path)
        except FileNotFoundError as exc:
            if server_reply(exc).code in self._missing_container_codes:
                raise self._fail("delete", key, exc) from exc
        except Exception as exc:
            raise self._fail("delete", key, exc) from exc


def _info(key: str, meta: Any) -> ObjectInfo:
    return ObjectInfo(key, int(meta["size"]), meta.get("last_modified"), meta.get("e_tag"))


def _meta_path(meta: Any) -> str:
    return str(meta["path"])
