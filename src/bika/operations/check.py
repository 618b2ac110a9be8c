"""`bika check`: read what monitoring needs from the repository (and its copy), then judge it.

Only I/O lives here; bika.monitor holds the rules. A part that cannot be read becomes an
"unknown" finding, so a monitoring system learns that bika could not look, not that all is well.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from bika import clock
from bika.errors import BikaError
from bika.findings import Finding
from bika.monitor import History, RunEvent, Thresholds, evaluate, last_run, last_status
from bika.operations.runlog import recorded
from bika.operations.wal_status import wal_state
from bika.repository import Manifest, Repository, physical
from bika.repository.drills import DrillRecord, latest_drills
from bika.repository.events import Event, pending, read_events
from bika.repository.physical import PhysicalDrill
from bika.retention import Backup, Policy, decide, missing_roles
from bika.supabase.api import PlatformBackups
from bika.wal.inventory import WalState


@dataclass(frozen=True)
class CheckReport:
    repository: str
    checked_at: datetime
    history: History
    findings: list[Finding]


RUN_LOG_WINDOW = timedelta(days=40)
"""How far back the run log is read: the drill rule looks 35 days back, the others less."""
RETENTION_GRACE = timedelta(days=1)
"""prune runs after each backup: a backup is overdue once its rule dropped it a day ago."""


def run_events(repository: Repository, since: datetime) -> list[RunEvent]:
    """The run log (events/) as monitoring reads it."""
    return [
        _run_event(event)
        for event in [
            *read_events(repository.storage, repository.url, since=since),
            # runs of this host that could not reach the repository yet (a failed backup)
            *(e for _, _, e in pending(repository.url) if e.started_at >= since),
        ]
    ]


def _run_event(event: Event) -> RunEvent:
    return RunEvent(
        time=event.finished_at,
        command=event.command,
        ok=event.outcome == "ok",
        error=event.error or ("interrupted" if event.outcome == "interrupted" else ""),
        backup_ids=tuple(event.backup_ids),
        status=event.detail.get("status") if event.command == "check" else None,
    )


def unreachable(url: str, why: str) -> list[Finding]:
    """`bika check` of a repository it cannot read: unknown, and also critical when a backup run
    of this host failed since and is waiting to be uploaded (the likely reason nobody can see)."""
    findings = [Finding("unknown", "repository", f"cannot read the repository: {why}")]
    now = clock.now()
    runs = [_run_event(e) for _, _, e in pending(url) if e.started_at >= now - RUN_LOG_WINDOW]
    findings += [f for f in last_run(History(now, [], runs=runs)) if f.level != "ok"]
    return findings


def overdue(manifests: list[Manifest], policy: Policy, now: datetime) -> list[tuple[str, str]]:
    """Backups the policy dropped a day ago already and prune has not deleted: (id, why)."""
    backups = [Backup(m.id, m.kind, m.started_at.astimezone(UTC)) for m in manifests]
    return [
        (d.backup.id, d.reason)
        for d in decide(backups, policy, now - RETENTION_GRACE)
        if not d.keep
    ]


def _backups(manifests: list[Manifest]) -> list[Backup]:
    return [Backup(m.id, m.kind, m.started_at.astimezone(UTC)) for m in manifests]


def read_history(
    repository: Repository,
    *,
    now: datetime | None = None,
    thresholds: Thresholds | None = None,
    copy: Callable[[], Repository] | None = None,
    policy: Policy | None = None,
    escrow_recipient: str | None = None,
    platform: Callable[[], PlatformBackups] | None = None,
) -> tuple[History, list[Finding]]:
    """The repository's history, and an "unknown" finding for each part that could not be read.

    `copy` opens the second repository when one is configured; it is called here so that an
    unreachable copy is reported, not raised."""
    now = now or clock.now()
    problems: list[Finding] = []
    manifests, unusable = repository.scan()
    drills: list[DrillRecord] = []
    try:
        drills = list(latest_drills(repository).values())
    except BikaError as exc:
        problems.append(Finding("unknown", "drill", f"cannot read the drill records: {exc}"))
    runs: list[RunEvent] = []
    try:
        runs = run_events(repository, now - RUN_LOG_WINDOW)
    except BikaError as exc:
        problems.append(Finding("unknown", "last-run", f"cannot read the run log: {exc}"))
    wal: WalState | None = None
    physical_drills: list[PhysicalDrill] = []
    try:
        wal = wal_state(repository)
        if wal is not None and wal.backups:
            physical_drills = list(physical.scan_with_drills(repository)[1].values())
    except BikaError as exc:
        problems.append(Finding("unknown", "wal", f"cannot read the WAL archive: {exc}"))
    copy_url: str | None = None
    copy_ids: frozenset[str] | None = None
    if copy is not None:
        try:
            second = copy()
            copy_url = second.url
            copy_ids = frozenset(second.backup_ids())
        except BikaError as exc:
            problems.append(Finding("unknown", "copy", f"cannot read the second repository: {exc}"))
    platform_backups: PlatformBackups | None = None
    if platform is not None:
        try:
            platform_backups = platform()
        except BikaError as exc:
            problems.append(Finding("unknown", "platform", str(exc)))
    history = History(
        now=now,
        platform=platform_backups,
        manifests=manifests,
        drills=drills,
        runs=runs,
        damaged=[(d.backup_id, d.reason) for d in unusable] + (wal.refused if wal else []),
        copy_url=copy_url,
        copy_ids=copy_ids,
        retention_overdue=overdue(manifests, policy, now) if policy is not None else None,
        missing_roles=missing_roles(_backups(manifests), policy, now) if policy else (),
        thresholds=thresholds or Thresholds(),
        escrow_recipient=escrow_recipient,
        wal=wal,
        physical_drills=physical_drills,
    )
    return history, problems


def check_repository(
    repository: Repository,
    *,
    now: datetime | None = None,
    thresholds: Thresholds | None = None,
    copy: Callable[[], Repository] | None = None,
    policy: Policy | None = None,
    escrow_recipient: str | None = None,
    platform: Callable[[], PlatformBackups] | None = None,
) -> CheckReport:
    history, problems = read_history(
        repository,
        now=now,
        thresholds=thresholds,
        copy=copy,
        policy=policy,
        escrow_recipient=escrow_recipient,
        platform=platform,
    )
    return CheckReport(repository.url, history.now, history, evaluate(history) + problems)


def remember_status(repository: Repository, report: CheckReport, status: str) -> str | None:
    """Record a check event when the state changed since the last recorded one (so a check
    every few minutes does not fill the run log); return the previous state."""
    previous = last_status(report.history)
    if status != previous:
        record_status(repository, status)
    return previous


def record_status(repository: Repository, status: str) -> None:
    """A check event holding the state: what the next check compares with (a failed backup
    records CRITICAL itself, having alerted already)."""
    with recorded("check") as run:
        run.attach(repository)
        run.detail["status"] = status
