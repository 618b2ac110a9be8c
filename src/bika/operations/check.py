"""`bika check`: read what monitoring needs from the repository (and its copy), then judge it.

Only I/O lives here; bika.monitor holds the rules. A part that cannot be read becomes an
"unknown" finding, so a monitoring system learns that bika could not look, not that all is well.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from bika.errors import BikaError
from bika.findings import Finding
from bika.monitor import History, RunEvent, Thresholds, evaluate
from bika.repository import Repository
from bika.repository.drills import DrillRecord, latest_drills


@dataclass(frozen=True)
class CheckReport:
    repository: str
    checked_at: datetime
    history: History
    findings: list[Finding]


def read_history(
    repository: Repository,
    *,
    now: datetime | None = None,
    thresholds: Thresholds | None = None,
    runs: list[RunEvent] | None = None,
    copy: Callable[[], Repository] | None = None,
    retention_overdue: list[tuple[str, str]] | None = None,
) -> tuple[History, list[Finding]]:
    """The repository's history, and an "unknown" finding for each part that could not be read.

    `copy` opens the second repository when one is configured; it is called here so that an
    unreachable copy is reported, not raised."""
    problems: list[Finding] = []
    manifests, unusable = repository.scan()
    damaged = [(d.backup_id, d.reason) for d in unusable]
    drills: list[DrillRecord] = []
    try:
        drills = list(latest_drills(repository).values())
    except BikaError as exc:
        problems.append(Finding("unknown", "drill", f"cannot read the drill records: {exc}"))
    copy_url: str | None = None
    copy_ids: frozenset[str] | None = None
    if copy is not None:
        try:
            second = copy()
            copy_url = second.url
            copy_ids = frozenset(second.backup_ids())
        except BikaError as exc:
            problems.append(Finding("unknown", "copy", f"cannot read the second repository: {exc}"))
    history = History(
        now=now or datetime.now(UTC),
        manifests=manifests,
        drills=drills,
        runs=runs or [],
        damaged=damaged,
        copy_url=copy_url,
        copy_ids=copy_ids,
        retention_overdue=retention_overdue,
        thresholds=thresholds or Thresholds(),
    )
    return history, problems


def check_repository(
    repository: Repository,
    *,
    now: datetime | None = None,
    thresholds: Thresholds | None = None,
    runs: list[RunEvent] | None = None,
    copy: Callable[[], Repository] | None = None,
    retention_overdue: list[tuple[str, str]] | None = None,
) -> CheckReport:
    history, problems = read_history(
        repository,
        now=now,
        thresholds=thresholds,
        runs=runs,
        copy=copy,
        retention_overdue=retention_overdue,
    )
    return CheckReport(repository.url, history.now, history, evaluate(history) + problems)
