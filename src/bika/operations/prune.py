"""Pruning: apply the retention policy, then delete what it drops and what failed runs left.

Inside the repository's exclusive lock (repository/locks.py) the manifests are read again and
judged by retention.decide(); each dropped backup loses its manifest FIRST — so a half-deleted
backup is already invisible — then its artifacts and drills/<id>/. Leftovers of failed or killed
runs (temp files, empty folders, artifacts without a manifest, drill records of a backup that no
longer exists) go once they are older than a day, so a backup still running is never touched;
nothing that started after the prune did is deleted.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from bika import clock
from bika.repository import Repository, physical
from bika.repository.drills import DRILLS
from bika.repository.locks import exclusive_lock
from bika.repository.manifest import Manifest
from bika.repository.repository import BACKUPS, MANIFEST
from bika.retention import MONTHLY, Backup, Policy, decide
from bika.storage import ObjectInfo
from bika.storage.classes import minimum_days
from bika.units import size
from bika.wal import names
from bika.wal.expiry import DEFAULT_WINDOW, BaseBackup, expire

LEFTOVER_AGE = timedelta(days=1)


@dataclass
class PruneOptions:
    policy: Policy
    dry_run: bool = False
    break_lock: bool = False
    storage_classes: Mapping[str, str] = field(default_factory=dict)
    """[storage] classes: kind → class, to say what deleting early costs."""
    pitr_window: timedelta = DEFAULT_WINDOW
    """Physical backups and WAL kept so that any point this far back can be recovered."""


@dataclass(frozen=True)
class BackupVerdict:
    id: str
    kind: str
    started_at: datetime
    age: timedelta
    keep: bool
    reason: str
    roles: tuple[str, ...]
    stored_size: int
    """Bytes it holds in the repository: artifacts, manifest and drill records."""


@dataclass(frozen=True)
class Leftover:
    key: str
    size: int
    why: str


@dataclass
class PruneReport:
    repository: str
    now: datetime
    dry_run: bool
    backups: list[BackupVerdict] = field(default_factory=list)
    leftovers: list[Leftover] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    deleted_objects: int = 0
    freed_bytes: int = 0

    @property
    def dropped(self) -> list[BackupVerdict]:
        return [b for b in self.backups if not b.keep]


def prune(
    repo: Repository, options: PruneOptions, on_note: Callable[[str], None] = lambda _: None
) -> PruneReport:
    now = clock.now()
    report = PruneReport(repo.url, now, options.dry_run)
    if options.dry_run:
        _plan(repo, options, report)
        _prune_physical(repo, options, report, None)
        return report
    with exclusive_lock(repo, "prune", break_lock=options.break_lock, on_note=on_note) as lock:
        objects = _plan(repo, options, report)

        def delete(info: ObjectInfo) -> None:
            lock.renew()
            repo.storage.delete(info.key)
            report.deleted_objects += 1
            report.freed_bytes += info.size

        # out of the index first: a reader listing by folder would see them until their
        # folders are empty
        repo.forget(verdict.id for verdict in report.dropped)
        for verdict in report.dropped:
            owned = objects.get(verdict.id, [])
            manifest_key = repo.artifact_key(verdict.id, MANIFEST)
            # the manifest first: from here on the backup does not exist
            for info in sorted(owned, key=lambda i: i.key != manifest_key):
                delete(info)
        for leftover in report.leftovers:
            delete(ObjectInfo(leftover.key, leftover.size))
        _prune_physical(repo, options, report, delete)
    return report


def _prune_physical(
    repo: Repository,
    options: PruneOptions,
    report: PruneReport,
    delete: Callable[[ObjectInfo], None] | None,
) -> None:
    """Physical backups outside the PITR window (but the newest before it), then the WAL no
    kept physical backup needs; `delete` None: a dry run, which only reports."""
    backups, refused = physical.scan(repo)
    # like a logical one: a physical backup whose manifest cannot be used is not judged and
    # its objects stay (the WAL plan below is of the usable ones)
    for bad in refused:
        report.notes.append(f"kept physical backup {bad.backup_id}: {bad.reason}")
    if not backups:
        return
    now = report.now
    plan = expire(
        [BaseBackup(b.id, b.finished_at, b.wal.start_segment, tuple(b.chain)) for b in backups],
        now,
        options.pitr_window,
    )
    needed_by = {parent: b.id for b in backups if b.id in plan.keep for parent in reversed(b.chain)}
    owned: dict[str, list[ObjectInfo]] = {}
    for info in repo.storage.list(physical.PHYSICAL):
        owned.setdefault(info.key[len(physical.PHYSICAL) :].split("/")[0], []).append(info)
    for backup in backups:
        keep = backup.id in plan.keep
        report.backups.append(
            BackupVerdict(
                id=backup.id,
                kind="physical",
                started_at=backup.started_at,
                age=now - backup.started_at,
                keep=keep,
                reason=_physical_reason(backup.id, keep, needed_by, options.pitr_window),
                roles=(),
                stored_size=sum(i.size for i in owned.get(backup.id, [])),
            )
        )
    size_of = backups[0].source.wal_segment_size
    wal = {
        parsed[0]: info
        for info in repo.storage.list(names.WAL_PREFIX)
        if (parsed := names.parse_object(info.key)) is not None
    }
    doomed = plan.wal_to_delete(sorted(wal), size_of)
    freed = sum(wal[n].size for n in doomed)
    if doomed:
        verb = "deleted" if delete is not None else "would delete"
        report.notes.append(
            f"{verb} {len(doomed)} WAL files ({size(freed)}) before {plan.oldest_needed}, which"
            " no kept physical backup needs"
        )
    if delete is None:
        return
    for backup_id in plan.drop:
        manifest_key = f"{physical.prefix(backup_id)}{physical.MANIFEST}"
        for info in sorted(owned.get(backup_id, []), key=lambda i: i.key != manifest_key):
            delete(info)
    for name in doomed:
        delete(wal[name])


def _physical_reason(
    backup_id: str, keep: bool, needed_by: dict[str, str], window: timedelta
) -> str:
    if not keep:
        return f"older than the PITR window ({_days(window)})"
    if backup_id in needed_by:
        return f"PITR window {_days(window)}; incremental {needed_by[backup_id]} builds on it"
    return f"PITR window {_days(window)}"


def _days(window: timedelta) -> str:
    return f"{window.days}d" if window.days else f"{window.total_seconds() / 3600:.0f}h"


def _plan(
    repo: Repository, options: PruneOptions, report: PruneReport
) -> dict[str, list[ObjectInfo]]:
    """Fill the report with every backup's verdict and the leftovers; return each backup id's
    objects (backups/<id>/… and drills/<id>/…)."""
    now = report.now
    objects: dict[str, list[ObjectInfo]] = {}

    def own(infos: Iterable[ObjectInfo]) -> None:
        for info in infos:
            top = BACKUPS if info.key.startswith(BACKUPS) else DRILLS
            parts = info.key[len(top) :].split("/")
            if len(parts) >= 2:
                objects.setdefault(parts[0], []).append(info)

    if options.dry_run:
        # what a prune would do, read as list reads (by folder, through the index), so that it
        # stays quick on a year of backups; the prune itself lists every object (below)
        folders = list(repo.storage.folders(BACKUPS))
        usable, damaged = repo.scan(folders=folders)
        for m in usable:
            own(ObjectInfo(a.key, a.stored_size) for a in m.artifacts.values())
            manifest_key = repo.artifact_key(m.id, MANIFEST)
            own([ObjectInfo(manifest_key, repo.manifest_size(m.id) or 0)])
        judged = {m.id for m in usable} | {bad.backup_id for bad in damaged}
        for folder in folders:
            if folder not in judged:  # no manifest: a running, failed or killed backup
                own(repo.storage.list(repo.backup_prefix(folder)))
    else:
        backups = list(repo.storage.list(BACKUPS))
        own(backups)
        usable, damaged = repo.scan(backups)
    own(repo.storage.list(DRILLS))
    manifests = {m.id: m for m in usable}
    # a backup whose manifest cannot be read is not judged, and never taken for a leftover
    for bad in damaged:
        report.notes.append(f"kept {bad.backup_id}: {bad.reason}; see bika verify {bad.backup_id}")
    decisions = decide(
        [Backup(m.id, m.kind, m.started_at.astimezone(UTC)) for m in manifests.values()],
        options.policy,
        now,
    )
    for decision in decisions:
        backup = decision.backup
        keep = decision.keep
        reason = decision.reason
        if not keep and backup.started_at >= now:
            keep, reason = True, "started after this prune did"
        if not keep and (until := repo.locked_until(backup.id)) is not None and until > now:
            keep, reason = True, f"object lock until {until.astimezone(UTC):%Y-%m-%d %H:%M} UTC"
        report.backups.append(
            BackupVerdict(
                id=backup.id,
                kind=backup.kind,
                started_at=backup.started_at,
                age=now - backup.started_at,
                keep=keep,
                reason=reason,
                roles=decision.roles,
                stored_size=sum(i.size for i in objects.get(backup.id, [])),
            )
        )
    report.notes.extend(_early_deletion(repo.url, report, manifests, options))
    unreadable = {bad.backup_id for bad in damaged}
    dropped = {b.id for b in report.dropped}
    kept = {m: manifests[m] for m in manifests if m not in dropped}
    leftovers = [
        *_leftovers(repo, objects, {*manifests, *unreadable}, now),
        *_superseded(repo, objects, kept, now),
    ]
    report.leftovers.extend(_unlocked(repo, leftovers, now, report.notes))
    return objects


def _unlocked(
    repo: Repository, leftovers: list[Leftover], now: datetime, notes: list[str]
) -> list[Leftover]:
    """The leftovers no object lock holds (a rekey's old artifacts stay locked as long as the
    backup; GCS and Azure refuse to delete them until then)."""
    if repo.object_lock is None:
        return leftovers
    free, held = [], []
    for leftover in leftovers:
        until = repo.object_locked_until(leftover.key) if leftover.key.startswith(BACKUPS) else None
        if until is not None and until > now:
            held.append(until)
        else:
            free.append(leftover)
    if held:
        notes.append(
            f"kept {len(held)} leftover object(s) under object lock: deletable after"
            f" {max(held).astimezone(UTC):%Y-%m-%d %H:%M} UTC"
        )
    return free


def _superseded(
    repo: Repository,
    objects: dict[str, list[ObjectInfo]],
    manifests: dict[str, Manifest],
    now: datetime,
) -> list[Leftover]:
    """Objects in a backup's folder that its manifest does not name, written more than a day
    ago: what an interrupted `bika rekey` left (the old or the new artifacts)."""
    cutoff = now - LEFTOVER_AGE
    found = []
    for backup_id, manifest in sorted(manifests.items()):
        named = {a.key for a in manifest.artifacts.values()} | {
            repo.artifact_key(backup_id, MANIFEST)
        }
        for info in objects.get(backup_id, []):
            stray = info.key.startswith(BACKUPS) and info.key not in named
            if stray and info.modified is not None and info.modified < cutoff:
                why = "artifact its manifest no longer names (an interrupted rekey)"
                found.append(Leftover(info.key, info.size, why))
    return found


def _leftovers(
    repo: Repository,
    objects: dict[str, list[ObjectInfo]],
    backups: set[str],
    now: datetime,
) -> list[Leftover]:
    """What failed or killed runs left more than a day ago; `backups` have a manifest."""
    cutoff = now - LEFTOVER_AGE
    found: list[Leftover] = []

    def old(info: ObjectInfo) -> bool:
        # a backend that cannot say when an object was written: never guess it is old
        return info.modified is not None and info.modified < cutoff

    for backup_id, owned in sorted(objects.items()):
        if backup_id in backups or not owned or not all(old(i) for i in owned):
            continue
        for info in owned:
            why = (
                "drill record of a backup that no longer exists"
                if info.key.startswith(DRILLS)
                else "artifact without a manifest (a failed or killed backup)"
            )
            found.append(Leftover(info.key, info.size, why))
    for info in repo.storage.leftovers():
        if old(info):
            why = "empty folder" if info.key.endswith("/") else "temp file of an interrupted write"
            found.append(Leftover(info.key, info.size, why))
    return found


def _early_deletion(
    url: str, report: PruneReport, manifests: dict[str, Manifest], options: PruneOptions
) -> list[str]:
    """What deleting backups from an archive class before its minimum duration costs."""
    notes = []
    for verdict in report.dropped:
        storage_class = _class_of(verdict, options.storage_classes)
        minimum = minimum_days(url, storage_class)
        age_days = verdict.age.total_seconds() / 86400
        if minimum and age_days < minimum:
            notes.append(
                f"{verdict.id} is in {storage_class} (billed {minimum} days at the least):"
                f" deleting it at {age_days:.0f} days costs {minimum - age_days:.0f} more days"
                f" of {size(verdict.stored_size)}"
            )
    for kind, storage_class in sorted(options.storage_classes.items()):
        minimum = minimum_days(url, storage_class)
        rule = options.policy.rule(kind)
        if minimum and rule is not None and rule.keep_days is not None and rule.keep_days < minimum:
            notes.append(
                f"{kind} backups go to {storage_class}, billed {minimum} days at the least,"
                f" but are kept {rule.keep_days} days: keep them {minimum} days, or use"
                " another class in [storage.classes]"
            )
    return notes


def _class_of(verdict: BackupVerdict, classes: Mapping[str, str]) -> str | None:
    """The class a backup was stored in, as configured now: a month's first backup goes to
    the monthly class (operations/backup.py), others to their kind's."""
    if any(role.startswith(f"{MONTHLY} ") for role in verdict.roles) and MONTHLY in classes:
        return classes[MONTHLY]
    return classes.get(verdict.kind)
