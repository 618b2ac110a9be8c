"""The index of manifests, drill records and events: a cache that saves requests and never
changes what a reader sees. Local storage and S3 (moto_server)."""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from bika.errors import BackupNotFound, StorageError, UnusableBackup
from bika.repository import DamagedBackup, Manifest, Repository
from bika.repository.drills import DrillRecord, DrillTarget, latest_drills, record_drill
from bika.repository.events import Event, read_events, write_event
from bika.repository.index import INDEX
from bika.repository.repository import MANIFEST
from bika.repository.signatures import Trust, signature_key
from bika.signing import generate_signing_key
from bika.storage import ObjectInfo, Sink, Source, Storage, open_storage, read_bytes, write_bytes
from bika.storage.facts import Kind
from bika.storage.local import LocalStorage

from helpers import run_bika
from storage.servers import BUCKET, Server, s3_env, s3_settings

START = datetime(2026, 11, 1, 2, 0, tzinfo=UTC)


@dataclass
class Counting:
    """A storage that counts the reads it passes on, and can refuse writes under a prefix:
    a wrapper around a real backend, as restic wraps its backends."""

    inner: Storage
    refuse_writes: str | None = None
    reads: list[str] = field(default_factory=list)

    @property
    def url(self) -> str:
        return self.inner.url

    @property
    def kind(self) -> Kind:
        return self.inner.kind

    def create(
        self, key: str, *, overwrite: bool = False, storage_class: str | None = None
    ) -> AbstractContextManager[Sink]:
        if self.refuse_writes is not None and key.startswith(self.refuse_writes):
            raise StorageError(f"cannot write {key} in {self.url}: HTTP 403 Forbidden")
        return self.inner.create(key, overwrite=overwrite, storage_class=storage_class)

    def open(
        self, key: str, start: int = 0, length: int | None = None
    ) -> AbstractContextManager[Source]:
        if start == 0:  # a whole read may take a second, ranged, request: count it once
            self.reads.append(key)
        return self.inner.open(key, start, length)

    def list(self, prefix: str = "", *, start_after: str | None = None) -> Iterator[ObjectInfo]:
        return self.inner.list(prefix, start_after=start_after)

    def folders(self, prefix: str) -> Iterator[str]:
        return self.inner.folders(prefix)

    def stat(self, key: str) -> ObjectInfo | None:
        return self.inner.stat(key)

    def delete(self, key: str) -> None:
        self.inner.delete(key)

    def leftovers(self, prefix: str = "") -> Iterator[ObjectInfo]:
        return self.inner.leftovers(prefix)


@pytest.fixture(params=["local", "s3"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Storage:
    if request.param == "local":
        return LocalStorage(tmp_path / "repo")
    server: Server = request.getfixturevalue("moto")
    url = f"s3://{BUCKET}/index-{uuid.uuid4().hex[:10]}"
    return open_storage(url, s3_settings(server.endpoint))


@pytest.fixture
def storage(backend: Storage) -> Counting:
    return Counting(backend)


@pytest.fixture
def repo(storage: Counting) -> Repository:
    return Repository.init(storage, ["age1test"])


def commit(
    repo: Repository, n: int, kind: str = "daily", label: str | None = None, artifact: int = 0
) -> str:
    """A backup started n hours after START; with `artifact`, a database artifact that long."""
    started = START + timedelta(hours=n)
    backup_id = f"{started:%Y%m%dT%H%M%SZ}-{kind}-{n:04x}"
    artifacts = {}
    if artifact:
        key = repo.artifact_key(backup_id, "database.pgdump.zst.age")
        write_bytes(repo.storage, key, b"x" * artifact)
        artifacts["database"] = {
            "key": key,
            "content": "pg_dump-custom",
            "codecs": ["zstd", "age"],
            "stored_size": artifact,
            "stored_sha256": "0" * 64,
            "plain_size": artifact,
            "plain_sha256": "0" * 64,
        }
    repo.commit(
        Manifest(
            tool="bika test",
            id=backup_id,
            repository_id=repo.id,
            kind=kind,
            label=label,
            started_at=started,
            finished_at=started + timedelta(seconds=30),
            source={
                "database": "db",
                "host_hash": "0" * 16,
                "server_version": "18.1",
                "pg_dump_version": "18.1",
            },
            artifacts=artifacts,
            tables=[{"schema": "public", "name": "t", "rows": n, "sha256": "0" * 64, "bytes": 1}],
            roles={"status": "skipped"},
        )
    )
    return backup_id


def reference_scan(repo: Repository) -> tuple[list[Manifest], list[DamagedBackup]]:
    """What reading every manifest one by one gives: the index must change none of it."""
    manifests, damaged = [], []
    fresh = Repository.open(repo.storage)
    for backup_id in fresh.backup_ids():
        try:
            manifests.append(fresh.manifest(backup_id))
        except BackupNotFound:
            continue
        except UnusableBackup as exc:
            damaged.append(DamagedBackup(backup_id, exc.reason))
    return sorted(manifests, key=lambda m: (m.started_at, m.id)), damaged


def index_keys(storage: Storage, kind: str = "manifests") -> list[str]:
    return [info.key for info in storage.list(f"{INDEX}{kind}/")]


def manifest_reads(storage: Counting) -> list[str]:
    return [key for key in storage.reads if key.endswith(MANIFEST)]


def test_a_repository_without_index_is_read_in_full_and_gets_one(
    repo: Repository, storage: Counting
) -> None:
    ids = [commit(repo, n) for n in range(5)]
    assert index_keys(storage) == []
    assert repo.scan() == reference_scan(repo)
    assert len(index_keys(storage)) == 1

    storage.reads.clear()
    manifests, damaged = repo.scan()
    assert [m.id for m in manifests] == ids and damaged == []
    assert manifest_reads(storage) == [], "an index that holds every manifest saves every read"
    assert storage.reads == index_keys(storage)


def test_a_backup_the_index_lacks_still_counts_and_only_it_is_read(
    repo: Repository, storage: Counting
) -> None:
    for n in range(4):
        commit(repo, n)
    repo.scan()
    before = index_keys(storage)
    newest = commit(repo, 10, "weekly", "after the index")  # a writer leaves the index stale
    storage.reads.clear()
    manifests, _ = repo.scan()
    assert manifests[-1].id == newest and manifests[-1].label == "after the index"
    assert manifest_reads(storage) == [repo.artifact_key(newest, MANIFEST)]
    after = index_keys(storage)
    assert len(after) == 1 and after != before, "the stale index is replaced, not kept"
    expected = reference_scan(repo)
    storage.reads.clear()
    assert repo.scan() == expected
    assert manifest_reads(storage) == []


def full_listing(storage: Storage) -> list[ObjectInfo]:
    return list(storage.list("backups/"))


def test_an_index_entry_whose_backup_is_gone_does_not_count(
    repo: Repository, storage: Counting
) -> None:
    ids = [commit(repo, n) for n in range(4)]
    repo.scan()
    storage.delete(repo.artifact_key(ids[1], MANIFEST))  # its folder held only the manifest
    manifests, _ = repo.scan()
    assert [m.id for m in manifests] == [ids[0], ids[2], ids[3]]
    assert repo.scan() == reference_scan(repo)


def test_a_backup_prune_deletes_leaves_the_index_before_its_manifest_goes(
    repo: Repository, storage: Counting
) -> None:
    ids = [commit(repo, n) for n in range(3)]
    write_bytes(storage, repo.artifact_key(ids[1], "database.pgdump.zst.age"), b"artifact")
    repo.scan()
    repo.forget([ids[1]])  # as prune does, then the manifest, then the artifacts
    storage.delete(repo.artifact_key(ids[1], MANIFEST))
    assert [m.id for m in repo.scan()[0]] == [ids[0], ids[2]]
    assert repo.scan() == reference_scan(repo)


def test_a_manifest_deleted_from_a_folder_with_artifacts_is_dropped_by_a_full_listing(
    repo: Repository, storage: Counting
) -> None:
    """By hand, not by prune: a reader by folder cannot tell (docs/FORMAT.md, "The index");
    prune, which lists every object, drops the entry."""
    ids = [commit(repo, n) for n in range(3)]
    write_bytes(storage, repo.artifact_key(ids[1], "database.pgdump.zst.age"), b"artifact")
    repo.scan()
    storage.delete(repo.artifact_key(ids[1], MANIFEST))
    assert [m.id for m in repo.scan(full_listing(storage))[0]] == [ids[0], ids[2]]
    assert [m.id for m in repo.scan()[0]] == [ids[0], ids[2]], "and readers by folder after it"


def test_a_manifest_rewritten_under_its_key_is_read_again_by_a_full_listing(
    repo: Repository, storage: Counting
) -> None:
    backup_id = commit(repo, 1)
    repo.scan()
    key = repo.artifact_key(backup_id, MANIFEST)
    data = json.loads(read_bytes(storage, key))
    data["label"] = "edited by hand, longer than before"
    write_bytes(storage, key, json.dumps(data).encode(), overwrite=True)
    manifests, _ = repo.scan(full_listing(storage))
    assert manifests[0].label == "edited by hand, longer than before"


@pytest.mark.parametrize(
    "damage",
    [
        b"not zstd at all",
        b"",
        "truncated",
        "another kind",
        "lying lengths",
    ],
)
def test_a_damaged_index_is_rebuilt_never_an_error(
    repo: Repository, storage: Counting, damage: bytes | str
) -> None:
    import zstandard

    ids = [commit(repo, n) for n in range(3)]
    repo.scan()
    [key] = index_keys(storage)
    good = read_bytes(storage, key)
    plain = zstandard.ZstdDecompressor().decompress(good)
    header, _, body = plain.partition(b"\n")
    meta = json.loads(header)
    if damage == "truncated":
        raw = good[: len(good) // 2]
    elif damage == "another kind":
        raw = zstandard.ZstdCompressor().compress(
            json.dumps({**meta, "kind": "drills"}).encode() + b"\n" + body
        )
    elif damage == "lying lengths":
        meta["records"][0]["length"] += 5
        raw = zstandard.ZstdCompressor().compress(json.dumps(meta).encode() + b"\n" + body)
    else:
        assert isinstance(damage, bytes)
        raw = damage
    write_bytes(storage, key, raw, overwrite=True)
    manifests, damaged = repo.scan()
    assert [m.id for m in manifests] == ids and damaged == []
    assert (manifests, damaged) == reference_scan(repo)
    [rebuilt] = index_keys(storage)
    assert rebuilt != key
    storage.reads.clear()
    repo.scan()
    assert manifest_reads(storage) == [], "the rebuilt index serves the next reader"


def test_an_index_entry_of_other_bytes_than_listed_is_not_believed(
    repo: Repository, storage: Counting
) -> None:
    """An index of an older version of the manifest (its tag no longer matches the listing)."""
    import zstandard

    backup_id = commit(repo, 1)
    repo.scan()
    [key] = index_keys(storage)
    header, _, body = (
        zstandard.ZstdDecompressor().decompress(read_bytes(storage, key)).partition(b"\n")
    )
    meta = json.loads(header)
    forged = body.replace(b'"daily"', b'"manual"')
    meta["records"][0]["tag"] = "1:etag:someone-else"
    write_bytes(
        storage,
        key,
        zstandard.ZstdCompressor().compress(json.dumps(meta).encode() + b"\n" + forged),
        overwrite=True,
    )
    manifests, _ = repo.scan(full_listing(storage))
    assert [(m.id, m.kind) for m in manifests] == [(backup_id, "daily")]


def test_a_damaged_manifest_is_reported_as_without_the_index(
    repo: Repository, storage: Counting
) -> None:
    good = commit(repo, 1)
    bad = commit(repo, 2)
    key = repo.artifact_key(bad, MANIFEST)
    write_bytes(storage, key, b'{"id": "half a manifest', overwrite=True)
    first = repo.scan()
    second = repo.scan()  # from the index, which holds the damaged bytes as they are
    third = repo.scan(full_listing(storage))
    assert first == second == third == reference_scan(repo)
    manifests, damaged = second
    assert [m.id for m in manifests] == [good]
    assert [d.backup_id for d in damaged] == [bad]
    assert "manifest.json is damaged" in damaged[0].reason


def test_a_reader_that_may_not_write_the_index_still_reads_everything(backend: Storage) -> None:
    writer = Repository.init(backend, ["age1test"])
    ids = [commit(writer, n) for n in range(3)]
    read_only = Counting(backend, refuse_writes=INDEX)
    reader = Repository.open(read_only)
    assert [m.id for m in reader.scan()[0]] == ids
    assert index_keys(backend) == []


def test_two_hosts_backing_up_and_listing_at_once_agree_with_the_manifests(
    backend: Storage,
) -> None:
    Repository.init(backend, ["age1test"])
    errors: list[BaseException] = []

    def host(offset: int) -> None:
        try:
            repo = Repository.open(backend)  # each host its own view of the repository
            for n in range(offset, offset + 40, 2):
                commit(repo, n)
                repo.scan()
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=host, args=(k,)) for k in (0, 1)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    repo = Repository.open(backend)
    manifests, _ = repo.scan()
    assert len(manifests) == 40
    assert (manifests, []) == reference_scan(repo)
    assert 1 <= len(index_keys(backend)) <= 2, "each writer removes the indexes it replaced"


def drill(repo: Repository, backup_id: str, finished: datetime, passed: bool = True) -> str:
    return record_drill(
        repo,
        DrillRecord(
            backup_id=backup_id,
            repository_id=repo.id,
            passed=passed,
            started_at=finished - timedelta(seconds=10),
            finished_at=finished,
            target=DrillTarget(kind="embedded", server_version="18.1", database="drill"),
            tools={"bika": "0.1.0"},
            setup_seconds=1.0,
            restore_seconds=2.0,
            verify_seconds=0.5,
            restored_size=1000,
            owners="skipped",
            tables_checked=1,
            rows_checked=1,
            bytes_hashed=1,
            objects_checked=1,
            tables=[],
            objects=[],
            problems=[] if passed else ["table public.t: missing"],
        ),
    )


def test_started_times_since_lists_only_the_backups_since(
    repo: Repository, storage: Counting
) -> None:
    for n in range(6):
        commit(repo, n)
    since = START + timedelta(hours=3)
    assert repo.started_times(since) == [START + timedelta(hours=h) for h in (3, 4, 5)]
    assert repo.started_times() == [START + timedelta(hours=h) for h in range(6)]


def test_the_newest_drill_of_each_backup_comes_through_the_index_as_recorded(
    repo: Repository, storage: Counting
) -> None:
    a, b = commit(repo, 1), commit(repo, 2)
    drill(repo, a, START + timedelta(days=1))
    drill(repo, b, START + timedelta(days=1))
    first = latest_drills(repo)
    assert {k: v.passed for k, v in first.items()} == {a: True, b: True}
    assert len(index_keys(storage, "drills")) == 1
    drill(repo, a, START + timedelta(days=2), passed=False)  # newer: supersedes the cached one
    storage.reads.clear()
    second = latest_drills(repo)
    assert {k: v.passed for k, v in second.items()} == {a: False, b: True}
    assert [k for k in storage.reads if k.startswith("drills/")] == [
        f"drills/{a}/{START + timedelta(days=2):%Y%m%dT%H%M%S}.000Z.json"
    ]
    for info in list(storage.list(f"drills/{b}/")):
        storage.delete(info.key)
    assert set(latest_drills(repo)) == {a}


def test_events_come_through_the_index_as_written(repo: Repository, storage: Counting) -> None:
    def event(hours: int) -> Event:
        at = START + timedelta(hours=hours)
        return Event(
            command="backup",
            outcome="ok",
            started_at=at,
            finished_at=at + timedelta(seconds=5),
            duration_seconds=5,
            user="u",
            host="h",
            pid=1,
            bika_version="0.1.0",
            repository_id=repo.id,
        )

    for hours in range(6):
        write_event(repo, event(hours))
    since = START + timedelta(hours=3)
    assert [e.started_at for e in read_events(storage, repo.url, since)] == [
        START + timedelta(hours=h) for h in (3, 4, 5)
    ]
    write_event(repo, event(7))
    storage.reads.clear()
    assert len(read_events(storage, repo.url)) == 7
    read = sorted(k for k in storage.reads if k.startswith("events/"))
    assert [k[len("events/") : len("events/") + 15] for k in read] == [
        f"{START + timedelta(hours=h):%Y%m%dT%H%M%S}" for h in (0, 1, 2, 7)
    ], "the events the index holds (3, 4, 5) are not read again"


def test_list_prints_the_same_with_a_stale_or_missing_index(moto: Server) -> None:
    url = f"s3://{BUCKET}/cli-index-{uuid.uuid4().hex[:8]}"
    env = s3_env(moto.endpoint)
    storage = open_storage(url, s3_settings(moto.endpoint))
    repo = Repository.init(storage, ["age1test"])
    for n in range(3):
        commit(repo, n)

    def listed() -> dict[str, object]:
        result = run_bika("list", "--repo", url, "--json", env=env)
        assert result.returncode == 0, result.stderr
        data: dict[str, object] = json.loads(result.stdout)
        return data

    without = listed()
    assert len(index_keys(storage)) == 1
    assert listed() == without
    commit(repo, 5)
    stale = listed()
    assert [b["id"] for b in stale["backups"]] == [  # type: ignore[index,union-attr]
        *[b["id"] for b in without["backups"]],  # type: ignore[union-attr]
        repo.backup_ids()[-1],
    ]
    for key in index_keys(storage):
        storage.delete(key)
    assert listed() == stale


def test_an_id_resolves_by_folder_but_only_to_a_backup_with_a_manifest(
    repo: Repository, storage: Counting
) -> None:
    done = commit(repo, 1)
    running = "20261101T040000Z-daily-beef"  # artifacts written, manifest not yet
    write_bytes(storage, repo.artifact_key(running, "database.pgdump.zst.age"), b"partial")
    assert repo.resolve(done) == done
    assert repo.resolve("20261101T0") == done, "the running backup does not make it ambiguous"
    with pytest.raises(BackupNotFound, match="no backup"):
        repo.resolve(running)
    commit(repo, 3)
    with pytest.raises(BackupNotFound, match="give more of the id"):
        repo.resolve("20261101T0")


def test_prune_dry_run_by_folder_plans_what_the_prune_listing_everything_does(
    repo: Repository, storage: Counting, monkeypatch: pytest.MonkeyPatch
) -> None:
    from bika.operations.prune import PruneOptions, prune
    from bika.retention import DEFAULT_POLICY

    ids = [commit(repo, n * 24, artifact=100 + n) for n in range(10)]
    drill(repo, ids[2], START + timedelta(days=3))
    write_bytes(storage, "backups/20261101T230000Z-daily-dead/database.pgdump.zst.age", b"killed")
    write_bytes(storage, "drills/20261101T220000Z-daily-gone/20261102T000000.000Z.json", b"{}")
    # every object more than a day old by then, so the leftovers are judged too
    monkeypatch.setenv("BIKA_NOW", (datetime.now(UTC) + timedelta(days=2)).isoformat())
    repo.scan()
    planned = prune(repo, PruneOptions(DEFAULT_POLICY, dry_run=True))
    done = prune(repo, PruneOptions(DEFAULT_POLICY))
    assert planned.backups == done.backups
    assert planned.leftovers == done.leftovers and len(done.leftovers) == 2
    assert done.dropped and done.deleted_objects > 0
    kept = [b.id for b in done.backups if b.keep]
    assert [m.id for m in repo.scan()[0]] == kept
    assert repo.scan() == reference_scan(repo)


# signed repositories: signatures come through the index, and are verified every time --------


@pytest.fixture
def signed(repo: Repository, tmp_path: Path) -> Repository:
    """The repository with a signing key, and a reader that pins it (accepts only its
    signatures)."""
    key = tmp_path / "signing.key"
    public = generate_signing_key(key)
    repo.trust = Trust(pinned=frozenset({public}), signing_key=key)
    return repo


def forge_index(storage: Storage, kind: str, old: bytes, new: bytes) -> None:
    """Rewrite the newest index object of `kind` with `old` replaced by `new` in the records'
    bytes (as long: the header's lengths still add up), as whoever can write index/ could."""
    import zstandard

    assert len(old) == len(new)
    key = max(index_keys(storage, kind))
    plain = zstandard.ZstdDecompressor().decompress(read_bytes(storage, key))
    assert old in plain
    forged = zstandard.ZstdCompressor().compress(plain.replace(old, new))
    write_bytes(storage, key, forged, overwrite=True)


def test_signatures_come_through_the_index_with_the_manifests(
    signed: Repository, storage: Counting
) -> None:
    ids = [commit(signed, n) for n in range(3)]
    signed.scan()
    storage.reads.clear()
    manifests, damaged = signed.scan()
    assert [m.id for m in manifests] == ids and damaged == []
    assert [k for k in storage.reads if k.startswith("backups/")] == [], (
        "neither a manifest nor a signature is read: both come from the index"
    )
    signed.scan(full_listing(storage))  # reads each once more, to record its tag
    storage.reads.clear()
    assert [m.id for m in signed.scan(full_listing(storage))[0]] == ids
    assert [k for k in storage.reads if k.startswith("backups/")] == []


def test_a_manifest_forged_in_the_index_is_refused_by_its_signature(
    signed: Repository, storage: Counting
) -> None:
    """The index adds no trust: a manifest edited in it is judged by its signature as one
    edited in its folder would be."""
    good, bad = commit(signed, 1), commit(signed, 2)
    signed.scan()
    forge_index(storage, "manifests", b'"rows": 2', b'"rows": 9')
    manifests, damaged = signed.scan()
    assert [m.id for m in manifests] == [good]
    assert [d.backup_id for d in damaged] == [bad]
    assert "does not match its signature" in damaged[0].reason


def test_a_signature_forged_in_the_index_is_refused(signed: Repository, storage: Counting) -> None:
    backup_id = commit(signed, 1)
    signed.scan()
    sig = read_bytes(storage, signature_key(signed.artifact_key(backup_id, MANIFEST)))
    signature = json.loads(sig)["signature"].encode()
    flipped = signature[:10] + (b"A" if signature[10:11] != b"A" else b"B") + signature[11:]
    forge_index(storage, "manifests", signature, flipped)
    manifests, damaged = signed.scan()
    assert manifests == [] and [d.backup_id for d in damaged] == [backup_id]
    assert "does not match its signature" in damaged[0].reason


def test_a_manifest_whose_signature_is_deleted_is_unsigned_to_a_full_listing(
    signed: Repository, storage: Counting
) -> None:
    backup_id = commit(signed, 1)
    signed.scan(full_listing(storage))  # the index holds the manifest and its signature
    storage.delete(signature_key(signed.artifact_key(backup_id, MANIFEST)))
    manifests, damaged = signed.scan(full_listing(storage))
    assert manifests == [] and [d.backup_id for d in damaged] == [backup_id]
    assert "is not signed" in damaged[0].reason


def test_a_drill_record_forged_in_the_index_counts_as_no_drill(
    signed: Repository, storage: Counting
) -> None:
    a, b = commit(signed, 1), commit(signed, 2)
    drill(signed, a, START + timedelta(days=1))
    drill(signed, b, START + timedelta(days=1), passed=False)
    assert {k: v.passed for k, v in latest_drills(signed).items()} == {a: True, b: False}
    storage.reads.clear()
    assert {k: v.passed for k, v in latest_drills(signed).items()} == {a: True, b: False}
    assert [k for k in storage.reads if k.startswith("drills/")] == []
    forge_index(storage, "drills", b'"passed": false', b'"passed": true ')
    assert {k: v.passed for k, v in latest_drills(signed).items()} == {a: True}


def test_a_scan_leaves_the_garbage_collector_as_it_found_it(repo: Repository) -> None:
    import gc

    commit(repo, 1)
    write_bytes(repo.storage, repo.artifact_key("20261101T030000Z-daily-dead", MANIFEST), b"{")
    assert gc.isenabled()
    manifests, damaged = repo.scan()  # paused while it builds the models, then back on
    assert len(manifests) == 1 and len(damaged) == 1
    assert gc.isenabled()
    gc.disable()
    try:
        repo.scan()
        assert not gc.isenabled(), "a caller's choice to run without it is kept"
    finally:
        gc.enable()
