"""Pushing WAL files into the repository and fetching them back: the work of `bika wal push`
(archive_command) and `bika wal fetch` (restore_command).

Objects are named by the plaintext's sha256 (age ciphertext differs on every encryption), so
one LIST says whether a file is absent, already stored, or stored with other content.

PostgreSQL starts one push per segment, so start-up and every per-call read count (budgets in
bench/PITR.md): this module imports only the standard library's cheapest parts at start, zstd
and age when there is something to compress, and reads the repository's recorded cluster from
a local cache while bika.json is unchanged.
"""

from __future__ import annotations

import _thread
import hashlib
import os

from bika.errors import BikaError, IntegrityError, ObjectExists, ObjectNotFound, RepositoryError
from bika.wal import names, notes
from bika.wal.zstd import zstd

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any, TypeVar

    from bika.wal.store import WalStore

    T = TypeVar("T")

WAL_LEVEL = 1  # zstd-3 is ≤ 6 % smaller on WAL at 1.5–2.3 × the CPU (research/pitr.md)
LOOK_AHEAD = 16  # .ready files one push also stores (fewer, longer batches: less idle tail)
LOOK_AHEAD_THREADS = 3
# the repository cache lives beside the look-ahead's notes (notes.py), as a dot file
# (.repository-<hash of the URL>)
_CACHE_FORMAT = "bika-wal-cache 1"
_PARALLEL_FROM = 1 << 20  # hash and LIST beside the compression for files this big


class ArchiveConflict(BikaError):
    """A WAL file of this name is stored with other content: refusing is PostgreSQL's rule."""


class NotArchived(BikaError):
    """The repository answered: no such WAL file."""


class Pushed:
    __slots__ = ("key", "name", "stored")

    def __init__(self, name: str, key: str, stored: bool) -> None:
        self.name = name
        self.key = key
        self.stored = stored
        """False when an identical copy was there already."""


class Archive:
    """The wal/ part of one repository."""

    def __init__(self, store: WalStore) -> None:
        self.store = store
        self._recipients: list[object] | None = None
        self._cached_recipients: list[str] | None = None  # from the cache, for these bytes
        self._bika_json: bytes | None = None
        self._cluster_id: str | None = None
        self._lock = _thread.allocate_lock()  # the look-ahead threads share what is read

    # -- the repository ------------------------------------------------------------------

    def recipients(self) -> list[object]:
        """bika.json's recipients, read once per process (never from a cache: a key removed
        there must stop being used by the next push)."""
        with self._lock:
            if self._recipients is None and self._cached_recipients is not None:
                self._recipients = _recipient_objects(self._cached_recipients)
            if self._recipients is None:
                self._recipients = _parse_recipients(self.store.url, self._read_bika_json())
            return self._recipients

    def _read_bika_json(self) -> bytes:
        if self._bika_json is None:
            try:
                self._bika_json = self.store.get("bika.json")
            except ObjectNotFound:
                raise RepositoryError(
                    f"{self.store.url} is not a bika repository (no bika.json); run bika init"
                    " there first, or fix --repo / BIKA_REPO"
                ) from None
        return self._bika_json

    def check_cluster(self, header: names.SegmentHeader, state: str | None = None) -> None:
        """The segment must come from the cluster this repository archives (the first push
        records it in wal/cluster.json). `state`: the folder of the local cache, which holds
        the recorded cluster and recipients for this URL and these exact bika.json bytes."""
        with self._lock:
            if self._cluster_id is None:
                self._load_cluster(header, state)
            recorded = self._cluster_id
        if recorded != str(header.system_identifier):
            raise ArchiveConflict(
                f"this WAL comes from the cluster with system identifier"
                f" {header.system_identifier}, but {self.store.url} archives cluster"
                f" {recorded}: give each cluster its own repository"
            )

    def _load_cluster(self, header: names.SegmentHeader, state: str | None) -> None:
        bika_json = self._read_bika_json()
        cache = _cache_path(state, self.store.url) if state else None
        cached = _read_cache(cache, self.store.url, bika_json) if cache else None
        if cached is not None:
            self._cluster_id, self._cached_recipients = cached
            return
        import json

        if self._recipients is None:
            self._recipients = _parse_recipients(self.store.url, bika_json)
        try:
            cluster = json.loads(self.store.get(names.CLUSTER_KEY))
        except ObjectNotFound:
            from datetime import UTC, datetime

            record = {
                "system_identifier": str(header.system_identifier),
                "wal_segment_size": header.segment_size,
                "first_archived_at": datetime.now(UTC).isoformat(timespec="seconds"),
            }
            try:
                self.store.put_new(names.CLUSTER_KEY, json.dumps(record, indent=2).encode())
                cluster = record
            except ObjectExists:
                cluster = json.loads(self.store.get(names.CLUSTER_KEY))
        self._cluster_id = str(cluster.get("system_identifier"))
        if cache:
            recipients = json.loads(bika_json)["recipients"]
            _write_cache(cache, self.store.url, bika_json, self._cluster_id, recipients)

    def cluster(self) -> dict[str, object] | None:
        import json

        try:
            return dict(json.loads(self.store.get(names.CLUSTER_KEY)))
        except ObjectNotFound:
            return None

    # -- push --------------------------------------------------------------------------

    def push(self, path: str) -> Pushed:
        """Store one WAL file; return only once it is durably stored (or was already)."""
        noted = notes.take(path, self.store.url)
        if noted is not None:  # the look-ahead of an earlier call stored it
            return Pushed(os.path.basename(path), noted, stored=False)
        return self._push(path)

    def _push(self, path: str) -> Pushed:
        name = os.path.basename(path)
        if not names.is_archivable(name):
            raise BikaError(
                f"{path} is not a WAL file name; archive_command must be 'bika wal push %p'"
            )
        state = notes.folder(path)
        with open(path, "rb") as handle:
            data = handle.read()
        if names.is_segment(name) or name.endswith(".partial"):
            header = names.read_header(data)
            if header is None:
                raise IntegrityError(
                    f"{path} does not start with a WAL page header; it is not a WAL segment"
                )
            self.check_cluster(header, state)
        prefix = names.listing_prefix(name)

        def look() -> tuple[str, list[str]]:
            sha = hashlib.sha256(data).hexdigest()
            return sha, [item.key for item in self.store.list(prefix)]

        # hashlib, zstd and age release the GIL: hash and LIST while compressing
        looked = _background(look) if len(data) >= _PARALLEL_FROM else None
        compressed = zstd().ZstdCompressor(level=WAL_LEVEL, write_checksum=True).compress(data)
        sha, existing = looked() if looked else look()
        key = names.object_key(name, sha)
        for other in existing:
            parsed = names.parse_object(other)
            if parsed is not None and parsed[1] != sha:
                raise ArchiveConflict(
                    f"WAL file {name} is already archived with other content"
                    f" ({other}; this one has sha256 {sha[:16]}…): refusing to store it. Two"
                    " servers archive into one repository, or a restored copy archives here;"
                    " stop the other server's archiving, then see 'bika wal status'"
                )
        if key in existing:
            return Pushed(name, key, stored=False)
        import pyrage

        encrypted = pyrage.encrypt(compressed, self.recipients())
        try:  # noqa: SIM105 - contextlib is an import every push would pay for
            self.store.put_new(key, encrypted)
        except ObjectExists:
            pass  # a concurrent push of the same bytes (the look-ahead) stored it meanwhile
        return Pushed(name, key, stored=True)

    def push_with_look_ahead(self, path: str) -> tuple[Pushed, list[Pushed]]:
        """Push `path`, and meanwhile the next .ready files PostgreSQL will ask for, so its
        later calls find them stored. Only `path`'s outcome is reported to PostgreSQL: a
        look-ahead failure is retried when PostgreSQL asks for that file."""
        noted = notes.take(path, self.store.url)
        if noted is not None:
            return Pushed(os.path.basename(path), noted, stored=False), []
        wal = os.path.dirname(path)
        following: list[str] = []
        try:
            ready = sorted(
                entry.name[: -len(".ready")]
                for entry in os.scandir(os.path.join(wal, "archive_status"))
                if entry.name.endswith(".ready")
            )
        except OSError:
            ready = []
        mine = os.path.basename(path)
        for name in ready:
            if (
                name > mine
                and names.segment_part(name) is not None
                and not notes.is_noted(os.path.join(wal, name))
            ):
                following.append(os.path.join(wal, name))
            if len(following) >= LOOK_AHEAD:
                break
        if not following:
            return self._push(path), []
        queue = list(following)
        done: list[Pushed] = []
        lock = _thread.allocate_lock()

        def work() -> None:
            while True:
                with lock:
                    if not queue:
                        return
                    other = queue.pop(0)
                try:
                    pushed = self._push(other)
                    notes.leave(other, self.store.url, pushed.key)
                except Exception:  # PostgreSQL retries it when it asks for it
                    continue
                with lock:
                    done.append(pushed)

        workers = [_background(work) for _ in range(LOOK_AHEAD_THREADS)]
        try:
            result = self._push(path)
        finally:
            for join in workers:
                join()
        return result, done

    # -- fetch -------------------------------------------------------------------------

    def fetch(self, name: str, identities: list[object]) -> bytes:
        """The plaintext of a WAL file. NotArchived only when the repository said "no such
        file"; every other failure is another exception."""
        return self.fetch_checked(name, identities)[0]

    def fetch_checked(self, name: str, identities: list[object]) -> tuple[bytes, str]:
        """The plaintext of a WAL file and its sha256 (which it was checked against)."""
        import pyrage

        if not names.is_archivable(name):
            raise NotArchived(f"{name} is not a WAL file name")
        found = [
            (item, parsed)
            for item in self.store.list(names.listing_prefix(name))
            if (parsed := names.parse_object(item.key)) is not None and parsed[0] == name
        ]
        if not found:
            raise NotArchived(f"{name} is not in {self.store.url}")
        if len({parsed[1] for _, parsed in found}) > 1:
            raise ArchiveConflict(
                f"{name} is stored more than once with different content: "
                + ", ".join(item.key for item, _ in found)
                + "; recovery cannot tell which is right; see 'bika wal status'"
            )
        item, (_, sha) = found[0]
        data = self.store.get(item.key)
        codec = zstd()
        try:
            plain: bytes = codec.ZstdDecompressor().decompress(
                pyrage.decrypt(data, identities), max_output_size=1 << 31
            )
        except pyrage.DecryptError:
            raise BikaError(
                f"cannot decrypt {item.key}: the identity does not match the repository's"
                " recipients; pass the right --identity / BIKA_IDENTITY"
            ) from None
        except codec.ZstdError as exc:
            raise IntegrityError(f"{item.key} is damaged: {exc}") from None
        if hashlib.sha256(plain).hexdigest() != sha:
            raise IntegrityError(f"{item.key} is damaged: its content does not match its sha256")
        return plain, sha


# -- helpers: threads, the cache ------------------------------------------------------


def _background(work: Callable[[], T]) -> Callable[[], T]:
    """Run `work` on a thread; the returned function waits for it and returns its result or
    raises its exception. (_thread, not threading: one import less on every push.)"""
    finished = _thread.allocate_lock()
    finished.acquire()
    outcome: list[Any] = []

    def run() -> None:
        try:
            outcome.append((True, work()))
        except BaseException as exc:
            outcome.append((False, exc))
        finally:
            finished.release()

    _thread.start_new_thread(run, ())

    def join() -> T:
        with finished:
            ok, value = outcome[0]
        if not ok:
            raise value
        return value  # type: ignore[no-any-return]

    return join


def _cache_path(state: str, url: str) -> str:
    return os.path.join(state, f".repository-{hashlib.sha256(url.encode()).hexdigest()[:16]}")


def _read_cache(path: str, url: str, bika_json: bytes) -> tuple[str, list[str]] | None:
    """(system identifier, recipients) recorded for this URL and these bika.json bytes."""
    try:
        with open(path, encoding="utf-8") as handle:
            lines = handle.read().splitlines()
    except (OSError, UnicodeDecodeError):
        return None
    digest = hashlib.sha256(bika_json).hexdigest()
    if len(lines) < 6 or lines[:3] != [_CACHE_FORMAT, url, digest] or lines[-1] != "end":
        return None
    return lines[3], lines[4:-1]


def _write_cache(
    path: str, url: str, bika_json: bytes, cluster: str, recipients: list[str]
) -> None:
    digest = hashlib.sha256(bika_json).hexdigest()
    lines = [_CACHE_FORMAT, url, digest, cluster, *recipients, "end"]
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        notes.write_small(path, "\n".join(lines) + "\n")
    except OSError:
        pass  # a cache: the next push reads the repository again


def _parse_recipients(url: str, bika_json: bytes) -> list[object]:
    import json

    try:
        info = json.loads(bika_json)
    except ValueError:
        raise RepositoryError(f"{url}/bika.json is not JSON") from None
    if not isinstance(info, dict) or info.get("format") != "bika" or info.get("version") != 1:
        raise RepositoryError(f"{url}/bika.json is not a bika repository of version 1")
    return _recipient_objects(list(info["recipients"]))


def _recipient_objects(recipients: list[str]) -> list[object]:
    import pyrage

    return [pyrage.x25519.Recipient.from_str(r) for r in recipients]
