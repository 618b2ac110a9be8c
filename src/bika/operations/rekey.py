"""Re-encrypting existing backups to the repository's current recipients (`bika rekey`).

Each artifact streams old object → age -d → zstd -d → zstd → age → a NEW object name, with no
plaintext on disk; both hashes of the old object and the plaintext hash of the new one must
equal the manifest's, and the new object is read back and hashed. Only then is the manifest
rewritten to name the new objects, and only after that are the old ones deleted. A crash at any
point leaves a manifest naming objects that exist (the old ones, or the new ones) and that its
signature covers (Repository.replace_manifest); what it no longer names is a leftover for prune
(docs/FORMAT.md, "Rekey").
"""

from __future__ import annotations

import hashlib
import queue
import re
import secrets
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC

from bika import clock
from bika.crypto import parse_recipients
from bika.errors import BikaError, IntegrityError, KeySettingError, RepositoryError
from bika.repository import Artifact, Manifest, Repository
from bika.repository.locks import exclusive_lock
from bika.repository.repository import MANIFEST
from bika.stream import READ_SIZE, StreamStats, decode, encode

# backups/<id>/database.pgdump.zst.age → backups/<id>/database.k<8 hex>.pgdump.zst.age
_GENERATION = re.compile(r"^k[0-9a-f]{8}$")


def rekeyed_key(key: str, token: str | None = None) -> str:
    """A fresh object name for an artifact: its name with a new `k<8 hex>` part after the
    first dot (replacing an earlier one), so old and new never share a key."""
    folder, _, name = key.rpartition("/")
    stem, *rest = name.split(".")
    if rest and _GENERATION.match(rest[0]):
        rest = rest[1:]
    generation = f"k{token or secrets.token_hex(4)}"
    renamed = ".".join([stem, generation, *rest])
    return f"{folder}/{renamed}" if folder else renamed


@dataclass
class RekeyOptions:
    backup_ids: list[str] | None = None
    """None: every backup."""
    force: bool = False
    """Re-encrypt also backups whose manifest already names the current recipients."""
    level: int = 3
    storage_classes: Mapping[str, str] = field(default_factory=dict)
    break_lock: bool = False


@dataclass
class RekeyResult:
    backup_id: str
    status: str
    """rekeyed, current (already encrypted to the current recipients) or failed"""
    detail: str = ""
    stored_bytes: int = 0


def rekey(
    repo: Repository,
    identities: list[object],
    options: RekeyOptions,
    on_note: Callable[[str], None] = lambda _: None,
) -> list[RekeyResult]:
    """Re-encrypt the chosen backups; one that fails is reported and left as it was."""
    current = repo.recipients
    recipients = parse_recipients(current)
    if repo.signers and repo.trust.signer() is None:
        # a rewritten manifest without a new signature would be refused as edited
        raise KeySettingError(
            "this repository's manifests are signed (bika.json signers) and rekey rewrites"
            " them: set signing_key to the backup host's signing key (or to a key the restoring"
            " hosts also pin) and run it again"
        )
    # prune's lock: no prune may delete a backup (or take a new object for a leftover) meanwhile
    with exclusive_lock(repo, "rekey", break_lock=options.break_lock, on_note=on_note) as lock:
        ids = options.backup_ids if options.backup_ids is not None else repo.backup_ids()
        results: list[RekeyResult] = []
        for backup_id in ids:
            lock.renew()
            try:
                manifest = repo.manifest(backup_id)
            except BikaError as exc:  # a damaged one stays as it is; the others go on
                results.append(RekeyResult(backup_id, "failed", str(exc)))
                continue
            if (
                not options.force
                and manifest.recipients is not None
                and sorted(manifest.recipients) == sorted(current)
            ):
                results.append(RekeyResult(backup_id, "current", "already to these recipients"))
                continue
            blocked = repo.replace_blocked_until(backup_id, clock.now())
            if blocked is not None:
                detail = (
                    f"locked until {blocked.astimezone(UTC):%Y-%m-%d %H:%M} UTC, and {repo.url}"
                    " cannot replace a locked manifest: rekey it after then"
                )
                results.append(RekeyResult(backup_id, "failed", detail))
                on_note(f"{backup_id}: not rekeyed: {detail}")
                continue
            try:
                results.append(
                    _rekey_one(repo, manifest, identities, recipients, current, options, on_note)
                )
            except (BikaError, OSError) as exc:
                results.append(RekeyResult(backup_id, "failed", str(exc)))
                on_note(f"{backup_id}: not rekeyed: {exc}")
        return results


def _rekey_one(
    repo: Repository,
    manifest: Manifest,
    identities: list[object],
    recipients: list[object],
    current: list[str],
    options: RekeyOptions,
    on_note: Callable[[str], None],
) -> RekeyResult:
    written: list[str] = []
    artifacts: dict[str, Artifact] = {}
    storage_class = options.storage_classes.get(manifest.kind)
    try:
        for name, artifact in manifest.artifacts.items():
            new_key = rekeyed_key(artifact.key)
            written.append(new_key)
            stats = _transcode(
                repo,
                artifact,
                new_key,
                identities,
                recipients,
                options.level,
                storage_class,
                f"{manifest.id}/{name}",
            )
            _check_stored(repo, new_key, stats, f"{manifest.id}/{name}")
            artifacts[name] = artifact.model_copy(
                update={
                    "key": new_key,
                    "stored_size": stats.stored_size,
                    "stored_sha256": stats.stored_sha256,
                }
            )
        rekeyed = manifest.model_copy(
            update={"artifacts": artifacts, "recipients": list(current), "rekeyed_at": clock.now()}
        )
        repo.lock_objects(written, manifest.started_at)
        # the switch: from here the backup is read from the new objects
        repo.replace_manifest(rekeyed)
        repo.lock_objects([repo.artifact_key(manifest.id, MANIFEST)], manifest.started_at)
    except BaseException:
        for key in written:
            try:
                repo.storage.delete(key)
            except BikaError:
                on_note(f"could not remove {key}; prune removes it after a day")
        raise
    for artifact in manifest.artifacts.values():
        try:
            repo.storage.delete(artifact.key)
        except BikaError as exc:
            on_note(f"{artifact.key} (encrypted to the old recipients) stays: {exc}")
    return RekeyResult(manifest.id, "rekeyed", f"{len(artifacts)} artifacts", rekeyed.stored_size)


def _transcode(
    repo: Repository,
    artifact: Artifact,
    new_key: str,
    identities: list[object],
    recipients: list[object],
    level: int,
    storage_class: str | None,
    label: str,
) -> StreamStats:
    """Old object → plaintext (in memory, a few chunks at a time) → new object."""
    pipe = _Pipe()
    decoded: list[StreamStats] = []
    failure: list[BaseException] = []

    def read_old() -> None:
        try:
            with repo.storage.open(artifact.key) as source:
                decoded.append(decode(source, pipe, identities, name=label))
        except BaseException as exc:  # handed to the encoding side below
            failure.append(exc)
        finally:
            pipe.close()

    reader = threading.Thread(target=read_old, name="bika-rekey-decode", daemon=True)
    reader.start()
    try:
        with repo.storage.create(new_key, storage_class=storage_class) as sink:
            new = encode(pipe, sink, recipients, level=level)
            reader.join()
            if failure:
                raise failure[0]
            old = decoded[0]
            if (
                old.stored_sha256 != artifact.stored_sha256
                or old.stored_size != artifact.stored_size
            ):
                raise IntegrityError(
                    f"{label}: the stored object does not match its manifest (sha256 or size);"
                    " nothing was changed: see 'bika verify --read-data'"
                )
            if (
                old.plain_sha256 != artifact.plain_sha256
                or new.plain_sha256 != artifact.plain_sha256
            ):
                raise IntegrityError(
                    f"{label}: the plaintext does not hash to the manifest's plain_sha256;"
                    " nothing was changed: see 'bika verify --read-data'"
                )
    finally:
        pipe.abandon()
        reader.join()
    return new


def _check_stored(repo: Repository, key: str, stats: StreamStats, label: str) -> None:
    """Read the new object back: its bytes must be the ones written."""
    digest = hashlib.sha256()
    size = 0
    with repo.storage.open(key) as source:
        while chunk := source.read(READ_SIZE):
            digest.update(chunk)
            size += len(chunk)
    if size != stats.stored_size or digest.hexdigest() != stats.stored_sha256:
        raise IntegrityError(
            f"{label}: the re-encrypted object {key} reads back different from what was written;"
            " nothing was changed, run it again"
        )


class _Pipe:
    """Plaintext from the decoding thread to the encoder, a few chunks at a time."""

    def __init__(self, depth: int = 8) -> None:
        self._queue: queue.Queue[bytes | None] = queue.Queue(depth)
        self._buffer = b""
        self._closed = False
        self._abandoned = threading.Event()

    # the writing side (decode's sink)
    def write(self, data: bytes) -> int:
        while not self._abandoned.is_set():
            try:
                self._queue.put(bytes(data), timeout=0.1)
                return len(data)
            except queue.Full:
                continue
        raise RepositoryError("rekey stopped: the new object could not be written")

    def flush(self) -> None:
        pass

    def close(self) -> None:
        while not self._abandoned.is_set():
            try:
                self._queue.put(None, timeout=0.1)
                return
            except queue.Full:
                continue

    # the reading side (encode's source)
    def read(self, n: int = -1) -> bytes:
        while not self._buffer and not self._closed:
            chunk = self._queue.get()
            if chunk is None:
                self._closed = True
            else:
                self._buffer = chunk
        size = len(self._buffer) if n is None or n < 0 else n
        data, self._buffer = self._buffer[:size], self._buffer[size:]
        return data

    def abandon(self) -> None:
        """The encoder is done (or failed): the decoder's next write stops it."""
        self._abandoned.set()
