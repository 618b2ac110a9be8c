"""Pushing WAL files into the repository and fetching them back: the work of `bika wal push`
(archive_command) and `bika wal fetch` (restore_command).

Objects are named by the plaintext's sha256 (age ciphertext differs on every encryption), so
one LIST says whether a file is absent, already stored, or stored with other content.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pyrage
import zstandard

from bika.errors import BikaError, IntegrityError, ObjectExists, ObjectNotFound, RepositoryError
from bika.wal import names
from bika.wal.store import WalStore

WAL_LEVEL = 1  # zstd-3 is ≤ 6 % smaller on WAL at 1.5–2.3 × the CPU (research/pitr.md)
LOOK_AHEAD = 8  # .ready files one push also stores
LOOK_AHEAD_THREADS = 3
# pg_wal/<this>/<name>: "stored" notes the look-ahead leaves for PostgreSQL's later call (as
# WAL-G's walg_archive_status); a file is noted only once durably stored, and the note is
# consumed when PostgreSQL asks for that file
ACK_FOLDER = "bika_archive_status"


class ArchiveConflict(BikaError):
    """A WAL file of this name is stored with other content: refusing is PostgreSQL's rule."""


class NotArchived(BikaError):
    """The repository answered: no such WAL file."""


@dataclass(frozen=True)
class Pushed:
    name: str
    key: str
    stored: bool
    """False when an identical copy was there already."""


class Archive:
    """The wal/ part of one repository."""

    def __init__(self, store: WalStore) -> None:
        self.store = store
        self._recipients: list[object] | None = None
        self._cluster: dict[str, object] | None = None

    # -- the repository ------------------------------------------------------------------

    def recipients(self) -> list[object]:
        if self._recipients is None:
            try:
                info = json.loads(self.store.get("bika.json"))
            except ObjectNotFound:
                raise RepositoryError(
                    f"{self.store.url} is not a bika repository (no bika.json); run bika init"
                    " there first, or fix --repo / BIKA_REPO"
                ) from None
            except ValueError:
                raise RepositoryError(f"{self.store.url}/bika.json is not JSON") from None
            if info.get("format") != "bika" or info.get("version") != 1:
                raise RepositoryError(
                    f"{self.store.url}/bika.json is not a bika repository of version 1"
                )
            self._recipients = [pyrage.x25519.Recipient.from_str(r) for r in info["recipients"]]
        return self._recipients

    def check_cluster(self, header: names.SegmentHeader) -> None:
        """The segment must come from the cluster this repository archives (the first push
        records it in wal/cluster.json)."""
        if self._cluster is None:
            record = {
                "system_identifier": str(header.system_identifier),
                "wal_segment_size": header.segment_size,
                "first_archived_at": datetime.now(UTC).isoformat(timespec="seconds"),
            }
            try:
                self._cluster = json.loads(self.store.get(names.CLUSTER_KEY))
            except ObjectNotFound:
                try:
                    self.store.put_new(names.CLUSTER_KEY, json.dumps(record, indent=2).encode())
                    self._cluster = dict(record)
                except ObjectExists:
                    self._cluster = json.loads(self.store.get(names.CLUSTER_KEY))
        assert self._cluster is not None
        if self._cluster.get("system_identifier") != str(header.system_identifier):
            raise ArchiveConflict(
                f"this WAL comes from the cluster with system identifier"
                f" {header.system_identifier}, but {self.store.url} archives cluster"
                f" {self._cluster.get('system_identifier')}: give each cluster its own"
                " repository"
            )

    def cluster(self) -> dict[str, object] | None:
        try:
            return dict(json.loads(self.store.get(names.CLUSTER_KEY)))
        except ObjectNotFound:
            return None

    # -- push --------------------------------------------------------------------------

    def push(self, path: Path) -> Pushed:
        """Store one WAL file; return only once it is durably stored (or was already)."""
        ack = path.parent / ACK_FOLDER / path.name
        if ack.is_file():  # the look-ahead of an earlier call stored it
            key = ack.read_text().strip()
            ack.unlink()
            return Pushed(path.name, key, stored=False)
        return self._push(path)

    def _push(self, path: Path) -> Pushed:
        name = path.name
        if not names.is_archivable(name):
            raise BikaError(
                f"{path} is not a WAL file name; archive_command must be 'bika wal push %p'"
            )
        data = path.read_bytes()
        if names.SEGMENT.fullmatch(name) or name.endswith(".partial"):
            header = names.read_header(data)
            if header is None:
                raise IntegrityError(
                    f"{path} does not start with a WAL page header; it is not a WAL segment"
                )
            self.check_cluster(header)
        sha = hashlib.sha256(data).hexdigest()
        key = names.object_key(name, sha)
        existing = self.store.list(names.listing_prefix(name))
        for item in existing:
            parsed = names.parse_object(item.key)
            if parsed is not None and parsed[1] != sha:
                raise ArchiveConflict(
                    f"WAL file {name} is already archived with other content"
                    f" ({item.key}; this one has sha256 {sha[:16]}…): refusing to store it. Two"
                    " servers archive into one repository, or a restored copy archives here;"
                    " stop the other server's archiving, then see 'bika wal status'"
                )
        if any(item.key == key for item in existing):
            return Pushed(name, key, stored=False)
        encrypted = pyrage.encrypt(
            zstandard.ZstdCompressor(level=WAL_LEVEL, write_checksum=True).compress(data),
            self.recipients(),
        )
        # a concurrent push of the same bytes (the look-ahead) may have stored it meanwhile
        with contextlib.suppress(ObjectExists):
            self.store.put_new(key, encrypted)
        return Pushed(name, key, stored=True)

    def push_with_look_ahead(self, path: Path) -> tuple[Pushed, list[Pushed]]:
        """Push `path`, and meanwhile the next .ready files PostgreSQL will ask for, so its
        later calls find them stored. Only `path`'s outcome is reported to PostgreSQL: a
        look-ahead failure is retried when PostgreSQL asks for that file."""
        status = path.parent / "archive_status"
        following: list[Path] = []
        try:
            ready = sorted(
                entry.name[: -len(".ready")]
                for entry in os.scandir(status)
                if entry.name.endswith(".ready")
            )
        except OSError:
            ready = []
        acks = path.parent / ACK_FOLDER
        for name in ready:
            if (
                name > path.name
                and names.WITH_SEGMENT.fullmatch(name)
                and not (acks / name).exists()
            ):
                following.append(path.parent / name)
            if len(following) >= LOOK_AHEAD:
                break
        if not following:
            return self.push(path), []
        self.recipients()  # read once, before the threads need it
        queue = list(following)
        done: list[Pushed] = []
        lock = threading.Lock()

        def work() -> None:
            while True:
                with lock:
                    if not queue:
                        return
                    other = queue.pop(0)
                # a failure here is PostgreSQL's to retry, when it asks for that file
                with contextlib.suppress(Exception):
                    pushed = self._push(other)
                    _note_stored(acks, pushed)
                    with lock:
                        done.append(pushed)

        # concurrent.futures would cost more start-up than the threads save on small backlogs
        threads = [threading.Thread(target=work) for _ in range(LOOK_AHEAD_THREADS)]
        for thread in threads:
            thread.start()
        try:
            mine = self.push(path)
        finally:
            for thread in threads:
                thread.join()
        return mine, done

    # -- fetch -------------------------------------------------------------------------

    def fetch(self, name: str, identities: list[object]) -> bytes:
        """The plaintext of a WAL file. NotArchived only when the repository said "no such
        file"; every other failure is another exception."""
        return self.fetch_checked(name, identities)[0]

    def fetch_checked(self, name: str, identities: list[object]) -> tuple[bytes, str]:
        """The plaintext of a WAL file and its sha256 (which it was checked against)."""
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
        try:
            plain = zstandard.ZstdDecompressor().decompress(
                pyrage.decrypt(data, identities), max_output_size=1 << 31
            )
        except pyrage.DecryptError:
            raise BikaError(
                f"cannot decrypt {item.key}: the identity does not match the repository's"
                " recipients; pass the right --identity / BIKA_IDENTITY"
            ) from None
        except zstandard.ZstdError as exc:
            raise IntegrityError(f"{item.key} is damaged: {exc}") from None
        if hashlib.sha256(plain).hexdigest() != sha:
            raise IntegrityError(f"{item.key} is damaged: its content does not match its sha256")
        return plain, sha


def _note_stored(acks: Path, pushed: Pushed) -> None:
    acks.mkdir(exist_ok=True)
    tmp = acks / f".{pushed.name}.{os.getpid()}"
    tmp.write_text(pushed.key + "\n")
    os.replace(tmp, acks / pushed.name)
