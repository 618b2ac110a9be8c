"""The schedule: next and missed runs (pure), and its exports read back by the tools that
consume them (systemd-analyze, a YAML parser, crontab syntax)."""

from __future__ import annotations

import subprocess
from datetime import UTC, datetime, timedelta

import pytest
import yaml
from pydantic import ValidationError

from bika.schedule import Job, ScheduleConfig, jobs, missed, next_run, previous_run
from bika.schedule_export import export, on_calendar

DAILY = Job("backup", "0 2 * * *", (("backup", "--kind", "daily"), ("prune",)))
T = datetime(2026, 12, 3, 10, 0, tzinfo=UTC)


def test_the_default_schedule_is_the_procedures() -> None:
    config = ScheduleConfig()
    names = {j.name: j for j in jobs(config, has_identity=True, has_copy=True)}
    assert names["backup"].cron == "0 2 * * *"
    assert names["backup"].steps == (("backup", "--kind", "daily"), ("prune",), ("copy",))
    assert names["verify"].steps == (("verify", "--read-data-subset", "15%"),)
    assert names["drill"].steps == (("drill", "latest"),)
    # a backup host without the private key verifies sizes only and drills nothing
    without = {j.name: j for j in jobs(config, has_identity=False, has_copy=False)}
    assert without["verify"].steps == (("verify",),) and "drill" not in without
    assert without["backup"].steps == (("backup", "--kind", "daily"), ("prune",))


def test_next_and_previous_runs() -> None:
    assert next_run(DAILY, T) == datetime(2026, 12, 4, 2, 0, tzinfo=UTC)
    assert previous_run(DAILY, T) == datetime(2026, 12, 3, 2, 0, tzinfo=UTC)
    exactly = datetime(2026, 12, 3, 2, 0, tzinfo=UTC)
    assert previous_run(DAILY, exactly) == exactly
    assert next_run(DAILY, exactly) == exactly + timedelta(days=1)
    kigali = next_run(DAILY, T, "Africa/Kigali")  # UTC+2: 02:00 there is 00:00 UTC
    assert kigali == datetime(2026, 12, 4, 0, 0, tzinfo=UTC)


def test_a_missed_run_is_caught_up_once() -> None:
    yesterday = datetime(2026, 12, 2, 2, 0, tzinfo=UTC)
    assert missed(DAILY, yesterday, T)  # today's 02:00 passed while down
    assert not missed(DAILY, datetime(2026, 12, 3, 2, 0, tzinfo=UTC), T)
    assert missed(DAILY, yesterday - timedelta(days=5), T)  # five missed: still one catch-up
    assert not missed(DAILY, None, T)  # never ran: waits for its time


def test_bad_cron_and_time_zone_are_refused() -> None:
    with pytest.raises(ValidationError, match="not a cron expression"):
        ScheduleConfig(backup="every day")
    with pytest.raises(ValidationError, match="not a time zone"):
        ScheduleConfig(timezone="Mars/Olympus")
    assert (
        jobs(ScheduleConfig(backup="", verify="", drill=""), has_identity=True, has_copy=True) == []
    )


@pytest.mark.parametrize(
    ("cron", "expected_next"),
    [
        ("0 2 * * *", "2026-12-04 02:00:00"),
        ("30 3 * * 1-5", "2026-12-04 03:30:00"),
        ("0 4 1 * *", "2027-01-01 04:00:00"),
        ("*/15 * * * *", "2026-12-03 10:15:00"),
        ("0 2 * * 0", "2026-12-06 02:00:00"),
    ],
)
def test_systemd_calendar_means_the_same_times(cron: str, expected_next: str) -> None:
    calendar = on_calendar(cron, "UTC")
    result = subprocess.run(
        ["systemd-analyze", "calendar", "--base-time=2026-12-03 10:00:00 UTC", calendar],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, (calendar, result.stderr)
    assert expected_next in result.stdout, (calendar, result.stdout)


def test_exports_parse_and_run_the_same_chain() -> None:
    config = ScheduleConfig()
    found = jobs(config, has_identity=True, has_copy=False)
    cron = export("cron", found, config, bika="/usr/bin/bika", config_file="/etc/bika/bika.toml")
    lines = [line for line in cron.splitlines() if line and not line.startswith("#")]
    assert lines[0] == "CRON_TZ=UTC"
    assert lines[1] == (
        "0 2 * * * /usr/bin/bika backup --kind daily --config /etc/bika/bika.toml"
        " && /usr/bin/bika prune --config /etc/bika/bika.toml"
    )
    manifests = list(yaml.safe_load_all(export("kubernetes", found, config)))
    assert [m["spec"]["schedule"] for m in manifests] == [j.cron for j in found]
    assert all(m["spec"]["concurrencyPolicy"] == "Forbid" for m in manifests)
    command = manifests[0]["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]
    assert command["command"][-1] == "bika backup --kind daily && bika prune"
    workflow = yaml.safe_load(export("github-actions", found, config))
    assert [c["cron"] for c in workflow[True]["schedule"]] == [j.cron for j in found]
    steps = workflow["jobs"]["bika"]["steps"]
    assert any(s.get("run") == "bika backup --kind daily && bika prune" for s in steps)
    units = export("systemd", found, config, bika="/usr/bin/bika")
    assert "OnCalendar=*-*-* 2:0:00 UTC" in units and "Persistent=true" in units


def test_the_runbook_is_written_after_each_drill() -> None:
    config = ScheduleConfig(runbook="/srv/dr/RUNBOOK.md")
    drill = {j.name: j for j in jobs(config, has_identity=True, has_copy=False)}["drill"]
    assert drill.steps == (
        ("drill", "latest"),
        ("runbook", "--markdown", "--output", "/srv/dr/RUNBOOK.md"),
    )
