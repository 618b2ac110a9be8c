"""Retention, the pure function: properties over random repositories and policies, and the
procedure's defaults over a year of nightly backups. No servers; runs in seconds."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bika.errors import ConfigError
from bika.repository.manifest import KINDS
from bika.retention import (
    DEFAULT_POLICY,
    ROLES,
    Backup,
    Policy,
    Rule,
    decide,
    missing_roles,
    month_of,
    role_holders,
    roles_of_new,
    week_of,
)
from bika.units import parse_duration

EPOCH = datetime(2025, 1, 1, tzinfo=UTC)
SPAN = 800 * 86400  # backups over a bit more than two years


@st.composite
def repositories(draw: st.DrawFn) -> list[Backup]:
    offsets = draw(st.lists(st.integers(0, SPAN), min_size=1, max_size=60))
    return [
        Backup(
            id=f"b{i:03d}",
            kind=draw(st.sampled_from(KINDS)),
            started_at=EPOCH + timedelta(seconds=offset),
        )
        for i, offset in enumerate(offsets)
    ]


rules = st.builds(
    Rule,
    keep_days=st.none() | st.integers(0, 400),
    keep_last=st.none() | st.integers(0, 8),
)
policies = st.builds(
    Policy,
    rules=st.fixed_dictionaries({kind: rules for kind in KINDS}),
    keep_within=st.none() | st.integers(0, 90).map(lambda d: timedelta(days=d)),
)
moments = st.integers(-86400, SPAN + 500 * 86400).map(lambda s: EPOCH + timedelta(seconds=s))


def _base(backup: Backup) -> str:
    return "daily" if backup.kind in ROLES else backup.kind


@settings(max_examples=400, deadline=None)
@given(repositories(), policies, moments)
def test_the_newest_backup_is_never_dropped(
    backups: list[Backup], policy: Policy, now: datetime
) -> None:
    decisions = decide(backups, policy, now)
    newest = max(backups, key=lambda b: (b.started_at, b.id))
    assert next(d for d in decisions if d.backup == newest).keep


@settings(max_examples=400, deadline=None)
@given(repositories(), policies, moments)
def test_a_backup_younger_than_its_rule_is_kept(
    backups: list[Backup], policy: Policy, now: datetime
) -> None:
    holders = role_holders(backups)
    for decision in decide(backups, policy, now):
        backup = decision.backup
        age = now - backup.started_at
        rule = policy.rules[_base(backup)]
        if rule.forever or (rule.keep_days is not None and age < timedelta(days=rule.keep_days)):
            assert decision.keep, decision
        for role in ROLES:
            period = {"weekly": week_of, "monthly": month_of}[role](backup.started_at)
            role_rule = policy.rules[role]
            if holders[role][period] == backup and (
                role_rule.forever
                or (role_rule.keep_days is not None and age < timedelta(days=role_rule.keep_days))
            ):
                assert decision.keep, decision
        if policy.keep_within is not None and age < policy.keep_within:
            assert decision.keep, decision
        assert decision.reason


@settings(max_examples=400, deadline=None)
@given(repositories(), policies, moments)
def test_the_newest_n_of_a_kind_are_kept(
    backups: list[Backup], policy: Policy, now: datetime
) -> None:
    decisions = {d.backup.id: d for d in decide(backups, policy, now)}
    for kind in ("daily", "pre-migration", "manual"):
        keep_last = policy.rules[kind].keep_last
        judged = sorted(
            (b for b in backups if _base(b) == kind), key=lambda b: (b.started_at, b.id)
        )
        for backup in judged[len(judged) - (keep_last or 0) :] if keep_last else []:
            assert decisions[backup.id].keep


@settings(max_examples=400, deadline=None)
@given(repositories(), policies, moments)
def test_pruning_what_it_kept_drops_nothing_more(
    backups: list[Backup], policy: Policy, now: datetime
) -> None:
    kept = [d.backup for d in decide(backups, policy, now) if d.keep]
    again = decide(kept, policy, now)
    assert [d.backup for d in again if not d.keep] == []


@settings(max_examples=400, deadline=None)
@given(repositories(), policies, moments)
def test_one_weekly_per_week_and_one_monthly_per_month_inside_their_windows(
    backups: list[Backup], policy: Policy, now: datetime
) -> None:
    decisions = decide(backups, policy, now)
    for role, period_of in (("weekly", week_of), ("monthly", month_of)):
        periods = {period_of(b.started_at) for b in backups}
        held = [r for d in decisions for r in d.roles if r.startswith(f"{role} ")]
        assert sorted(held) == sorted(f"{role} {p}" for p in periods)  # exactly one each
        keep_days = policy.rules[role].keep_days
        for decision in decisions:
            for held_role in decision.roles:
                if not held_role.startswith(f"{role} "):
                    continue
                if keep_days is not None and now - decision.backup.started_at < timedelta(
                    days=keep_days
                ):
                    assert decision.keep
                    # its period is that of the backup, and only it stands for the period
                    assert held_role == f"{role} {period_of(decision.backup.started_at)}"


def test_a_year_of_nightly_backups_under_the_default_policy() -> None:
    start = datetime(2026, 1, 1, 2, 0, tzinfo=UTC)
    backups = [Backup(f"n{day:03d}", "daily", start + timedelta(days=day)) for day in range(400)]
    now = backups[-1].started_at + timedelta(hours=1)
    kept = {d.backup.id for d in decide(backups, DEFAULT_POLICY, now) if d.keep}

    def age(b: Backup) -> timedelta:
        return now - b.started_at

    nights = {b.id for b in backups if age(b) < timedelta(days=7)}
    weeks = {b.id for b in backups if b.started_at.weekday() == 0 and age(b).days < 30}
    months = {b.id for b in backups if b.started_at.day == 1 and age(b).days < 365}
    assert len(nights) == 7 and len(weeks) in (4, 5) and len(months) == 12
    assert kept == nights | weeks | months


def test_an_explicit_weekly_stands_for_its_week_and_a_second_one_is_judged_as_daily() -> None:
    monday = datetime(2026, 11, 23, 2, 0, tzinfo=UTC)
    backups = [
        Backup("nov", "monthly", datetime(2026, 11, 2, tzinfo=UTC)),
        Backup("mon", "daily", monday),
        Backup("sun", "weekly", monday + timedelta(days=6)),
        Backup("sun2", "weekly", monday + timedelta(days=6, hours=1)),
        Backup("next", "daily", monday + timedelta(days=7)),
    ]
    now = monday + timedelta(days=20)
    decisions = {d.backup.id: d for d in decide(backups, DEFAULT_POLICY, now)}
    assert decisions["sun"].roles == ("weekly 2026-W48",)
    assert decisions["sun"].keep and decisions["sun"].reason.startswith("weekly of 2026-W48")
    assert not decisions["mon"].keep
    assert not decisions["sun2"].keep
    assert "weekly, judged as daily: older than 7 days" in decisions["sun2"].reason
    assert decisions["next"].keep  # newest, and the weekly of W49


def test_manual_backups_are_kept_until_deleted_and_drops_say_why() -> None:
    old = datetime(2020, 1, 1, tzinfo=UTC)
    backups = [Backup("m", "manual", old), Backup("p", "pre-migration", old + timedelta(1))]
    now = datetime(2026, 12, 1, tzinfo=UTC)
    later = [*backups, Backup("d", "daily", now - timedelta(hours=1))]
    decisions = {d.backup.id: d for d in decide(later, DEFAULT_POLICY, now)}
    assert decisions["m"].keep
    assert decisions["m"].reason.endswith("manual: kept until deleted")
    assert not decisions["p"].keep
    assert "pre-migration: older than 30 days" in decisions["p"].reason
    assert decisions["d"].reason == "newest backup"


def test_keep_last_counts_weeks_for_the_weekly_rule() -> None:
    start = datetime(2026, 1, 5, tzinfo=UTC)  # a Monday
    backups = [Backup(f"d{i:02d}", "daily", start + timedelta(days=i)) for i in range(70)]
    policy = Policy({**DEFAULT_POLICY.rules, "weekly": Rule(keep_last=4)})
    now = backups[-1].started_at + timedelta(days=400)
    kept = [d for d in decide(backups, policy, now) if d.keep]
    weeklies = [d for d in kept if d.reason.startswith("weekly of")]
    assert [d.backup.started_at.weekday() for d in weeklies] == [0, 0, 0, 0]
    assert len(kept) == 5  # four weeks and the newest


def test_a_new_backup_knows_whether_it_is_the_first_of_its_week_and_month() -> None:
    existing = [datetime(2026, 11, 30, 2, tzinfo=UTC)]  # a Monday
    assert roles_of_new(existing, datetime(2026, 12, 1, 2, tzinfo=UTC)) == ["monthly"]
    assert roles_of_new(existing, datetime(2026, 12, 7, 2, tzinfo=UTC)) == ["monthly", "weekly"]
    assert roles_of_new(existing, datetime(2026, 11, 30, 3, tzinfo=UTC)) == []


@pytest.mark.parametrize(
    ("text", "expected"),
    [("30d", timedelta(days=30)), ("1w2d", timedelta(days=9)), ("12h", timedelta(hours=12))],
)
def test_durations_parse_as_restic_writes_them(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text", ["30", "thirty days", "-3d", "0d", "6m", ""])
def test_a_duration_that_is_not_one_is_refused_with_the_fix(text: str) -> None:
    with pytest.raises(ConfigError, match="30d"):
        parse_duration(text)


def test_a_week_or_month_without_any_backup_is_a_missing_role() -> None:
    now = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)  # a Thursday of 2026-W49
    nightly = [now - timedelta(days=d) for d in range(1, 60) if not 10 <= d <= 18]
    backups = [Backup(f"b{i}", "daily", t) for i, t in enumerate(sorted(nightly))]
    policy = DEFAULT_POLICY
    missing = missing_roles(backups, policy, now)
    # 2026-11-15 … 2026-11-23 had no backup: all of week 47 (16–22 Nov) is empty
    assert missing == ["weekly 2026-W47"]
    assert missing_roles(backups[-5:], policy, now) == []  # a young repository lacks nothing
    every_night = [Backup(f"n{d}", "daily", now - timedelta(days=d)) for d in range(1, 400)]
    assert missing_roles(every_night, policy, now) == []
