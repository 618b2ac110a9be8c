"""A repository on a storage: bika.json, backups/<id>/…, and the rule that a backup exists
only once its manifest does.
"""

from __future__ import annotations

import contextlib
import gc
import json
import logging
import secrets
import uuid
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from pydantic import ValidationError

from bika.errors import (
    BackupNotFound,
    ConfigError,
    DamagedManifest,
    ForeignBackup,
    ObjectExists,
    ObjectNotFound,
    RepositoryError,
    UntrustedBackup,
    UnusableBackup,
)
from bika.repository.index import forget, read_by_folder, read_records
from bika.repository.manifest import FORMAT_VERSION, Manifest
from bika.repository.signatures import (
    SIG_SUFFIX,
    Trust,
    Verdict,
    judge,
    signature_key,
    signature_object,
)
from bika.storage import ObjectInfo, Storage, object_lock, read_bytes, write_bytes

_LOG = logging.getLogger(__name__)

CONFIG_KEY = "bika.json"
BACKUPS = "backups/"
MANIFEST = "manifest.json"
MANIFEST_INDEX = "manifests"
"""The index of manifests: index/manifests/… (index.py)."""
# copied-from/<repository id>.json: a repository whose backups `bika copy` brings here
COPIED_FROM = "copied-from/"

_LOG = logging.getLogger(__name__)


@dataclass(frozen=True)
class ObjectLock:
    days: int
    mode: str
    """compliance (nobody can shorten or remove it) or governance (with
    s3:BypassGovernanceRetention one can)"""


@dataclass(frozen=True)
class DamagedBackup:
    """A backup folder with a manifest that cannot be used, and why (one line)."""

    backup_id: str
    reason: str


def new_backup_id(kind: str, now: datetime | None = None) -> str:
    """Ids sort by time: 20261124T020003Z-daily-7f3a."""
    now = now or datetime.now(UTC)
    return f"{now.astimezone(UTC):%Y%m%dT%H%M%SZ}-{kind}-{secrets.token_hex(2)}"


class Repository:
    def __init__(self, storage: Storage, config: dict[str, object]) -> None:
        self.storage = storage
        self.config = config
        self._copy_sources: set[str] | None = None
        self._manifest_sizes: dict[str, int] = {}
        self.trust = Trust()
        self._warned_unsigned = False
        """How signatures are judged and what this process signs with (set by the CLI)."""

    @property
    def id(self) -> str:
        return str(self.config["id"])

    @property
    def recipients(self) -> list[str]:
        return [str(r) for r in self.config.get("recipients", [])]  # type: ignore[attr-defined]

    @property
    def url(self) -> str:
        return self.storage.url

    @property
    def signers(self) -> list[str]:
        """The signing public keys bika.json records (those the backup hosts sign with)."""
        return [str(s) for s in self.config.get("signers", [])]  # type: ignore[attr-defined]

    # signatures ----------------------------------------------------------------------

    def accepted_signers(self) -> frozenset[str]:
        """The keys whose signatures count: this host's pinned ones, else bika.json's."""
        return self.trust.pinned or frozenset(self.signers)

    @property
    def signers_known(self) -> bool:
        """Whether some signing key is accepted: pinned here or recorded in bika.json."""
        return bool(self.accepted_signers())

    def verdict(
        self, key: str, data: bytes, signatures: Mapping[str, bytes] | None = None
    ) -> Verdict:
        """What the signature next to the object `data` at `key` says about it. `signatures`:
        the signature objects read already (through the index), by their keys, one absent
        from it being absent from the storage; None: it is read here."""
        sig: bytes | None
        if signatures is not None:
            sig = signatures.get(signature_key(key))
        else:
            try:
                sig = read_bytes(self.storage, signature_key(key))
            except ObjectNotFound:
                sig = None
        return judge(key, data, sig, self.accepted_signers())

    def trusted(
        self, key: str, data: bytes, signatures: Mapping[str, bytes] | None = None
    ) -> Verdict | None:
        """None when the object may be used; else the verdict that refuses it (`signatures`
        as for verdict())."""
        if not self.signers_known:
            return None  # nobody signs here and nothing is pinned: no signature to read
        verdict = self.verdict(key, data, signatures)
        if self.trust.accepts(verdict, self.signers_known):
            if verdict.status == "unsigned" and self.trust.pinned and not self._warned_unsigned:
                self._warned_unsigned = True
                _LOG.warning(
                    f"{key} (and any other unsigned object read) is not signed; used because"
                    " of --trust-unsigned"
                )
            return None
        return verdict

    def write_signed(self, key: str, data: bytes) -> None:
        """Store an object (create-only), its signature first when this host signs: an object
        is never visible unsigned."""
        signer = self.trust.signer()
        if signer is not None:
            self._record_signer(signer.public)
            write_bytes(self.storage, signature_key(key), signature_object(signer, key, data))
        write_bytes(self.storage, key, data)

    def _record_signer(self, public: str) -> None:
        """Add the backup host's public key to bika.json's signers, once, so a restoring host
        can see which key to pin (bika.json is the one object bika rewrites)."""
        if public in self.signers:
            return
        try:
            current = json.loads(read_bytes(self.storage, CONFIG_KEY))
        except (ObjectNotFound, ValueError):
            current = dict(self.config)
        signers = [str(s) for s in current.get("signers", [])]
        if public not in signers:
            current["signers"] = [*signers, public]
            data = (json.dumps(current, indent=2) + "\n").encode()
            write_bytes(self.storage, CONFIG_KEY, data, overwrite=True)
            _LOG.info(f"recorded signing key {public} in {self.url}/{CONFIG_KEY}")
        self.config = current

    def set_recipients(self, recipients: list[str]) -> None:
        """Replace bika.json's recipients (`bika key add/remove`): the one object bika
        rewrites in place, whole, so a reader sees the old file or the new one."""
        config = {**self.config, "recipients": list(recipients)}
        data = (json.dumps(config, indent=2) + "\n").encode()
        write_bytes(self.storage, CONFIG_KEY, data, overwrite=True)
        self.config = config

    @property
    def object_lock(self) -> ObjectLock | None:
        """bika.json's object lock: how long every backup's objects are locked, and how."""
        raw = self.config.get("object_lock")
        if not isinstance(raw, dict):
            return None
        return ObjectLock(days=int(raw["days"]), mode=str(raw["mode"]))

    def lock_objects(self, keys: list[str], started: datetime) -> None:
        """Lock a backup's objects until `started` + the repository's object-lock days."""
        lock = self.object_lock
        if lock is None:
            return
        until = started.astimezone(UTC) + timedelta(days=lock.days)
        for key in keys:
            object_lock.retain(self.storage, key, until, lock.mode)

    def locked_until(self, backup_id: str) -> datetime | None:
        """Until when the backup's manifest is locked (None: not locked)."""
        return self.object_locked_until(self.artifact_key(backup_id, MANIFEST))

    def object_locked_until(self, key: str) -> datetime | None:
        """Until when one object is locked (None: not locked, or the repository locks none)."""
        if self.object_lock is None:
            return None
        return object_lock.retained_until(self.storage, key)

    def replace_blocked_until(self, backup_id: str, now: datetime) -> datetime | None:
        """Until when the backup's manifest cannot be replaced (rekey): while it is locked on a
        storage that refuses to replace a locked object (GCS). None: it can be."""
        if object_lock.replaces_locked(self.storage):
            return None
        until = self.locked_until(backup_id)
        return until if until is not None and until > now else None

    @classmethod
    def init(
        cls, storage: Storage, recipients: list[str], lock: ObjectLock | None = None
    ) -> Repository:
        config: dict[str, object] = {
            "format": "bika",
            "version": FORMAT_VERSION,
            "id": str(uuid.uuid4()),
            "created": datetime.now(UTC).isoformat(timespec="seconds"),
            "recipients": recipients,
        }
        if lock is not None:
            object_lock.require_lockable(storage)
            config["object_lock"] = {"days": lock.days, "mode": lock.mode}
        data = (json.dumps(config, indent=2) + "\n").encode()
        try:
            write_bytes(storage, CONFIG_KEY, data)
        except ObjectExists as exc:
            raise RepositoryError(
                f"{storage.url} already holds a bika repository; use it, or choose another --repo"
            ) from exc
        return cls(storage, config)

    @classmethod
    def open(cls, storage: Storage) -> Repository:
        try:
            raw = read_bytes(storage, CONFIG_KEY)
        except ObjectNotFound as exc:
            raise RepositoryError(
                f"no bika repository at {storage.url}; create one with 'bika init --repo"
                f" {storage.url} --recipient age1…'"
            ) from exc
        try:
            config = json.loads(raw)
        except ValueError as exc:
            raise RepositoryError(f"{storage.url}/{CONFIG_KEY} is not valid JSON") from exc
        if config.get("format") != "bika":
            raise RepositoryError(f"{storage.url}/{CONFIG_KEY} is not a bika repository file")
        if config.get("version") != FORMAT_VERSION:
            raise RepositoryError(
                f"{storage.url} uses repository format {config.get('version')}; this bika"
                f" reads format {FORMAT_VERSION}: upgrade bika"
            )
        return cls(storage, config)

    # backups -------------------------------------------------------------------------

    def backup_prefix(self, backup_id: str) -> str:
        return f"{BACKUPS}{backup_id}/"

    def artifact_key(self, backup_id: str, name: str) -> str:
        return f"{self.backup_prefix(backup_id)}{name}"

    def commit(self, manifest: Manifest) -> None:
        """Write the manifest, which makes the backup exist. Never overwrites one."""
        key = self.artifact_key(manifest.id, MANIFEST)
        self.write_signed(key, manifest.to_json().encode())

    def replace_manifest(self, manifest: Manifest) -> None:
        """Rewrite an existing backup's manifest whole (`bika rekey`): only after every
        object it names is stored and verified, so it never points at a missing one.

        When this host signs, the signature is written first covering both the old and the
        new manifest, then the manifest, then the signature of the new one alone: a run
        killed at any point leaves a manifest its signature covers."""
        key = self.artifact_key(manifest.id, MANIFEST)
        try:
            previous = read_bytes(self.storage, key)
        except ObjectNotFound:
            raise BackupNotFound(
                f"no backup {manifest.id!r} in {self.url}; 'bika list' shows the ids"
            ) from None
        data = manifest.to_json().encode()
        # readers by folder take manifests from the index: out of it before the rewrite
        self.forget([manifest.id])
        signer = self.trust.signer()
        if signer is None:
            write_bytes(self.storage, key, data, overwrite=True)
            return
        sig_key = signature_key(key)
        both = signature_object(signer, key, data, previous=previous)
        write_bytes(self.storage, sig_key, both, overwrite=True)
        write_bytes(self.storage, key, data, overwrite=True)
        write_bytes(self.storage, sig_key, signature_object(signer, key, data), overwrite=True)

    def backup_ids(self) -> list[str]:
        """Ids of complete backups (those with a manifest), oldest first."""
        return sorted(
            backup_id
            for info in self.storage.list(BACKUPS)
            if (backup_id := _manifest_id(info.key)) is not None
        )

    def started_times(self, since: datetime | None = None) -> list[datetime]:
        """When each backup started, to the second, from the ids alone (no manifest read);
        with `since`, only backups whose id says they started then or later (ids sort by
        time, so the storage lists only those)."""
        start_after = f"{BACKUPS}{since.astimezone(UTC):%Y%m%dT%H%M%S}" if since else None
        times = []
        for info in self.storage.list(BACKUPS, start_after=start_after):
            backup_id = _manifest_id(info.key)
            if backup_id is not None and (stamp := _id_time(backup_id)) is not None:
                times.append(stamp)
        return sorted(times)

    def manifest(self, backup_id: str) -> Manifest:
        return self.read_manifest(backup_id)[0]

    def read_manifest(self, backup_id: str) -> tuple[Manifest, bytes]:
        """The manifest and its stored bytes (which a copy reproduces exactly).

        Raises DamagedManifest for one that does not parse, ForeignBackup for one taken in
        another repository that did not come here by `bika copy` (a folder copied by hand), and
        UntrustedBackup for one whose signature this host does not accept."""
        key = self.artifact_key(backup_id, MANIFEST)
        try:
            raw = read_bytes(self.storage, key)
        except ObjectNotFound as exc:
            raise BackupNotFound(
                f"no backup {backup_id!r} in {self.url}; 'bika list' shows the ids"
            ) from exc
        return self._parse(backup_id, raw), raw

    def _parse(
        self, backup_id: str, raw: bytes, signatures: Mapping[str, bytes] | None = None
    ) -> Manifest:
        try:
            manifest = Manifest.model_validate_json(raw)
        except ValidationError as exc:
            raise DamagedManifest(
                backup_id,
                f"its manifest.json is damaged ({_first_error(exc)}), so the backup cannot be"
                " used; the repository's other backups are unaffected",
            ) from None
        if manifest.id != backup_id:
            raise DamagedManifest(
                backup_id,
                f"its manifest.json describes backup {manifest.id}: the folder was renamed or"
                " its manifest replaced, so the backup cannot be used",
            )
        if manifest.repository_id != self.id and manifest.repository_id not in self.copy_sources():
            raise ForeignBackup(
                backup_id,
                f"it was taken in another repository ({manifest.repository_id}, this one is"
                f" {self.id}) and did not come here by `bika copy`: its folder was copied in by"
                " hand, and this repository's key may not open it; use it from the repository"
                " it came from",
            )
        refused = self.trusted(self.artifact_key(backup_id, MANIFEST), raw, signatures)
        if refused is not None:
            raise UntrustedBackup(backup_id, refused.reason("its manifest"))
        return manifest

    def scan(
        self,
        listing: Iterable[ObjectInfo] | None = None,
        *,
        folders: Iterable[str] | None = None,
    ) -> tuple[list[Manifest], list[DamagedBackup]]:
        """Every usable manifest, in the order the backups started (ties by id), and, apart,
        the backups whose manifest cannot be used, each with the reason: one bad manifest does
        not hide the others.

        The manifests come through the index (index.py), which saves fetching them. Given
        `listing`, a fresh listing of every object under backups/ (prune has one), the index
        is used only for manifests listed exactly as it holds them. Without, backups/ is
        listed by folder (or `folders` are its folders, listed by the caller), which skips the
        artifacts: a folder's manifest is read unless the index holds it, and an entry whose
        folder is gone is dropped.

        Where signatures are checked, each manifest's signature object comes the same way (a
        year of backups would otherwise be thousands of requests), and is verified as always:
        the index holds bytes, never a verdict."""
        signed = self.signers_known
        raws: dict[str, bytes]
        if listing is None:
            names = self.storage.folders(BACKUPS) if folders is None else folders
            keys = [self.artifact_key(name, MANIFEST) for name in names]
            if signed:
                keys += [signature_key(key) for key in keys]
            raws = read_by_folder(self.storage, MANIFEST_INDEX, keys)
        else:
            listed = [
                info
                for info in listing
                if _manifest_id(info.key) is not None
                or (signed and _manifest_id(info.key.removesuffix(SIG_SUFFIX)) is not None)
            ]
            raws = read_records(self.storage, MANIFEST_INDEX, listed)
        manifests: list[Manifest] = []
        damaged: list[DamagedBackup] = []
        with building_many():
            for key in sorted(raws):
                backup_id = _manifest_id(key)
                if backup_id is None:
                    continue  # a signature
                self._manifest_sizes[backup_id] = len(raws[key])
                try:
                    manifests.append(self._parse(backup_id, raws[key], raws if signed else None))
                except UnusableBackup as exc:
                    damaged.append(DamagedBackup(backup_id, exc.reason))
        return sorted(manifests, key=lambda m: (_started(m), m.id)), damaged

    def manifest_size(self, backup_id: str) -> int | None:
        """The stored size of a manifest the last scan() read, else None."""
        return self._manifest_sizes.get(backup_id)

    def forget(self, backup_ids: Iterable[str]) -> None:
        """Take these backups out of the index before their manifests are deleted (prune), so
        that no reader by folder sees them while their artifacts go."""
        keys = [self.artifact_key(i, MANIFEST) for i in backup_ids]
        forget(self.storage, MANIFEST_INDEX, keys + [signature_key(key) for key in keys])

    def copy_sources(self) -> set[str]:
        """Ids of the repositories whose backups `bika copy` has brought here."""
        if self._copy_sources is None:
            self._copy_sources = {
                info.key[len(COPIED_FROM) :].removesuffix(".json")
                for info in self.storage.list(COPIED_FROM)
            }
        return self._copy_sources

    def add_copy_source(self, repository_id: str) -> None:
        """Record that backups of repository `repository_id` are copied here (bika copy)."""
        if repository_id == self.id or repository_id in self.copy_sources():
            return
        record = {"repository_id": repository_id, "created": datetime.now(UTC).isoformat()}
        with contextlib.suppress(ObjectExists):  # recorded meanwhile by another copy
            write_bytes(
                self.storage,
                f"{COPIED_FROM}{repository_id}.json",
                (json.dumps(record) + "\n").encode(),
            )
        self.copy_sources().add(repository_id)

    def resolve(self, ref: str) -> str:
        """A full id, a unique prefix of one, or 'latest'."""
        if not ref.strip():
            # every id starts with "", so an empty one would match them all
            raise ConfigError(
                "give a backup id, a unique prefix of one, or 'latest'; 'bika list' shows the ids"
            )
        if ref == "latest":
            return self.latest()
        # by folder, which skips the artifacts: a folder without a manifest is no backup, so
        # the candidates' manifests are looked up (until two are found)
        candidates = [i for i in self.storage.folders(BACKUPS) if i.startswith(ref)]
        if ref in candidates and self._has_manifest(ref):
            return ref
        matches: list[str] = []
        for candidate in candidates:
            if candidate != ref and self._has_manifest(candidate):
                matches.append(candidate)
                if len(matches) > 1:
                    raise BackupNotFound(
                        f"{ref!r} matches {len(candidates)} backups; give more of the id"
                    )
        if matches:
            return matches[0]
        raise BackupNotFound(f"no backup {ref!r} in {self.url}; 'bika list' shows the ids")

    def _has_manifest(self, backup_id: str) -> bool:
        return self.storage.stat(self.artifact_key(backup_id, MANIFEST)) is not None

    def latest(self) -> str:
        """The id of the backup that started last."""
        return self.before(datetime.max.replace(tzinfo=UTC))

    def before(self, when: datetime) -> str:
        """The id of the newest backup that started strictly before `when` (naive means UTC).

        Ids sort by time only to the second: of two backups taken within one second the
        manifests tell which started first, so only that last second's manifests are read."""
        when = when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)
        ids = self.backup_ids()
        if not ids:
            raise BackupNotFound(f"{self.url} holds no backups yet")
        timed = sorted((stamp, i) for i in ids if (stamp := _id_time(i)) is not None)
        # ids without a readable time (none that bika writes) are judged by their manifest
        candidates = [(None, i) for i in ids if _id_time(i) is None] + list(reversed(timed))
        best: tuple[datetime, str] | None = None
        for stamp, backup_id in candidates:
            if stamp is not None:
                if stamp >= when:
                    continue
                if best is not None and stamp + timedelta(seconds=1) <= best[0]:
                    break
            try:
                started = _started(self.manifest(backup_id))
            except UnusableBackup as exc:
                # "latest" means the newest usable one; say which newer one was passed over
                _LOG.warning("skipping backup %s: %s", backup_id, exc.reason)
                continue
            if started < when and (best is None or started > best[0]):
                best = (started, backup_id)
        if best is None:
            oldest = self.manifest(timed[0][1] if timed else ids[0])
            raise BackupNotFound(
                f"no backup started before {when:%Y-%m-%d %H:%M:%S} UTC; the oldest,"
                f" {oldest.id}, started {_started(oldest):%Y-%m-%d %H:%M:%S} UTC"
            )
        return best[1]


@contextlib.contextmanager
def building_many() -> Iterator[None]:
    """Pause the cyclic garbage collector while thousands of records become models: they hold
    no cycles, and its passes over the growing heap took a third of the time of validating a
    year of manifests (bench/scale.py)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _first_error(exc: ValidationError) -> str:
    """A pydantic error as one short line: where and what, without its documentation link."""
    errors = exc.errors(include_url=False)
    if not errors:
        return "not a manifest"
    first = errors[0]
    where = ".".join(str(part) for part in first.get("loc", ()))
    message = str(first.get("msg", "invalid")).splitlines()[0]
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return f"{where + ': ' if where else ''}{message}{more}"


def _manifest_id(key: str) -> str | None:
    """The backup id of backups/<id>/manifest.json; None for any other key."""
    parts = key[len(BACKUPS) :].split("/") if key.startswith(BACKUPS) else []
    return parts[0] if len(parts) == 2 and parts[1] == MANIFEST and parts[0] else None


def _id_time(backup_id: str) -> datetime | None:
    """The start time an id carries, to the second (see new_backup_id)."""
    try:
        return datetime.strptime(backup_id[:16], "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
    except ValueError:
        return None


def _started(manifest: Manifest) -> datetime:
    return manifest.started_at.astimezone(UTC)
