"""The archive's inventory and the WAL monitoring rule: pure, no servers."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from bika.monitor import History, wal_gaps
from bika.postgres.basebackup import ClusterFacts, incremental_refusal
from bika.wal import names
from bika.wal.expiry import BaseBackup, expire
from bika.wal.inventory import BackupReach, Switch, WalInventory, WalState, parse_history

SIZE = 16 * 1024 * 1024
T0 = datetime(2026, 12, 1, tzinfo=UTC)


def _inventory(*stored: tuple[int, int]) -> WalInventory:
    found = WalInventory(SIZE)
    for tli, number in stored:
        found.add(names.Segment(tli, number).name(SIZE), T0 + timedelta(minutes=number))
    return found


def test_a_missing_segment_ends_the_stretch_and_is_named() -> None:
    archive = _inventory((1, 2), (1, 3), (1, 5), (1, 6))
    stretch, gap = archive.stretch_from(1, names.Segment(1, 2))
    assert stretch.last == "000000010000000000000003"
    assert stretch.last_archived_at == T0 + timedelta(minutes=3)
    assert gap == "000000010000000000000004"
    assert archive.ranges(1) == [
        ("000000010000000000000002", "000000010000000000000003", T0 + timedelta(minutes=3)),
        ("000000010000000000000005", "000000010000000000000006", T0 + timedelta(minutes=6)),
    ]


def test_the_end_of_the_archive_is_no_gap() -> None:
    stretch, gap = _inventory((1, 2), (1, 3)).stretch_from(1, names.Segment(1, 2))
    assert (stretch.last, gap) == ("000000010000000000000003", None)


def test_a_child_timeline_continues_from_its_switch_segment() -> None:
    archive = _inventory((1, 2), (1, 3), (1, 4), (2, 4), (2, 5))
    archive.histories[2] = parse_history("1\t0/4000100\tno recovery target specified\n")
    assert archive.histories[2] == [Switch(1, 0x4000100, "no recovery target specified")]
    stretch, gap = archive.stretch_from(2, names.Segment(1, 2))
    assert (stretch.first, stretch.last, gap) == (
        "000000010000000000000002",
        "000000020000000000000005",
        None,
    )
    assert archive.descendants(1, after_lsn=0x2000000) == [2]
    assert archive.descendants(1, after_lsn=0x5000000) == []


def _reach(backup_id: str, last: int, gap: int | None) -> BackupReach:
    archive = _inventory(*[(1, n) for n in range(2, last + 1)], *([(1, gap + 1)] if gap else []))
    stretch, missing = archive.stretch_from(1, names.Segment(1, 2))
    return BackupReach(backup_id, 1, T0, "000000010000000000000002", stretch, missing)


@pytest.mark.parametrize(
    ("reaches", "levels"),
    [
        ([], []),
        ([("b1", 4, None)], ["ok"]),
        ([("b1", 4, 5)], ["error"]),
        ([("b1", 4, 5), ("b2", 9, None)], ["warn"]),
    ],
)
def test_wal_gaps_rule(reaches: list[tuple[str, int, int | None]], levels: list[str]) -> None:
    state = WalState(None, None, {}, [_reach(*r) for r in reaches])
    findings = wal_gaps(History(now=T0, manifests=[], wal=state if reaches else None))
    assert [f.level for f in findings] == levels
    for finding in findings:
        if finding.level != "ok":
            assert "000000010000000000000005" in finding.message


def _base(backup_id: str, days_ago: float, start: int) -> BaseBackup:
    return BaseBackup(backup_id, T0 - timedelta(days=days_ago), names.Segment(1, start).name(SIZE))


def test_expiry_keeps_the_window_and_the_newest_backup_before_it() -> None:
    backups = [_base("a", 20, 2), _base("b", 10, 8), _base("c", 3, 20), _base("d", 1, 30)]
    plan = expire(backups, T0, timedelta(days=7))
    assert (plan.keep, plan.drop) == (["b", "c", "d"], ["a"])
    assert plan.oldest_needed == names.Segment(1, 8).name(SIZE)
    wal = [names.Segment(tli, n).name(SIZE) for tli, n in ((1, 2), (1, 7), (1, 8), (2, 9))]
    wal += ["00000002.history", names.Segment(1, 3).name(SIZE) + ".00000028.backup"]
    doomed = plan.wal_to_delete(wal, SIZE)
    assert sorted(doomed) == sorted(
        [
            names.Segment(1, 2).name(SIZE),
            names.Segment(1, 7).name(SIZE),
            names.Segment(1, 3).name(SIZE) + ".00000028.backup",
        ]
    )


def test_without_physical_backups_no_wal_is_deleted() -> None:
    plan = expire([], T0, timedelta(days=7))
    assert plan.wal_to_delete([names.Segment(1, 2).name(SIZE)], SIZE) == []


def test_expiry_keeps_every_backup_a_kept_incremental_builds_on() -> None:
    full = _base("full", 20, 2)
    first = BaseBackup("inc1", T0 - timedelta(days=15), names.Segment(1, 5).name(SIZE), ("full",))
    older = _base("older-full", 25, 1)
    second = BaseBackup(
        "inc2", T0 - timedelta(days=1), names.Segment(1, 9).name(SIZE), ("full", "inc1")
    )
    plan = expire([older, full, first, second], T0, timedelta(days=7))
    assert plan.keep == ["full", "inc1", "inc2"]
    assert plan.drop == ["older-full"]
    assert plan.oldest_needed == names.Segment(1, 2).name(SIZE)


def _facts(version_num: int, summarize_wal: str | None) -> ClusterFacts:
    return ClusterFacts(
        server_version=f"{version_num // 10000}.2",
        server_version_num=version_num,
        system_identifier="1",
        timeline=1,
        wal_segment_size=SIZE,
        archive_mode="on",
        archive_command="bika wal push %p",
        tablespaces=[],
        summarize_wal=summarize_wal,
    )


def test_incremental_backups_need_17_and_summarize_wal() -> None:
    assert "need 17 or newer" in (incremental_refusal(_facts(160004, None)) or "")
    off = incremental_refusal(_facts(170002, "off")) or ""
    assert "set summarize_wal = on" in off and "take a full backup first" in off
    assert incremental_refusal(_facts(180001, "on")) is None
