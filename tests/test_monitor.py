"""Monitoring rules on constructed histories: each fires when it should and stays quiet
otherwise. Pure: no server."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from bika import monitor
from bika.findings import Finding, exit_code, worst
from bika.monitor import History, RunEvent, Thresholds
from bika.repository.drills import DrillRecord
from bika.repository.manifest import Manifest, Scope, SecretsInventory, TableName
from bika.repository.physical import PhysicalDrill
from bika.supabase.api import PlatformBackup, PlatformBackups
from bika.wal import names
from bika.wal.inventory import BackupReach, WalInventory, WalState

NOW = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)


def manifest(
    hours_ago: float,
    *,
    plain: int = 120_000_000,
    stored: int = 40_000_000,
    tables: dict[str, int] | None = None,
    database: str = "ibimina",
) -> Manifest:
    finished = NOW - timedelta(hours=hours_ago)
    tables = {"public.members": 1000, "public.loans": 5000} if tables is None else tables
    data: dict[str, Any] = {
        "tool": "bika test",
        "id": f"{finished:%Y%m%dT%H%M%SZ}-daily-{abs(hash((hours_ago, database))) % 9999:04d}",
        "repository_id": "r",
        "kind": "daily",
        "started_at": finished - timedelta(minutes=1),
        "finished_at": finished,
        "source": {
            "database": database,
            "host_hash": "abcdef0123456789",
            "server_version": "15.8",
            "pg_dump_version": "18.1",
        },
        "artifacts": {
            "database": {
                "key": "k",
                "content": "pg_dump-custom",
                "codecs": ["zstd", "age"],
                "stored_size": stored,
                "stored_sha256": "0" * 64,
                "plain_size": plain,
                "plain_sha256": "0" * 64,
            }
        },
        "tables": [
            {
                "schema": q.split(".")[0],
                "name": q.split(".")[1],
                "rows": n,
                "sha256": "0",
                "bytes": n,
            }
            for q, n in tables.items()
        ],
        "roles": {"status": "saved"},
    }
    return Manifest.model_validate(data)


def drill(backup: Manifest, days_ago: float, passed: bool = True) -> DrillRecord:
    finished = NOW - timedelta(days=days_ago)
    return DrillRecord.model_validate(
        {
            "backup_id": backup.id,
            "repository_id": "r",
            "passed": passed,
            "started_at": finished - timedelta(minutes=2),
            "finished_at": finished,
            "target": {"kind": "embedded", "server_version": "18.1", "database": "d"},
            "tools": {},
            "setup_seconds": 1,
            "restore_seconds": 30,
            "verify_seconds": 3,
            "restored_size": 1,
            "owners": "restored",
            "tables_checked": 2,
            "rows_checked": 6000,
            "bytes_hashed": 1,
            "objects_checked": 4,
            "tables": [],
            "objects": [],
            "problems": [] if passed else ["public.loans: 4999 rows, the backup has 5000"],
        }
    )


def daily(n: int, **kwargs: Any) -> list[Manifest]:
    """n daily backups, the newest 1 h old."""
    return [manifest(1 + 24 * (n - 1 - i), **kwargs) for i in range(n)]


def levels(findings: list[Finding], what: str) -> list[str]:
    return [f.level for f in findings if f.what == what]


def test_a_healthy_history_is_all_ok() -> None:
    backups = daily(8)
    history = History(NOW, backups, drills=[drill(backups[-1], 3)])
    findings = monitor.evaluate(history)
    assert worst(findings) == "ok", findings
    assert exit_code(findings) == 0
    assert {f.what for f in findings} >= {"freshness", "last-run", "size", "rows", "drill"}


def test_an_empty_repository_is_critical() -> None:
    findings = monitor.freshness(History(NOW, []))
    assert levels(findings, "freshness") == ["error"]
    assert exit_code(findings) == 2


@pytest.mark.parametrize(("hours", "level"), [(24.9, "ok"), (25.1, "error")])
def test_no_backup_within_max_age_is_critical(hours: float, level: str) -> None:
    findings = monitor.freshness(History(NOW, [manifest(hours + 24), manifest(hours)]))
    assert levels(findings, "freshness") == [level]


def test_freshness_is_judged_per_database() -> None:
    history = History(NOW, [manifest(2, database="a"), manifest(30, database="b")])
    findings = monitor.freshness(history)
    bad = [f for f in findings if f.level == "error"]
    assert len(bad) == 1 and "b@" in bad[0].message


def test_a_failed_last_run_is_critical_until_a_backup_succeeds() -> None:
    backups = daily(3)
    failed = RunEvent(NOW - timedelta(minutes=30), "backup", ok=False, error="pg_dump: FATAL x")
    findings = monitor.last_run(History(NOW, backups, runs=[failed]))
    assert levels(findings, "last-run") == ["error"]
    assert "pg_dump: FATAL x" in findings[0].message
    later = [*backups, manifest(0.1)]
    assert levels(monitor.last_run(History(NOW, later, runs=[failed])), "last-run") == ["ok"]
    other = RunEvent(NOW - timedelta(minutes=10), "prune", ok=False, error="x")
    ok = RunEvent(NOW - timedelta(minutes=20), "backup", ok=True)
    findings = monitor.last_run(History(NOW, backups, runs=[failed, ok, other]))
    assert levels(findings, "last-run") == ["ok"]


def test_size_far_outside_the_usual_band_warns_with_the_band() -> None:
    usual = [manifest(1 + 24 * (9 - i), plain=120_000_000 + i * 1_000_000) for i in range(9)]
    odd = manifest(0.5, plain=412_000_000)
    findings = monitor.sizes(History(NOW, [*usual, odd]))
    warned = [f for f in findings if f.level == "warn"]
    assert len(warned) == 1 and "dumped size" in warned[0].message
    assert "392.9 MiB, usually 106.4 MiB–130.1 MiB" in warned[0].message
    # the same history without the odd one is quiet, and a small wobble too
    assert worst(monitor.sizes(History(NOW, usual))) == "ok"
    wobble = manifest(0.5, plain=125_000_000)
    assert worst(monitor.sizes(History(NOW, [*usual, wobble]))) == "ok"


def test_an_almost_empty_backup_warns_about_size_and_tables() -> None:
    usual = daily(6)
    empty = manifest(0.5, plain=4_000, stored=900, tables={})
    findings = monitor.sizes(History(NOW, [*usual, empty]))
    messages = " ".join(f.message for f in findings if f.level == "warn")
    assert "dumped size" in messages and "stored size" in messages and "table count" in messages


def test_too_little_history_judges_no_size() -> None:
    findings = monitor.sizes(History(NOW, [manifest(30), manifest(1, plain=10)]))
    assert worst(findings) == "ok"


def test_a_table_that_lost_rows_or_disappeared_warns() -> None:
    before = manifest(25, tables={"public.members": 1000, "public.loans": 5000, "public.x": 10})
    after = manifest(1, tables={"public.members": 700, "public.x": 1})
    findings = monitor.rows(History(NOW, [before, after]))
    messages = [f.message for f in findings if f.level == "warn"]
    assert any("public.loans" in m and "not in" in m for m in messages)
    assert any("public.members" in m and "1,000 to 700" in m for m in messages)
    assert not any("public.x" in m for m in messages)  # below row_drop_min_rows
    steady = manifest(1, tables={"public.members": 990, "public.loans": 5000, "public.x": 10})
    assert worst(monitor.rows(History(NOW, [before, steady]))) == "ok"


def test_tables_left_out_on_purpose_do_not_warn() -> None:
    before = manifest(25, tables={"public.members": 1000, "public.audit_log": 5000})
    after = manifest(1, tables={"public.members": 1000}).model_copy(
        update={
            "scope": Scope(
                exclude_table_data=["public.audit_log"],
                tables_without_data=[TableName(schema="public", name="audit_log")],
            )
        }
    )
    assert worst(monitor.rows(History(NOW, [before, after]))) == "ok"

    excluded = manifest(1, tables={"public.members": 1000}).model_copy(
        update={"scope": Scope(exclude_table=["public.audit*"])}
    )
    findings = monitor.rows(History(NOW, [before, excluded]))
    assert worst(findings) == "info"
    assert "scope differs (--exclude-table=public.audit*)" in findings[0].message


def test_drills_never_old_or_failed() -> None:
    backups = daily(3)
    assert levels(monitor.drills(History(NOW, backups)), "drill") == ["warn"]
    old = History(NOW, backups, drills=[drill(backups[0], 36)])
    assert levels(monitor.drills(old), "drill") == ["warn"]
    recent = History(NOW, backups, drills=[drill(backups[0], 34)])
    assert levels(monitor.drills(recent), "drill") == ["ok"]
    failed = History(NOW, backups, drills=[drill(backups[0], 10), drill(backups[1], 1, False)])
    assert levels(monitor.drills(failed), "drill") == ["error"]
    assert "4999 rows" in monitor.drills(failed)[0].message


def test_copies_missing_from_the_second_repository_warn_after_a_grace() -> None:
    backups = daily(3)
    ids = frozenset(m.id for m in backups[:-1])
    # the newest is 1 h old: within the default 2 h grace, so not yet missing
    assert worst(monitor.copies(History(NOW, backups, copy_ids=ids))) == "ok"
    strict = Thresholds(copy_grace=timedelta(minutes=30))
    findings = monitor.copies(History(NOW, backups, copy_ids=ids, thresholds=strict))
    assert levels(findings, "copy") == ["warn"] and backups[-1].id in findings[0].message
    assert monitor.copies(History(NOW, backups)) == []  # no second repository configured


def test_retention_overdue_and_damaged_manifests() -> None:
    backups = daily(2)
    overdue = History(NOW, backups, retention_overdue=[(backups[0].id, "daily: 7 days")])
    assert levels(monitor.retention(overdue), "retention") == ["warn"]
    assert levels(monitor.retention(History(NOW, backups, retention_overdue=[])), "retention") == [
        "ok"
    ]
    broken = History(NOW, backups, damaged=[("20261201T020000Z-daily-aaaa", "not valid JSON")])
    assert levels(monitor.damaged(broken), "damaged") == ["error"]


def test_exit_codes_follow_nagios() -> None:
    def of(*levels: str) -> int:
        return exit_code([Finding(level, "x", "m") for level in levels])  # type: ignore[arg-type]

    assert of() == 0 and of("ok", "info") == 0
    assert of("ok", "warn") == 1
    assert of("warn", "error", "unknown") == 2
    assert of("unknown", "ok") == 3
    assert of("unknown", "warn") == 1


def test_a_week_without_a_backup_warns_as_a_missing_weekly() -> None:
    backups = daily(2)
    history = History(NOW, backups, retention_overdue=[], missing_roles=["weekly 2026-W47"])
    findings = monitor.retention(history)
    assert levels(findings, "retention") == ["warn"]
    assert "weekly 2026-W47" in findings[0].message


ESCROW = "age1escrowescrowescrowescrowescrowescrowescrowescrowescrowescrow"


@pytest.mark.parametrize(
    ("recipients", "level"),
    [
        (["age1laptop", ESCROW], "ok"),
        (["age1laptop"], "warn"),
        (None, "warn"),  # a manifest from before bika recorded its recipients
    ],
)
def test_newest_backup_not_readable_by_the_escrow_key_warns(
    recipients: list[str] | None, level: str
) -> None:
    older = manifest(25).model_copy(update={"recipients": ["age1laptop", ESCROW]})
    newest = manifest(1).model_copy(update={"recipients": recipients})
    findings = monitor.escrow(History(NOW, [older, newest], escrow_recipient=ESCROW))
    assert levels(findings, "escrow") == [level]
    if level == "warn":
        assert newest.id in findings[0].message
        assert findings[0].fix.startswith(f"bika key add {ESCROW}")


def test_no_escrow_recipient_configured_checks_nothing() -> None:
    newest = manifest(1).model_copy(update={"recipients": ["age1laptop"]})
    assert monitor.escrow(History(NOW, [newest])) == []


def with_secrets(
    backup: Manifest, entries: dict[str, str], unset: tuple[str, ...] = (), key_id: str = "k1"
) -> Manifest:
    inventory = {
        "key_id": key_id,
        "entries": [{"name": n, "source": "env", "hash": h} for n, h in entries.items()],
        "unset": list(unset),
    }
    return backup.model_copy(update={"secrets": SecretsInventory.model_validate(inventory)})


@pytest.mark.parametrize(
    ("before", "after", "unset", "key", "expected"),
    [
        ({"A": "1", "B": "2"}, {"A": "1", "B": "2"}, (), "k1", [("ok", "2 secrets")]),
        ({"A": "1"}, {"A": "9"}, (), "k1", [("info", "A changed since backup")]),
        ({"A": "1", "B": "2"}, {"A": "1"}, (), "k1", [("warn", "B missing from the last")]),
        ({"A": "1"}, {"A": "1"}, ("C",), "k1", [("warn", "C missing from the last backup")]),
        # another key: values cannot be compared (no false "changed"), names still are
        ({"A": "1", "B": "2"}, {"A": "9"}, (), "k2", [("warn", "B missing"), ("info", "key")]),
    ],
    ids=["same", "changed", "gone", "unset", "other-key"],
)
def test_secrets_inventory_changes(
    before: dict[str, str],
    after: dict[str, str],
    unset: tuple[str, ...],
    key: str,
    expected: list[tuple[str, str]],
) -> None:
    old, new = daily(2)
    history = History(NOW, [with_secrets(old, before), with_secrets(new, after, unset, key)])
    found = [(f.level, f.message) for f in monitor.secrets(history)]
    assert len(found) == len(expected), found
    for (level, message), (want_level, fragment) in zip(found, expected, strict=True):
        assert level == want_level and fragment in message, found
    if expected[0][0] == "info" and "changed" in expected[0][1]:
        assert old.id in found[0][1]


def test_no_secrets_configured_says_nothing() -> None:
    assert monitor.secrets(History(NOW, daily(2))) == []


def platform_backups(*completed_hours: float, pitr_hours: float | None = None) -> PlatformBackups:
    return PlatformBackups(
        project_ref="abcdefghijklmnop",
        region="eu-central-1",
        walg_enabled=True,
        pitr_enabled=pitr_hours is not None,
        backups=(
            *(
                PlatformBackup(i, False, "COMPLETED", NOW - timedelta(hours=h))
                for i, h in enumerate(completed_hours)
            ),
            PlatformBackup(99, False, "FAILED", NOW - timedelta(hours=1)),
        ),
        earliest_physical=None,
        latest_physical=None if pitr_hours is None else NOW - timedelta(hours=pitr_hours),
    )


@pytest.mark.parametrize(
    ("backups", "level"),
    [
        (platform_backups(23.5, 47), "ok"),
        (platform_backups(24.5, 48.5), "warn"),  # a newer FAILED one does not count
        (platform_backups(), "warn"),  # the free plan: none at all
        (platform_backups(pitr_hours=0.1), "ok"),  # PITR: the latest physical backup
        (platform_backups(30, pitr_hours=25), "warn"),
    ],
    ids=["fresh", "stale", "none", "pitr", "pitr-stale"],
)
def test_platform_backup_older_than_a_day_warns(backups: PlatformBackups, level: str) -> None:
    assert levels(monitor.platform(History(NOW, daily(1), platform=backups)), "platform") == [level]
    assert monitor.platform(History(NOW, daily(1))) == []


def _physical(finished_hours_ago: float, wal_hours_ago: float | None) -> WalState:
    """One base backup whose WAL (segments 2..4) was last archived wal_hours_ago, or is
    missing its stop segment (None)."""
    archive = WalInventory(16 << 20)
    last = 4 if wal_hours_ago is not None else 1
    for number in range(2, last + 1):
        archive.add(
            names.Segment(1, number).name(16 << 20),
            NOW - timedelta(hours=wal_hours_ago or 0),
        )
    stretch, gap = archive.stretch_from(1, names.Segment(1, 2))
    reach = BackupReach(
        "20261201T000000Z-physical-abcd",
        1,
        NOW - timedelta(hours=finished_hours_ago),
        names.Segment(1, 3).name(16 << 20),
        stretch,
        gap,
    )
    return WalState(None, None, {}, [reach])


@pytest.mark.parametrize(
    ("base_hours", "wal_hours", "level"),
    [(30, 1, "ok"), (2, 2, "ok"), (30, 26, "error"), (2, None, "error")],
)
def test_physical_backups_count_for_freshness_by_their_newest_recoverable_point(
    base_hours: float, wal_hours: float | None, level: str
) -> None:
    findings = monitor.freshness(History(NOW, [], wal=_physical(base_hours, wal_hours)))
    assert levels(findings, "freshness") == [level]
    assert "holds no backups" not in findings[0].message


def test_logical_and_physical_freshness_are_reported_apart() -> None:
    findings = monitor.freshness(History(NOW, [manifest(30)], wal=_physical(1, 1)))
    assert sorted(levels(findings, "freshness")) == ["error", "ok"]
    assert any("physical" in f.message and f.level == "ok" for f in findings)


def _physical_drill(days_ago: float, passed: bool = True) -> PhysicalDrill:
    finished = NOW - timedelta(days=days_ago)
    return PhysicalDrill(
        backup_id="20261201T000000Z-physical-abcd",
        repository_id="r",
        passed=passed,
        started_at=finished - timedelta(minutes=1),
        finished_at=finished,
        server_version="18.1",
        timeline=2,
        recovered_to=None,
        last_segment="000000010000000000000004",
        restore_seconds=1.0,
        recovery_seconds=1.0,
        check_seconds=1.0,
        rto_seconds=2.0,
        rpo_seconds=None,
        databases=1,
        tables=1,
        rows=1,
        amcheck="ok" if passed else "corrupt",
        problems=[] if passed else ["pg_amcheck: corrupt"],
    )


@pytest.mark.parametrize(
    ("drills", "found"),
    [([], ["warn"]), ([_physical_drill(3)], ["ok"]), ([_physical_drill(40)], ["warn"])],
)
def test_physical_drills_answer_for_a_repository_of_physical_backups(
    drills: list[PhysicalDrill], found: list[str]
) -> None:
    history = History(NOW, [], wal=_physical(1, 1), physical_drills=drills)
    findings = monitor.drills(history)
    assert levels(findings, "drill") == found
    assert all("--physical" in (f.fix or "") for f in findings if f.level != "ok")
    both = monitor.drills(History(NOW, [manifest(1)], wal=_physical(1, 1), physical_drills=drills))
    assert len(both) == 2  # the logical backups' own finding, and the physical one
    failed = History(NOW, [], wal=_physical(1, 1), physical_drills=[_physical_drill(1, False)])
    assert levels(monitor.drills(failed), "drill") == ["error"]
