"""Point-in-time recovery: pick the base backup and timeline for a target, check that the
archived WAL reaches it, restore the files, write the recovery settings, optionally recover.

The repository alone decides what is recoverable: physical/ (base backups) and wal/ (segments
and timeline history files), read as in docs/FORMAT.md.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import tarfile
import tempfile
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from bika.errors import BikaError, IntegrityError, ObjectNotFound, RestoreError
from bika.operations.wal_status import listing
from bika.postgres import binaries
from bika.postgres.basebackup import pg_combinebackup_argv, pg_verifybackup_argv
from bika.postgres.recovery import (
    Recovered,
    Target,
    own_for_server,
    recover,
    recovery_settings,
    server_bin_dir,
    write_recovery,
)
from bika.repository import Repository
from bika.repository import physical as store
from bika.repository.manifest import Artifact
from bika.repository.physical import PhysicalManifest
from bika.storage import read_bytes
from bika.stream import StreamStats, decode
from bika.wal import names
from bika.wal.inventory import Stretch, WalInventory, parse_history

_LOG = logging.getLogger(__name__)


def inventory(repo: Repository, identities: list[object], segment_size: int) -> WalInventory:
    """The archive's segments, and its history files read (they need the identity)."""
    found = listing(repo, segment_size)
    for info in repo.storage.list(names.HISTORY_FOLDER):
        parsed = names.parse_object(info.key)
        if parsed is not None:
            text = _plain(repo, info.key, identities).decode("utf-8", "replace")
            found.histories[int(parsed[0][:8], 16)] = parse_history(text)
    return found


def _plain(
    repo: Repository, key: str, identities: list[object], artifact: Artifact | None = None
) -> bytes:
    """An object's plaintext; with `artifact`, checked against what the manifest says."""

    class _Buffer:
        def __init__(self) -> None:
            self.data = bytearray()

        def write(self, data: bytes) -> int:
            self.data += data
            return len(data)

    sink = _Buffer()
    with repo.storage.open(key) as source:
        stats = decode(source, sink, identities, name=key)
    if artifact is not None:
        _check_artifact(artifact, stats)
    return bytes(sink.data)


def _check_artifact(artifact: Artifact, stats: StreamStats) -> None:
    """The bytes read must be the ones the (signed) manifest describes: that is what makes a
    signature on the manifest cover the base backup too."""
    if (stats.stored_sha256, stats.stored_size, stats.plain_sha256, stats.plain_size) != (
        artifact.stored_sha256,
        artifact.stored_size,
        artifact.plain_sha256,
        artifact.plain_size,
    ):
        raise IntegrityError(
            f"{artifact.key} does not match the backup's manifest (sha256 or size): it was"
            " damaged or replaced; do not start the restored copy, restore another backup"
        )


@dataclass(frozen=True)
class RecoveryPlan:
    backup: PhysicalManifest
    timeline: int
    target: Target
    reachable_until: datetime | None
    """When the last segment of the contiguous WAL after the backup was stored."""
    last_segment: str


def _window(plans: list[tuple[PhysicalManifest, Stretch, str | None]]) -> str:
    if not plans:
        return "no physical backup is in the repository: take one with bika backup --physical"
    oldest = plans[0][0]
    newest_end = max((s.last_archived_at for _, s, _ in plans if s.last_archived_at), default=None)
    end = f"{newest_end:%Y-%m-%d %H:%M:%S}+00" if newest_end else "its consistency point"
    gap = next((g for _, _, g in reversed(plans) if g), None)
    hole = f" (segment {gap} is missing from the archive)" if gap else ""
    return (
        f"recoverable window: {oldest.finished_at:%Y-%m-%d %H:%M:%S}+00 to {end}"
        f" on timeline {plans[-1][1].timeline}{hole}"
    )


def plan_recovery(
    repo: Repository,
    identities: list[object],
    target: Target,
    *,
    timeline: int | None = None,
    backup_id: str | None = None,
) -> RecoveryPlan:
    backups, refused = store.scan(repo)
    for bad in refused:
        if backup_id is not None and bad.backup_id == backup_id:
            raise RestoreError(f"physical backup {backup_id} cannot be used: {bad.reason}")
        # an older usable base backup with more WAL reaches the same target
        _LOG.warning(f"physical backup {bad.backup_id} not used: {bad.reason}")
    if not backups and refused:
        raise RestoreError(
            f"no physical backup in {repo.url} can be used; {refused[-1].backup_id}:"
            f" {refused[-1].reason}"
        )
    cluster = _cluster(repo)
    if cluster is not None:
        backups = [b for b in backups if b.source.system_identifier == cluster["system_identifier"]]
    present = {b.id for b in backups}
    if backup_id is not None:
        backups = [b for b in backups if b.id == backup_id]
        if not backups:
            raise RestoreError(f"no physical backup {backup_id!r} of this cluster in {repo.url}")
    if not backups:
        raise RestoreError(_window([]))
    size = backups[0].source.wal_segment_size
    wal = inventory(repo, identities, size)
    plans = []
    for backup in backups:
        start = names.parse_segment(backup.wal.start_segment, size)
        stretch, gap = wal.stretch_from(timeline or backup.wal.timeline, start)
        plans.append((backup, stretch, gap))
    when = _parse_time(target.time) if target.time else None
    chosen = [
        p
        for p in plans
        if (when is None or p[0].finished_at <= when)
        and (
            target.lsn is None or names.parse_lsn(p[0].wal.stop_lsn) <= names.parse_lsn(target.lsn)
        )
    ]
    if not chosen:
        raise RestoreError(f"the target is before the oldest physical backup; {_window(plans)}")
    backup, stretch, gap = chosen[-1]
    missing = store.missing_from_chain(backup, present)
    if missing:
        older = [p[0].id for p in chosen if not store.missing_from_chain(p[0], present)]
        instead = (
            f"; restore an older backup instead: bika restore --physical {older[-1]} …"
            if older
            else ""
        )
        raise RestoreError(
            f"{backup.kind} backup {backup.id} builds on {', '.join(missing)}, which is not in"
            f" the repository (deleted or damaged), so it cannot be restored{instead}"
        )
    if not stretch.last or stretch.last < backup.wal.stop_segment:
        raise RestoreError(
            f"the WAL backup {backup.id} needs is not all archived (segment {gap} is missing);"
            f" {_window(plans)}"
        )
    if timeline is None:
        forks = wal.descendants(backup.wal.timeline, names.parse_lsn(backup.wal.start_lsn))
        if forks:
            listing = ", ".join(
                f"{t} (from {names.format_lsn(wal.histories[t][-1].lsn)},"
                f" {wal.histories[t][-1].reason})"
                for t in forks
            )
            raise RestoreError(
                f"timeline {backup.wal.timeline} of backup {backup.id} was forked later into"
                f" timeline {listing}: say which to follow with --timeline N"
                f" ({backup.wal.timeline} = the original history)"
            )
        timeline = backup.wal.timeline
    if target.latest and gap is not None:
        reached = stretch.last_archived_at
        raise RestoreError(
            f"segment {gap} is missing from the archive, so the latest point cannot be reached;"
            f" recoverable from {backup.finished_at:%Y-%m-%d %H:%M:%S}+00 to"
            + (f" {reached:%Y-%m-%d %H:%M:%S}+00" if reached else " its consistency point")
            + " (give --time up to then), or use a later base backup"
        )
    if (
        when is not None
        and stretch.last_archived_at is not None
        and when > stretch.last_archived_at
    ):
        where = f"segment {gap} is missing" if gap else "that is after the last archived WAL"
        raise RestoreError(
            f"cannot recover to {target.time}: {where}; recoverable from"
            f" {backup.finished_at:%Y-%m-%d %H:%M:%S}+00 to"
            f" {stretch.last_archived_at:%Y-%m-%d %H:%M:%S}+00 on timeline {timeline}"
        )
    return RecoveryPlan(backup, timeline, target, stretch.last_archived_at, stretch.last)


def _cluster(repo: Repository) -> dict[str, str] | None:
    try:
        return dict(json.loads(read_bytes(repo.storage, names.CLUSTER_KEY)))
    except ObjectNotFound:
        return None


def _parse_time(text: str) -> datetime:
    try:
        parsed = datetime.fromisoformat(text.strip().replace(" ", "T", 1))
    except ValueError:
        raise RestoreError(
            f"{text!r} is not a time; write it as '2026-11-30 14:02:11+00'"
        ) from None
    if parsed.tzinfo is None:
        raise RestoreError(f"{text!r} has no time zone; add one, as in '2026-11-30 14:02:11+00'")
    return parsed.astimezone(UTC)


@dataclass(frozen=True)
class PhysicalRestore:
    plan: RecoveryPlan
    data_dir: Path
    recovered: Recovered | None


def restore_physical(
    repo: Repository,
    identities: list[object],
    plan: RecoveryPlan,
    data_dir: Path,
    *,
    restore_command: str,
    start: bool = False,
    pg_bin_dir: str | None = None,
) -> PhysicalRestore:
    backup = plan.backup
    major = backup.source.server_version_num // 10000
    bin_dir = server_bin_dir(major, pg_bin_dir) if start else None  # fail before the work
    if data_dir.exists() and any(data_dir.iterdir()):
        raise RestoreError(f"{data_dir} is not empty; restore into a new or empty folder")
    data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    data_dir.chmod(0o700)
    if backup.chain:
        _combine(repo, identities, backup, data_dir, _combine_tool(major, pg_bin_dir))
    else:
        _extract(repo, identities, backup, data_dir)
        _write_server_manifest(repo, identities, backup, data_dir)
    manifest = data_dir / "backup_manifest"
    _verify(data_dir, manifest)
    write_recovery(data_dir, recovery_settings(restore_command, plan.target, plan.timeline))
    own_for_server(data_dir)
    recovered = recover(bin_dir, data_dir) if bin_dir is not None else None
    return PhysicalRestore(plan, data_dir, recovered)


def _write_server_manifest(
    repo: Repository, identities: list[object], backup: PhysicalManifest, folder: Path
) -> None:
    server_manifest = backup.artifacts["backup_manifest"]
    (folder / "backup_manifest").write_bytes(
        _plain(repo, server_manifest.key, identities, server_manifest)
    )


def _combine_tool(major: int, pg_bin_dir: str | None) -> Path:
    """pg_combinebackup of the backup's major version when installed (its checks of pg_control
    are version-bound), else the bundled 18."""
    try:
        folder = server_bin_dir(major, pg_bin_dir)
    except BikaError:
        folder = binaries.embedded_bin_dir()
    tool = folder / "pg_combinebackup"
    return (
        tool if tool.is_file() else binaries.tool("pg_combinebackup", binaries.embedded_bin_dir())
    )


def _combine(
    repo: Repository,
    identities: list[object],
    backup: PhysicalManifest,
    data_dir: Path,
    tool: Path,
) -> None:
    """An incremental: extract the full backup and every incremental of the chain (each with
    its backup_manifest) beside data_dir, pg_combinebackup them into it, delete the inputs."""
    chain = []
    for backup_id in backup.chain:
        try:
            chain.append(store.read(repo, backup_id))
        except BikaError as exc:
            raise RestoreError(
                f"incremental backup {backup.id} builds on {backup_id}, which cannot be read: {exc}"
            ) from None
    chain.append(backup)
    work = Path(tempfile.mkdtemp(prefix=".bika-combine-", dir=data_dir.parent))
    try:
        inputs = []
        for part in chain:
            folder = work / part.id
            folder.mkdir(mode=0o700)
            _extract(repo, identities, part, folder)
            _write_server_manifest(repo, identities, part, folder)
            inputs.append(folder)
        done = subprocess.run(
            [str(a) for a in pg_combinebackup_argv(tool, inputs, data_dir)],
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0:
            said = " | ".join((done.stderr or done.stdout).strip().splitlines()[-3:])
            version = binaries.tool_version(tool)
            raise RestoreError(
                f"pg_combinebackup {version} could not combine {backup.id}'s chain: {said}"
                f" (a PostgreSQL {backup.source.server_version} backup wants its own major's"
                " pg_combinebackup: install it, e.g. apt-get install postgresql-"
                f"{backup.source.server_version_num // 10000}, or set pg_bin_dir)"
            )
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _extract(
    repo: Repository, identities: list[object], backup: PhysicalManifest, data_dir: Path
) -> None:
    """Decrypt → decompress on one thread, untar on this one, through a pipe."""
    read_fd, write_fd = os.pipe()
    failure: list[BaseException] = []
    base = backup.artifacts["base"]
    key = base.key

    def produce() -> None:
        try:
            with os.fdopen(write_fd, "wb") as sink, repo.storage.open(key) as source:
                _check_artifact(base, decode(source, sink, identities, name=key))
        except BaseException as exc:
            failure.append(exc)

    thread = threading.Thread(target=produce, daemon=True)
    thread.start()
    with os.fdopen(read_fd, "rb") as pipe:
        try:
            with tarfile.open(fileobj=pipe, mode="r|") as tar:
                if hasattr(tarfile, "data_filter"):
                    tar.extractall(data_dir, filter="data")
                else:  # Python 3.11 before 3.11.4: the same refusals by hand
                    for member in tar:
                        _check_member(member)
                        tar.extract(member, data_dir)
        except tarfile.TarError as exc:
            if not failure:
                raise RestoreError(f"{key} is not a readable tar: {exc}") from None
        finally:
            pipe.read()  # let the producer finish even if the tar ended early
    thread.join()
    if failure:
        raise failure[0]
    if not (data_dir / "backup_label").is_file():
        raise RestoreError(f"{key} holds no backup_label; it is not a pg_basebackup backup")


def _check_member(member: tarfile.TarInfo) -> None:
    parts = Path(member.name).parts
    link = Path(member.linkname).parts if member.issym() or member.islnk() else ()
    if (
        member.name.startswith("/")
        or ".." in parts
        or ".." in link
        or (member.issym() and member.linkname.startswith("/") and member.name != "pg_wal")
    ):
        raise RestoreError(f"the base backup's tar holds an unsafe member {member.name!r}")
    if not (member.isfile() or member.isdir() or member.issym()):
        raise RestoreError(f"the base backup's tar holds a special file {member.name!r}")


def _verify(data_dir: Path, manifest: Path) -> None:
    tool = binaries.tool("pg_verifybackup", binaries.embedded_bin_dir())
    done = subprocess.run(
        [str(a) for a in pg_verifybackup_argv(tool, data_dir, manifest)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        said = " | ".join((done.stderr or done.stdout).strip().splitlines()[-3:])
        raise RestoreError(f"pg_verifybackup found the restored files damaged: {said}")
