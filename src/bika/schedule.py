"""The schedule: which bika commands run when, as cron expressions (UTC unless a time zone is
set), and the pure decisions of the daemon — the next run, whether a run was missed.

The [schedule] table of bika.toml; `bika schedule export` turns the same schedule into systemd
timers, a crontab, a Kubernetes CronJob or a GitHub Actions workflow.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter
from pydantic import BaseModel, ConfigDict, field_validator


class ScheduleConfig(BaseModel):
    """[schedule] in bika.toml; an empty string turns a job off."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)

    backup: str = "0 2 * * *"
    """When the daily backup runs (the procedure's 02:00 UTC)."""
    kind: str = "daily"
    """The kind of the scheduled backup."""
    prune: bool = True
    """Apply the retention policy after each backup."""
    copy_after_backup: bool = True
    """`bika copy` to the second repository after each backup, when [copy] to is set."""
    verify: str = "30 3 * * *"
    """A rotating `verify --read-data-subset 15%` (every byte within a week); plain verify
    without an identity."""
    drill: str = "0 4 1 * *"
    """A drill of the newest backup (monthly by default); needs the identity."""
    runbook: str = ""
    """A file the disaster-recovery runbook (Markdown) is written to after each passed drill
    (a .html name gets HTML); empty: none."""
    timezone: str = "UTC"
    """Time zone of the cron expressions."""

    @field_validator("backup", "verify", "drill")
    @classmethod
    def _cron(cls, value: str) -> str:
        if value.strip() and not croniter.is_valid(value):
            raise ValueError(f"{value!r} is not a cron expression, e.g. '0 2 * * *'")
        return value.strip()

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(
                f"{value!r} is not a time zone, e.g. 'UTC' or 'Africa/Kigali'"
            ) from None
        return value


@dataclass(frozen=True)
class Job:
    """One scheduled entry: its name, cron expression and the bika commands it runs in order
    (each stops the chain when it fails)."""

    name: str
    cron: str
    steps: tuple[tuple[str, ...], ...]


def jobs(config: ScheduleConfig, *, has_identity: bool, has_copy: bool) -> list[Job]:
    """The jobs a schedule means for a repository with / without an identity and a copy."""
    found: list[Job] = []
    if config.backup:
        steps: list[tuple[str, ...]] = [("backup", "--kind", config.kind)]
        if config.prune:
            steps.append(("prune",))
        if config.copy_after_backup and has_copy:
            steps.append(("copy",))
        found.append(Job("backup", config.backup, tuple(steps)))
    if config.verify:
        verify = ("verify", "--read-data-subset", "15%") if has_identity else ("verify",)
        found.append(Job("verify", config.verify, (verify,)))
    if config.drill and has_identity:
        drill: list[tuple[str, ...]] = [("drill", "latest")]
        if config.runbook:
            form = "--html" if config.runbook.endswith(".html") else "--markdown"
            drill.append(("runbook", form, "--output", config.runbook))
        found.append(Job("drill", config.drill, tuple(drill)))
    return found


def next_run(job: Job, after: datetime, timezone: str = "UTC") -> datetime:
    """The first time strictly after `after` at which the job is due (in `after`'s zone)."""
    local = after.astimezone(ZoneInfo(timezone))
    due: datetime = croniter(job.cron, local).get_next(datetime)
    return due.astimezone(after.tzinfo)


def previous_run(job: Job, before: datetime, timezone: str = "UTC") -> datetime:
    """The last time at or before `before` at which the job was due."""
    local = before.astimezone(ZoneInfo(timezone)) + timedelta(microseconds=1)
    due: datetime = croniter(job.cron, local).get_prev(datetime)
    return due.astimezone(before.tzinfo)


def missed(job: Job, last_run: datetime | None, now: datetime, timezone: str = "UTC") -> bool:
    """Whether a run fell due while the daemon was down: at most one catch-up, however many
    were missed. A job never run before (no state) is not "missed"; it waits for its time."""
    if last_run is None:
        return False
    return previous_run(job, now, timezone) > last_run
