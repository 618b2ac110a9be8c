"""The index: a cache of small records (manifests, drill records, events) packed into one object
per kind, so that reading thousands of them costs a listing and one request, not one each.

Never trusted over the records: a fresh listing says which records exist and what each is (its
size and etag, else its time); the index only saves fetching the bytes of those it holds
unchanged. A record without an entry is fetched (concurrently), an entry without a record is
dropped, and an index that is missing, damaged or stale is rewritten by the reader that found
it so (docs/FORMAT.md, "The index"). Writing it never fails the command that reads.
"""

from __future__ import annotations

import contextlib
import json
import secrets
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime

import zstandard

from bika.errors import BikaError, ObjectNotFound
from bika.storage import ObjectInfo, Storage, read_bytes, write_bytes

INDEX = "index/"
INDEX_FORMAT = "bika-index"
INDEX_VERSION = 1
FETCH_THREADS = 16
"""Records fetched at once when the index lacks them (a first run reads every one)."""
_MAX_INDEX_BYTES = 1 << 30  # a decompressed index larger than this is taken for damaged


@dataclass(frozen=True)
class _Entry:
    tag: str
    data: bytes


def version_tag(info: ObjectInfo) -> str | None:
    """What tells this version of an object from another one under the same key: its size and
    etag, else its size and time; None when the backend tells neither (never cached)."""
    if info.etag:
        return f"{info.size}:etag:{info.etag}"
    if info.modified is not None:
        return f"{info.size}:modified:{info.modified.isoformat()}"
    return None


def read_records(
    storage: Storage,
    kind: str,
    listed: Sequence[ObjectInfo],
    wanted: Iterable[str] | None = None,
    *,
    unlisted: Callable[[str], bool] = lambda key: False,
) -> dict[str, bytes]:
    """The bytes of each wanted record (default: every listed one), by key; a record deleted
    since it was listed is left out. `listed` is a fresh listing of the kind's records: an
    entry is used only while its record is listed as it was (same size and etag or time).
    Entries whose key `unlisted` accepts lie outside what was listed and are kept as they are."""
    by_key = {info.key: info for info in listed}
    keys = list(by_key) if wanted is None else [key for key in wanted if key in by_key]
    index_keys, cached = _load(storage, kind)
    found: dict[str, bytes] = {}
    missing: list[str] = []
    for key in keys:
        entry = cached.get(key)
        if entry is not None and entry.tag == version_tag(by_key[key]):
            found[key] = entry.data
        else:
            missing.append(key)
    fetched = _fetch(storage, missing)
    found.update(fetched)
    keep = {
        key: entry
        for key, entry in cached.items()
        if (key in by_key and entry.tag == version_tag(by_key[key]))
        or (key not in by_key and unlisted(key))
    }
    for key, data in fetched.items():
        tag = version_tag(by_key[key])
        # an object rewritten between the listing and the read is not cached as listed
        if tag is not None and len(data) == by_key[key].size:
            keep[key] = _Entry(tag, data)
    _save(storage, kind, cached, keep, index_keys)
    return found


def read_by_folder(storage: Storage, kind: str, keys: Sequence[str]) -> dict[str, bytes]:
    """The bytes of the records among `keys` that exist, by key, from a listing of folders
    (one candidate key per folder) rather than of every object: an entry whose folder is
    listed is taken as it is, a key without entry is fetched (missing: no record there, as in
    a backup still running), and an entry whose folder is gone is dropped.

    Cheaper than read_records (a folder listing skips the artifacts) but weaker: a record
    deleted from a folder that still holds other objects keeps its entry until a reader with
    a full listing (read_records) or forget() drops it."""
    index_keys, cached = _load(storage, kind)
    found = {key: cached[key].data for key in keys if key in cached}
    fetched = _fetch(storage, [key for key in keys if key not in cached])
    found.update(fetched)
    wanted = set(keys)
    keep = {key: entry for key, entry in cached.items() if key in wanted}
    # no listing gave its size or tag: "" is matched by no version_tag, so the next full
    # listing (read_records) reads it once more and records its tag
    keep.update({key: _Entry("", data) for key, data in fetched.items()})
    _save(storage, kind, cached, keep, index_keys)
    return found


def forget(storage: Storage, kind: str, keys: Iterable[str]) -> None:
    """Drop these records' entries (before they are deleted: readers by folder stop seeing
    them first)."""
    index_keys, cached = _load(storage, kind)
    gone = set(keys)
    _save(storage, kind, cached, {k: e for k, e in cached.items() if k not in gone}, index_keys)


def _save(
    storage: Storage,
    kind: str,
    cached: dict[str, _Entry],
    keep: dict[str, _Entry],
    index_keys: list[str],
) -> None:
    """Write `keep` as the new index if it differs from what was loaded."""
    if keep.keys() != cached.keys() or any(keep[k].tag != cached[k].tag for k in keep):
        _write(storage, kind, keep, index_keys)


def _load(storage: Storage, kind: str) -> tuple[list[str], dict[str, _Entry]]:
    """The keys of the kind's index objects, and the newest one's entries ({} when it is
    missing or damaged, or the storage will not list or read it)."""
    try:
        keys = [info.key for info in storage.list(f"{INDEX}{kind}/")]
    except BikaError:
        return [], {}
    if not keys:
        return [], {}
    try:
        raw = read_bytes(storage, max(keys))
        return keys, _unpack(raw, kind)
    except (BikaError, ValueError, KeyError, TypeError, zstandard.ZstdError):
        return keys, {}


def _unpack(raw: bytes, kind: str) -> dict[str, _Entry]:
    """An index object: zstd of one JSON header line, then every record's bytes, in order."""
    # one frame that says its size (as _pack writes it): a truncated one fails to decompress
    if not 0 <= zstandard.frame_content_size(raw) <= _MAX_INDEX_BYTES:
        raise ValueError("not an index frame")
    data = zstandard.ZstdDecompressor().decompress(raw)
    line, _, body = data.partition(b"\n")
    header = json.loads(line)
    if header.get("format") != INDEX_FORMAT or header.get("kind") != kind:
        raise ValueError("not an index of this kind")
    if header.get("version") != INDEX_VERSION:
        raise ValueError("another index version")
    entries: dict[str, _Entry] = {}
    offset = 0
    for item in header["records"]:
        length = int(item["length"])
        if length < 0 or offset + length > len(body):
            raise ValueError("index shorter than its header says")
        entries[str(item["key"])] = _Entry(str(item["tag"]), body[offset : offset + length])
        offset += length
    if offset != len(body):
        raise ValueError("index longer than its header says")
    return entries


def _pack(kind: str, entries: dict[str, _Entry]) -> bytes:
    keys = sorted(entries)
    header = {
        "format": INDEX_FORMAT,
        "version": INDEX_VERSION,
        "kind": kind,
        "written_at": datetime.now(UTC).isoformat(),
        "records": [
            {"key": key, "tag": entries[key].tag, "length": len(entries[key].data)} for key in keys
        ],
    }
    plain = b"".join([json.dumps(header).encode(), b"\n", *(entries[key].data for key in keys)])
    return zstandard.ZstdCompressor(level=3, write_checksum=True).compress(plain)


def _write(storage: Storage, kind: str, entries: dict[str, _Entry], older: list[str]) -> None:
    """A new index object (create-only), then the ones it replaces. A failure (a read-only
    credential, a storage that refuses) leaves the old index, which the next reader repairs."""
    now = datetime.now(UTC)
    key = f"{INDEX}{kind}/{now:%Y%m%dT%H%M%S}.{now.microsecond:06d}Z-{secrets.token_hex(4)}.zst"
    try:
        write_bytes(storage, key, _pack(kind, entries))
    except BikaError:
        return
    for old in older:
        with contextlib.suppress(BikaError):
            storage.delete(old)


def _fetch(storage: Storage, keys: list[str]) -> dict[str, bytes]:
    """Read these objects, several at once; one that does not exist is left out."""

    def read(key: str) -> tuple[str, bytes | None]:
        try:
            return key, read_bytes(storage, key)
        except ObjectNotFound:
            return key, None

    if len(keys) <= 1:
        pairs = [read(key) for key in keys]
    else:
        with ThreadPoolExecutor(min(FETCH_THREADS, len(keys))) as pool:
            pairs = list(pool.map(read, keys))
    return {key: data for key, data in pairs if data is not None}
