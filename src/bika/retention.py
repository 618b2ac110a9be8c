"""Retention: which backups a policy keeps, and the rule that decided each. Pure: no I/O.

decide(backups, policy, now) is the whole of it; `bika prune` feeds it manifests and deletes
what it drops. The rules (docs/FORMAT.md, "Retention"):

- Every backup is judged by the rule of its kind. `weekly` and `monthly` backups that do not
  hold their period (below) are judged as `daily`: the kind says which backup should stand for
  the period, the role is what keeps it longer.
- Grandfather-father-son without a second dump: the first backup of each ISO week (UTC) holds
  that week's weekly role, the first of each calendar month (UTC) that month's monthly role —
  the first one taken with `--kind weekly` (`--kind monthly`) when the period has one. A role
  holder is also judged by the role's rule, counted over role holders (one per period).
- A rule keeps a backup younger than `keep_days` days, and the `keep_last` newest it judges;
  a rule with neither keeps everything it judges (manual: until deleted).
- `keep_within` keeps every backup younger than it, whatever its kind.
- The newest backup is always kept.

A backup is kept when any rule keeps it; a dropped backup's reason says why each rule let go.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

DAILY = "daily"
WEEKLY = "weekly"
MONTHLY = "monthly"
ROLES = (WEEKLY, MONTHLY)


@dataclass(frozen=True)
class Backup:
    """What retention needs of a backup: the manifest's id, kind and start time."""

    id: str
    kind: str
    started_at: datetime


@dataclass(frozen=True)
class Rule:
    """Keep what is younger than keep_days days, and the keep_last newest; neither: keep all."""

    keep_days: int | None = None
    keep_last: int | None = None

    @property
    def forever(self) -> bool:
        return self.keep_days is None and self.keep_last is None

    def describe(self) -> str:
        if self.forever:
            return "kept until deleted"
        parts = []
        if self.keep_days is not None:
            parts.append(f"{self.keep_days} days")
        if self.keep_last is not None:
            parts.append(f"the newest {self.keep_last}")
        return "kept " + " and ".join(parts)


@dataclass(frozen=True)
class Policy:
    """A rule per kind (daily, pre-migration, manual) and per role (weekly, monthly)."""

    rules: Mapping[str, Rule]
    keep_within: timedelta | None = None

    def rule(self, name: str) -> Rule | None:
        return self.rules.get(name)

    def overridden(
        self, keep_last: Mapping[str, int | None], keep_within: timedelta | None = None
    ) -> Policy:
        """restic's flags over this policy: --keep-daily N replaces the daily rule by "the
        newest N" (and so on); --keep-within adds to what every rule keeps."""
        rules = dict(self.rules)
        for name, count in keep_last.items():
            if count is not None:
                rules[name] = Rule(keep_last=count)
        return Policy(rules, keep_within if keep_within is not None else self.keep_within)


DEFAULT_RULES: Mapping[str, Rule] = {
    "daily": Rule(keep_days=7),
    "weekly": Rule(keep_days=30),
    "monthly": Rule(keep_days=365),
    "pre-migration": Rule(keep_days=30),
    "manual": Rule(),
}
DEFAULT_POLICY = Policy(DEFAULT_RULES)


@dataclass(frozen=True)
class Decision:
    backup: Backup
    keep: bool
    reason: str
    """The rule that kept it (the first that did), or why every rule let it go."""
    roles: tuple[str, ...] = field(default=())
    """"weekly 2026-W48", "monthly 2026-11": the periods this backup stands for."""


def week_of(when: datetime) -> str:
    year, week, _ = when.astimezone(UTC).isocalendar()
    return f"{year}-W{week:02d}"


def month_of(when: datetime) -> str:
    return f"{when.astimezone(UTC):%Y-%m}"


PERIOD = {WEEKLY: week_of, MONTHLY: month_of}


def role_holders(backups: Iterable[Backup]) -> dict[str, dict[str, Backup]]:
    """role → period → the backup that stands for it: the period's first backup of the role's
    kind, else its first backup of any kind."""
    ordered = sorted(backups, key=_order)
    holders: dict[str, dict[str, Backup]] = {}
    for role, period_of in PERIOD.items():
        chosen: dict[str, Backup] = {}
        for backup in ordered:
            period = period_of(backup.started_at)
            current = chosen.get(period)
            if current is None or (backup.kind == role and current.kind != role):
                chosen[period] = backup
        holders[role] = chosen
    return holders


def missing_roles(backups: Iterable[Backup], policy: Policy, now: datetime) -> list[str]:
    """The weeks and months inside their role's keep_days window that no backup stands for
    (a week with no backup has no weekly): "weekly 2026-W46". Only whole periods that ended
    after the first backup count, so a young repository is not short of anything."""
    ordered = sorted(backups, key=_order)
    if not ordered:
        return []
    first = ordered[0].started_at
    missing = []
    for role, period_of in PERIOD.items():
        rule = policy.rule(role)
        if rule is None or rule.keep_days is None:
            continue
        have = {period_of(b.started_at) for b in ordered}
        moment = max(first, now - timedelta(days=rule.keep_days))
        seen: set[str] = set()
        while moment < now:
            period = period_of(moment)
            ended = period != period_of(now)  # the current period may still get its backup
            if period not in seen and ended and period not in have and moment >= first:
                missing.append(f"{role} {period}")
            seen.add(period)
            moment += timedelta(days=1)
    return missing


def periods_began(started: datetime) -> datetime:
    """When the earlier of the ISO week and the month of `started` began (UTC): roles_of_new
    needs the backups since then, no older ones."""
    day = started.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return min(day - timedelta(days=day.weekday()), day.replace(day=1))


def roles_of_new(existing: Iterable[datetime], started: datetime) -> list[str]:
    """The roles a backup starting now takes, as far as it can be known before it runs: the
    first of its month is the monthly, the first of its week the weekly (a later explicit
    --kind weekly/monthly backup in the same period would take the role over)."""
    starts = [s for s in existing if s < started]
    roles = []
    for role in (MONTHLY, WEEKLY):
        period = PERIOD[role](started)
        if not any(PERIOD[role](s) == period for s in starts):
            roles.append(role)
    return roles


def decide(backups: Iterable[Backup], policy: Policy, now: datetime) -> list[Decision]:
    """Keep or drop each backup, in the order they started, with the reason."""
    ordered = sorted(backups, key=_order)
    if not ordered:
        return []
    holders = role_holders(ordered)
    roles: dict[str, list[str]] = {b.id: [] for b in ordered}
    for role in ROLES:
        for period, backup in sorted(holders[role].items()):
            roles[backup.id].append(f"{role} {period}")

    # roles first, so a kept role holder's reason names its period
    judged: dict[str, list[Backup]] = {
        role: sorted(holders[role].values(), key=_order) for role in ROLES
    }
    # a base kind is never a role: weekly and monthly backups are judged as daily
    for backup in ordered:
        judged.setdefault(_base_kind(backup), []).append(backup)

    verdicts: dict[str, tuple[list[str], list[str]]] = {b.id: ([], []) for b in ordered}
    newest = ordered[-1]
    verdicts[newest.id][0].append("newest backup")
    if policy.keep_within is not None:
        for backup in ordered:
            if now - backup.started_at < policy.keep_within:
                verdicts[backup.id][0].append(f"younger than {span(policy.keep_within)}")
    for name, members in judged.items():
        rule = policy.rule(name)
        for rank, backup in enumerate(reversed(members), start=1):
            label = name
            if name in ROLES:
                label = f"{name} of {PERIOD[name](backup.started_at)}"
            elif backup.kind != name:
                label = f"{backup.kind}, judged as {name}"
            keeps, drops = verdicts[backup.id]
            if rule is None:
                if name not in ROLES:
                    keeps.append(f"{label}: no retention rule for this kind, kept")
                continue
            if rule.forever:
                keeps.append(f"{label}: kept until deleted")
                continue
            age = now - backup.started_at
            young = rule.keep_days is not None and age < timedelta(days=rule.keep_days)
            recent = rule.keep_last is not None and rank <= rule.keep_last
            if young:
                keeps.append(f"{label}: younger than {rule.keep_days} days")
            elif recent:
                keeps.append(f"{label}: one of the newest {rule.keep_last}")
            else:
                drops.append(f"{label}: {_why_not(rule)}")

    decisions = []
    for backup in ordered:
        keeps, drops = verdicts[backup.id]
        keep = bool(keeps)
        reason = keeps[0] if keep else "; ".join(drops)
        decisions.append(Decision(backup, keep, reason, tuple(roles[backup.id])))
    return decisions


def _base_kind(backup: Backup) -> str:
    return DAILY if backup.kind in ROLES else backup.kind


def _why_not(rule: Rule) -> str:
    parts = []
    if rule.keep_days is not None:
        parts.append(f"older than {rule.keep_days} days")
    if rule.keep_last is not None:
        parts.append(f"not one of the newest {rule.keep_last}")
    return " and ".join(parts)


def span(delta: timedelta) -> str:
    seconds = int(delta.total_seconds())
    if seconds % 86400 == 0:
        return f"{seconds // 86400} days"
    if seconds % 3600 == 0:
        return f"{seconds // 3600} hours"
    return f"{seconds} seconds"


def _order(backup: Backup) -> tuple[datetime, str]:
    return (backup.started_at.astimezone(UTC), backup.id)
