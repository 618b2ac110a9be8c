"""What bika prints, without servers: untrusted text escaped and never markup, tables that never
shorten an id, and the JSON shapes with one time format and a top-level "ok"."""

from __future__ import annotations

import io
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from rich.console import Console

from bika.cli import json_shapes
from bika.cli.render import Column, DataConsole, cell, print_table, text
from bika.errors import ConfigError
from bika.repository import Manifest, Repository
from bika.repository.drills import DrillRecord, DrillTarget
from bika.storage.local import LocalStorage

BACKUP_ID = "20261130T104942Z-manual-3727"
STARTED = datetime(2026, 11, 30, 10, 49, 42, tzinfo=UTC)  # no microseconds
BOX = re.compile("[\u2500-\u257f]")


def console(terminal: bool, width: int = 80) -> tuple[Console, io.StringIO]:
    buffer = io.StringIO()
    return (
        DataConsole(
            file=buffer,
            force_terminal=terminal,
            width=width,
            markup=False,
            highlight=False,
            color_system="standard" if terminal else None,
        ),
        buffer,
    )


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        ("\x1b[2J\x1b[31mCLEARED\x1b[0m", "\\x1b[2J\\x1b[31mCLEARED\\x1b[0m"),
        ("a\nb\tc\rd", "a\\nb\\tc\\rd"),
        ("bell\x07 del\x7f csi\x9b nul\x00", "bell\\x07 del\\x7f csi\\x9b nul\\x00"),
        ("evil\u202ecod.exe", "evil\\u202ecod.exe"),
        ("[/bold] oops [red]x", "[/bold] oops [red]x"),
        ("café 日本 ✓", "café 日本 ✓"),
    ],
)
def test_text_writes_control_characters_as_visible_escapes(raw: str, shown: str) -> None:
    assert text(raw) == shown


def test_console_prints_markup_and_emoji_codes_literally() -> None:
    out, buffer = console(terminal=True)
    out.print("label [/bold] and [red]x[/red] :warning:", markup=True)
    out.print(cell("[bold]release 2[/bold]"))
    printed = buffer.getvalue()
    assert "label [/bold] and [red]x[/red] :warning:" in printed
    assert "[bold]release 2[/bold]" in printed


def test_console_never_writes_an_escape_sequence_it_was_given() -> None:
    out, buffer = console(terminal=False)
    out.print("label \x1b[2Jgone")
    assert buffer.getvalue() == "label \\x1b[2Jgone\n"


def _rows() -> list[list[str]]:
    return [
        [BACKUP_ID, "manual", "3,038,830", "[/red] \x1b[31m"],
        ["20261130T104943Z-pre-migration-0001", "pre-migration", "7", ""],
    ]


COLUMNS = [Column("id"), Column("kind"), Column("rows", right=True), Column("label")]


def test_piped_table_is_plain_aligned_columns() -> None:
    out, buffer = console(terminal=False, width=200)
    print_table(out, COLUMNS, _rows(), title="backups in /tmp/[prod]repo")
    lines = buffer.getvalue().splitlines()
    assert lines == [
        "backups in /tmp/[prod]repo",
        "id                                   kind                rows  label",
        "20261130T104942Z-manual-3727         manual         3,038,830  [/red] \\x1b[31m",
        "20261130T104943Z-pre-migration-0001  pre-migration          7",
    ]
    assert not BOX.search(buffer.getvalue())


def test_table_on_a_narrow_terminal_keeps_every_id_whole() -> None:
    out, buffer = console(terminal=True, width=30)
    print_table(out, COLUMNS, _rows())
    printed = re.sub("\x1b\\[[0-9;]*m", "", buffer.getvalue())
    assert BACKUP_ID in printed
    assert "20261130T104943Z-pre-migration-0001" in printed
    assert "…" not in printed
    assert "\x1b[31m" not in printed.replace("\\x1b", "")


def test_an_empty_id_is_refused_rather_than_matching_every_backup(tmp_path: Path) -> None:
    repo = Repository.init(LocalStorage(tmp_path / "repo"), ["age1test"])
    with pytest.raises(ConfigError, match="give a backup id"):
        repo.resolve("")


# JSON shapes -------------------------------------------------------------------------------

RFC3339_UTC = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")


def _manifest() -> Manifest:
    return Manifest(
        tool="bika test",
        id=BACKUP_ID,
        repository_id="r",
        kind="manual",
        label="[/bold]",
        started_at=STARTED,
        finished_at=STARTED + timedelta(seconds=7, microseconds=120_000),
        source={
            "database": "db",
            "host_hash": "0" * 16,
            "server_version": "18.1",
            "pg_dump_version": "18.1",
        },
        artifacts={},
        tables=[],
        roles={"status": "skipped"},
    )


def _drill(passed: bool) -> DrillRecord:
    return DrillRecord(
        backup_id=BACKUP_ID,
        repository_id="r",
        passed=passed,
        started_at=STARTED + timedelta(hours=1),
        finished_at=STARTED + timedelta(hours=1, seconds=3),
        target=DrillTarget(kind="embedded", server_version="18.1", database="scratch"),
        tools={},
        setup_seconds=1.0,
        restore_seconds=2.0,
        verify_seconds=0.5,
        restored_size=None,
        owners="restored",
        tables_checked=0,
        rows_checked=0,
        bytes_hashed=0,
        objects_checked=0,
        tables=[],
        objects=[],
        problems=[] if passed else ["public.t differs"],
    )


def _times(value: object) -> list[str]:
    """Every value of a field named *_at or at, however deep."""
    if isinstance(value, dict):
        return [
            *(v for k, v in value.items() if k.endswith("_at") or k == "at"),
            *(t for v in value.values() for t in _times(v)),
        ]
    if isinstance(value, list):
        return [t for v in value for t in _times(v)]
    return []


def test_every_time_in_list_and_show_json_is_one_rfc3339_utc_format(tmp_path: Path) -> None:
    repo = Repository.init(LocalStorage(tmp_path / "repo"), ["age1test"])
    manifest, drill = _manifest(), _drill(passed=True)
    listed = json_shapes.list_result(repo, [manifest], {BACKUP_ID: drill})
    shown = json_shapes.show_result(manifest, [drill])
    times = _times(listed) + _times(shown) + _times(json_shapes.drill_result(drill))
    assert len(times) == 9
    assert all(RFC3339_UTC.match(t) for t in times), times
    assert listed["backups"][0]["started_at"] == shown["started_at"]
    assert shown["started_at"] == "2026-11-30T10:49:42.000000Z"


def test_show_json_is_the_manifest_with_its_drill_history() -> None:
    shown = json_shapes.show_result(_manifest(), [_drill(passed=False), _drill(passed=True)])
    assert shown["ok"] is True
    assert shown["id"] == BACKUP_ID
    assert shown["label"] == "[/bold]"
    assert [d["passed"] for d in shown["drills"]] == [False, True]


def test_a_failed_drill_is_not_ok() -> None:
    assert json_shapes.drill_result(_drill(passed=False))["ok"] is False


def test_errors_have_restics_exit_error_shape() -> None:
    assert json_shapes.exit_error(2, "bad") == {
        "ok": False,
        "message_type": "exit_error",
        "code": 2,
        "message": "bad",
    }
