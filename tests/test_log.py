"""Logs for unattended runs: timestamped lines with a level on stderr and in --log-file, JSON
lines on request, bare lines on a terminal, and never a password."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from bika.errors import ConfigError
from bika.log import CONSOLE, configure
from bika.postgres.cluster import Cluster
from bika.postgres.connection import ConnInfo

from helpers import KeyedRepo, assert_clean_error, run_bika

LOG = logging.getLogger("bika.operations.backup")
SECRET_URL = "postgresql://app:hunter2-pw@db.example/app"


@pytest.fixture(autouse=True)
def fresh_logger() -> Iterator[None]:
    yield
    logger = logging.getLogger("bika")
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
        handler.close()
    logger.propagate = True  # as before configure(), for other tests' caplog


def test_unattended_lines_carry_time_level_and_command(capsys: pytest.CaptureFixture[str]) -> None:
    configure(interactive=False, command="backup")
    LOG.info("backing up %s into /repo", SECRET_URL)
    LOG.warning("roles not saved", extra={"backup_id": "20261203T105215Z-manual-4fdd"})
    lines = capsys.readouterr().err.splitlines()
    assert re.fullmatch(
        r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z INFO backup: backing up"
        r" postgresql://app:\*\*\*@db\.example/app into /repo",
        lines[0],
    ), lines[0]
    assert lines[1].endswith(
        "WARNING backup: roles not saved backup_id=20261203T105215Z-manual-4fdd"
    )


def test_log_file_appends_json_lines_with_fields(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    log_file = tmp_path / "bika.log"
    log_file.write_text('{"message": "an earlier run"}\n')
    configure(interactive=True, log_file=log_file, log_format="json", command="backup")
    LOG.info("backed up %s", SECRET_URL, extra={"backup_id": "B1", "stored_bytes": 1024})
    LOG.error("failed: password=hunter2-pw", extra={CONSOLE: False})
    assert capsys.readouterr().err == f"backed up {SECRET_URL.replace('hunter2-pw', '***')}\n"
    text = log_file.read_text()
    assert "hunter2-pw" not in text
    earlier, first, second = (json.loads(line) for line in text.splitlines())
    assert earlier == {"message": "an earlier run"}
    assert set(first) == {"time", "level", "message", "command", "backup_id", "stored_bytes"}
    assert first["level"] == "info" and first["command"] == "backup"
    assert (first["backup_id"], first["stored_bytes"]) == ("B1", 1024)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", first["time"])
    assert (second["level"], second["message"]) == ("error", "failed: password=***")


def test_quiet_keeps_notes_off_the_terminal_but_in_the_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    log_file = tmp_path / "bika.log"
    configure(interactive=True, quiet=True, log_file=log_file)
    LOG.info("a note")
    LOG.warning("something to see")
    assert capsys.readouterr().err == "something to see\n"
    lines = log_file.read_text().splitlines()
    assert lines[0].endswith(" INFO a note") and lines[1].endswith(" WARNING something to see")


def test_bad_log_settings_are_one_line_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"cannot open log file .*/missing/bika\.log: "):
        configure(interactive=False, log_file=tmp_path / "missing" / "bika.log")
    with pytest.raises(ConfigError, match="--log-format 'xml' is not one of text, json"):
        configure(interactive=False, log_format="xml")  # type: ignore[arg-type]


def test_an_unattended_backup_logs_json_lines_without_the_password(
    pg18: Cluster,
    new_database: Callable[[Cluster], str],
    keyed_repo: KeyedRepo,
    tmp_path: Path,
) -> None:
    url = new_database(pg18)
    password = ConnInfo.parse(url).password
    assert password
    log_file = tmp_path / "bika.log"
    done = run_bika(
        "--log-file", str(log_file), "--log-format", "json", "backup", "--repo",
        str(keyed_repo.repo), "--db", url, "--kind", "daily",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    backup_id = done.stdout.strip()
    # stderr is not a terminal here: it gets the same JSON lines as the file
    on_stderr = [json.loads(line) for line in done.stderr.splitlines()]
    logged = [json.loads(line) for line in log_file.read_text().splitlines()]
    assert on_stderr == logged
    assert {entry["command"] for entry in logged} == {"backup"}
    assert logged[0]["message"].startswith("backing up postgresql://")
    assert logged[-1]["backup_id"] == backup_id and logged[-1]["level"] == "info"

    failed = run_bika("--log-file", str(log_file), "list", "--repo", str(tmp_path / "nope"))
    assert_clean_error(failed, "no bika repository")  # stderr: still the one plain line
    last = log_file.read_text().splitlines()[-1]  # appended, in the default text format
    assert re.fullmatch(r"\S+Z ERROR list: error: no bika repository at .*", last), last
    assert password not in log_file.read_text() + done.stderr + failed.stderr
