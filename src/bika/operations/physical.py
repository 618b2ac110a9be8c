"""Physical backups: pg_basebackup's tar → zstd → age → physical/<id>/, the server's
backup_manifest beside it, then bika's manifest, last (a backup exists once that is written).

An incremental backup (PostgreSQL 17+, summarize_wal = on) is taken against the newest physical
backup's backup_manifest and names its chain; restore combines them (operations/pitr.py).

The WAL from the backup's start to its stop must be in wal/ (archive_command = 'bika wal push
%p'): the backup waits for it, and is refused without it.
"""

from __future__ import annotations

import hashlib
import io
import json
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

import bika
from bika import clock
from bika.errors import DumpError, ObjectNotFound
from bika.operations.backup import artifact_of
from bika.postgres import binaries
from bika.postgres.basebackup import (
    TarTap,
    cluster_facts,
    incremental_refusal,
    parse_backup_label,
    pg_basebackup_argv,
    wal_ranges,
)
from bika.postgres.connection import ConnInfo
from bika.postgres.process import last_error_lines, run
from bika.repository import Repository
from bika.repository import physical as store
from bika.repository.physical import (
    BASE_ARTIFACT,
    MANIFEST,
    SERVER_MANIFEST_ARTIFACT,
    PhysicalManifest,
    PhysicalSource,
    WalRange,
)
from bika.repository.repository import new_backup_id
from bika.repository.signatures import SIG_SUFFIX
from bika.state import state_dir
from bika.storage import read_bytes
from bika.stream import Progress, decode, encode
from bika.wal import names

WAL_WAIT = 120.0  # seconds a finished backup waits for its last segment to be archived
BASE_LEVEL = 1  # zstd level of base backups: data files compress well at 1, and fast


@dataclass
class PhysicalOptions:
    label: str | None = None
    compression_threads: int = 0
    storage_class: str | None = None
    incremental: bool = False
    identities: list[object] | None = None
    """To read the parent's backup_manifest when this host's copy of it is not there."""


def take_physical_backup(
    repo: Repository, conn: ConnInfo, options: PhysicalOptions, progress: Progress | None = None
) -> PhysicalManifest:
    facts = cluster_facts(conn)
    where = conn.redacted()
    if facts.server_version_num < 150000:
        raise DumpError(
            f"{where} runs PostgreSQL {facts.server_version}; physical backups need 15 or newer"
        )
    if facts.tablespaces:
        raise DumpError(
            f"{where} has tablespaces besides pg_default ({', '.join(facts.tablespaces)}):"
            " bika streams a physical backup as one tar, which holds only the data directory,"
            " so it cannot back them up yet; move their tables to pg_default (ALTER TABLE …"
            " SET TABLESPACE pg_default) or use a logical backup (bika backup)"
        )
    if facts.archive_mode == "off" and not facts.streaming_slots:
        raise DumpError(
            f"{where} neither archives its WAL (archive_mode = off) nor streams it over a"
            " replication slot, so no physical backup of it could be restored: set"
            " archive_mode = on and archive_command = 'bika wal push %p' and restart it, or run"
            " bika wal receive (README, Point-in-time recovery), then back up again"
        )
    _check_cluster(repo, facts.system_identifier)
    parent: PhysicalManifest | None = None
    if options.incremental:
        refusal = incremental_refusal(facts)
        if refusal is not None:
            raise DumpError(f"no incremental backup of {where}: {refusal}")
        parent = _parent(repo, facts.system_identifier, where)
    bin_dir = binaries.embedded_bin_dir()
    pg_basebackup = binaries.tool("pg_basebackup", bin_dir)
    recipients = _recipients(repo)
    started = clock.now()
    backup_id = new_backup_id("incremental" if parent else "physical", started)
    conninfo, env = conn.libpq_args()
    base_key = store.prefix(backup_id) + BASE_ARTIFACT
    with _removed_unless_committed(repo, backup_id), tempfile.TemporaryDirectory() as scratch:
        against = None
        if parent is not None:
            against = Path(scratch) / "parent_backup_manifest"
            against.write_bytes(_parent_manifest(repo, parent, options.identities))
        tap = TarTap()
        with (
            run(pg_basebackup_argv(pg_basebackup, conninfo, against), conn=conn, env=env) as child,
            repo.storage.create(base_key, storage_class=options.storage_class) as sink,
        ):
            stats = encode(
                child.stdout,
                sink,
                recipients,
                level=BASE_LEVEL,
                threads=options.compression_threads or -1,
                tap=tap.feed,
                progress=progress,
            )
            if child.wait() != 0:
                hint = ""
                if parent is not None:
                    hint = (
                        f" (an incremental needs the server's WAL summaries since {parent.id}"
                        " started: if summarize_wal was off then or wal_summary_keep_time"
                        " removed them, take a full backup: bika backup --physical)"
                    )
                raise DumpError(
                    f"pg_basebackup of {where} failed: {last_error_lines(child.stderr_text())}"
                    + hint
                )
        label_text = tap.members.get("backup_label")
        server_manifest = tap.members.get("backup_manifest")
        if label_text is None or server_manifest is None:
            raise DumpError(
                f"pg_basebackup of {where} wrote no backup_label or backup_manifest; is it"
                " PostgreSQL 15 or newer?"
            )
        label = parse_backup_label(label_text.decode("utf-8", "replace"))
        ranges = wal_ranges(server_manifest)
        stop_lsn = names.parse_lsn(str(ranges[-1]["End-LSN"]))
        size = facts.wal_segment_size
        stop = names.segment_of_lsn(max(stop_lsn - 1, 0), int(ranges[-1]["Timeline"]), size)
        manifest_key = store.prefix(backup_id) + SERVER_MANIFEST_ARTIFACT
        with repo.storage.create(manifest_key) as sink:
            manifest_stats = encode(
                io.BytesIO(server_manifest), sink, recipients, level=3, threads=0
            )
        wal = WalRange(
            timeline=label.timeline,
            start_lsn=label.start_lsn,
            stop_lsn=names.format_lsn(stop_lsn),
            start_segment=label.start_segment,
            stop_segment=stop.name(size),
        )
        _wait_for_wal(repo, wal.stop_segment, where)
        manifest = PhysicalManifest(
            tool=f"bika {bika.__version__}",
            id=backup_id,
            repository_id=repo.id,
            kind="incremental" if parent else "physical",
            label=options.label,
            parent=parent.id if parent else None,
            chain=[*parent.chain, parent.id] if parent else [],
            started_at=started,
            finished_at=clock.now(),
            source=PhysicalSource(
                host_hash=conn.host_hash(),
                server_version=facts.server_version,
                server_version_num=facts.server_version_num,
                system_identifier=facts.system_identifier,
                wal_segment_size=size,
                pg_basebackup_version=binaries.tool_version(pg_basebackup),
                user=conn.params.get("user"),
            ),
            wal=wal,
            files=tap.files,
            artifacts={
                "base": artifact_of(base_key, "tar", stats),
                "backup_manifest": artifact_of(manifest_key, "pg-backup-manifest", manifest_stats),
            },
        )
        store.commit(repo, manifest)
    _remember_manifest(repo, backup_id, server_manifest)
    return manifest


def _parent(repo: Repository, system_identifier: str, where: str) -> PhysicalManifest:
    """The newest physical backup of this cluster, full or incremental."""
    mine = [b for b in store.scan(repo)[0] if b.source.system_identifier == system_identifier]
    if not mine:
        raise DumpError(
            f"no incremental backup of {where}: the repository has no physical backup of this"
            " cluster to build on; take a full one first (bika backup --physical)"
        )
    parent = max(mine, key=lambda b: b.finished_at)
    present = {b.id for b in mine}
    missing = store.missing_from_chain(parent, present)
    if missing:
        raise DumpError(
            f"no incremental backup of {where}: the newest backup {parent.id} builds on"
            f" {', '.join(missing)}, which is not in the repository; take a full backup"
            " (bika backup --physical)"
        )
    return parent


def manifest_cache(repository_id: str) -> Path:
    """$XDG_STATE_HOME/bika/backup-manifests/<repository id>/: this host's plaintext copy of
    the newest physical backup's backup_manifest, which the next incremental is taken against
    without the private key (the host read the whole cluster anyway)."""
    return state_dir() / "backup-manifests" / repository_id


def _remember_manifest(repo: Repository, backup_id: str, server_manifest: bytes) -> None:
    folder = manifest_cache(repo.id)
    with suppress(OSError):  # only a convenience: without it the next incremental needs the key
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        path = folder / backup_id
        temp = path.with_suffix(".tmp")
        temp.write_bytes(server_manifest)
        temp.chmod(0o600)
        temp.replace(path)
        for old in folder.iterdir():
            if old.name != backup_id:
                old.unlink()


def _parent_manifest(
    repo: Repository, parent: PhysicalManifest, identities: list[object] | None
) -> bytes:
    """The parent's backup_manifest: this host's copy when its sha256 is the stored one's,
    else decrypted from the repository (needs the identity)."""
    artifact = parent.artifacts["backup_manifest"]
    with suppress(OSError):
        cached = (manifest_cache(repo.id) / parent.id).read_bytes()
        if hashlib.sha256(cached).hexdigest() == artifact.plain_sha256:
            return cached
    if not identities:
        raise DumpError(
            f"an incremental backup is taken against {parent.id}'s backup_manifest, which this"
            " host has no copy of (it took the backup elsewhere) and which is encrypted: set"
            " identity (BIKA_IDENTITY or identity in bika.toml) to read it, or take a full"
            " backup here"
        )
    sink = io.BytesIO()
    with repo.storage.open(artifact.key) as source:
        decode(source, sink, identities, name=artifact.key)
    return sink.getvalue()


def _check_cluster(repo: Repository, system_identifier: str) -> None:
    try:
        cluster = json.loads(read_bytes(repo.storage, names.CLUSTER_KEY))
    except ObjectNotFound:
        return  # nothing archived yet: the backup waits for its WAL below
    if cluster.get("system_identifier") != system_identifier:
        raise DumpError(
            f"this repository archives the WAL of cluster {cluster.get('system_identifier')},"
            f" not of this one ({system_identifier}): give each cluster its own repository"
        )


def _wait_for_wal(repo: Repository, segment: str, where: str) -> None:
    deadline = time.monotonic() + WAL_WAIT
    prefix = names.listing_prefix(segment)
    while True:
        if any(True for _ in repo.storage.list(prefix)):
            return
        if time.monotonic() > deadline:
            raise DumpError(
                f"the backup of {where} is done but its last WAL segment {segment} was not"
                f" archived in {WAL_WAIT:.0f} s; check that archive_command is 'bika wal push"
                " %p' and pg_stat_archiver for failures (or, streaming, that bika wal receive"
                " stores into this repository)"
            )
        time.sleep(0.5)


@contextmanager
def _removed_unless_committed(repo: Repository, backup_id: str) -> Iterator[None]:
    try:
        yield
    except BaseException:
        for name in (BASE_ARTIFACT, SERVER_MANIFEST_ARTIFACT, MANIFEST, MANIFEST + SIG_SUFFIX):
            with suppress(Exception):
                repo.storage.delete(store.prefix(backup_id) + name)
        raise


def _recipients(repo: Repository) -> list[object]:
    from bika.crypto import parse_recipients

    return parse_recipients(repo.recipients)
