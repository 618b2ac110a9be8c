"""What the commands print: labels and table names are data (never markup, never raw escapes),
ids are never shortened, piped output is plain, a closed pipe ends bika quietly, and every
--json result is one JSON document with "ok", one time format, and errors in restic's shape."""

from __future__ import annotations

import fcntl
import json
import os
import pty
import re
import signal
import struct
import subprocess
import sys
import termios
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg

from bika.postgres.cluster import Cluster

from helpers import KeyedRepo, assert_clean_error, offline_env, run_bika

BOX = re.compile("[\u2500-\u257f]")
RFC3339_UTC = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")
MARKUP_LABEL = "[/bold] oops [red]x"
ESCAPE_LABEL = "\x1b[2J\x1b[31mCLEARED\x1b[0m"


def _small_database(cluster: Cluster, new_database: Callable[[Cluster], str]) -> str:
    url = new_database(cluster)
    with psycopg.connect(url) as db:
        db.execute('CREATE TABLE "[/red]" (id int PRIMARY KEY)')
        db.execute('INSERT INTO "[/red]" SELECT generate_series(1, 1500)')
    return url


def _json(result: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    assert "Traceback" not in result.stderr, result.stderr
    document: dict[str, Any] = json.loads(result.stdout)
    return document


def test_labels_with_markup_and_escapes_are_listed_and_shown_literally(
    pg18: Cluster, new_database: Callable[[Cluster], str], keyed_repo: KeyedRepo
) -> None:
    url = _small_database(pg18, new_database)
    marked = keyed_repo.backup(url, "--label", MARKUP_LABEL)
    escaped = keyed_repo.backup(url, "--label", ESCAPE_LABEL)
    repo = str(keyed_repo.repo)

    listed = run_bika("list", "--repo", repo)
    assert listed.returncode == 0, listed.stderr
    assert MARKUP_LABEL in listed.stdout
    assert "\\x1b[2J\\x1b[31mCLEARED\\x1b[0m" in listed.stdout
    assert "\x1b" not in listed.stdout

    shown = run_bika("show", marked, "--repo", repo)
    assert shown.returncode == 0, shown.stderr
    assert f"label: {MARKUP_LABEL}" in shown.stdout
    shown = run_bika("show", escaped, "--repo", repo)
    assert shown.returncode == 0, shown.stderr
    assert "\x1b" not in shown.stdout and "\\x1b[2J" in shown.stdout

    # --json keeps the label exactly, escaped the JSON way
    labels = [b["label"] for b in _json(run_bika("list", "--repo", repo, "--json"))["backups"]]
    assert labels == [MARKUP_LABEL, ESCAPE_LABEL]


def test_a_table_named_like_markup_restores_and_shows(
    pg18: Cluster, new_database: Callable[[Cluster], str], keyed_repo: KeyedRepo
) -> None:
    url = _small_database(pg18, new_database)
    backup_id = keyed_repo.backup(url)
    repo = str(keyed_repo.repo)
    target = new_database(pg18)

    restored = run_bika(
        "restore", backup_id, "--repo", repo, "--identity", str(keyed_repo.key), "--to", target
    )
    assert restored.returncode == 0, restored.stderr
    assert "[/red]" in restored.stdout and "1,500" in restored.stdout
    shown = run_bika("show", "latest", "--repo", repo)
    assert shown.returncode == 0, shown.stderr
    assert re.search(r"public\s+\[/red\]\s+1,500", shown.stdout), shown.stdout


def test_piped_list_is_plain_and_shows_whole_ids(
    pg18: Cluster, new_database: Callable[[Cluster], str], keyed_repo: KeyedRepo
) -> None:
    url = _small_database(pg18, new_database)
    ids = [keyed_repo.backup(url), keyed_repo.backup(url, "--kind", "pre-migration")]
    repo = str(keyed_repo.repo)

    for command in (["list"], ["show", "latest"]):
        # a narrow terminal width must not matter to a pipe either
        result = run_bika(*command, "--repo", repo, env={"COLUMNS": "40"})
        assert result.returncode == 0, result.stderr
        assert not BOX.search(result.stdout), result.stdout
        assert all(line == line.rstrip() for line in result.stdout.splitlines())
    listed = run_bika("list", "--repo", repo, env={"COLUMNS": "40"}).stdout
    assert [line.split()[0] for line in listed.splitlines()[2:]] == ids
    assert [b["id"] for b in keyed_repo.list()] == ids


def test_backup_summary_groups_rows_by_thousands(
    pg18: Cluster, new_database: Callable[[Cluster], str], keyed_repo: KeyedRepo
) -> None:
    url = _small_database(pg18, new_database)
    result = run_bika("backup", "--repo", str(keyed_repo.repo), "--db", url)
    assert result.returncode == 0, result.stderr
    assert "1,500 rows" in result.stderr


def _into_closed_pipe(*args: str) -> subprocess.CompletedProcess[str]:
    """bika with a stdout whose reader has already gone, as `| head -1` leaves it."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        return subprocess.run(
            [sys.executable, "-m", "bika", *args],
            stdout=write_end,
            stderr=subprocess.PIPE,
            text=True,
            env=offline_env({k: v for k, v in os.environ.items() if not k.startswith("BIKA_")}),
            timeout=120,
        )
    finally:
        os.close(write_end)


def test_a_closed_pipe_ends_show_and_list_quietly_with_141(
    pg18: Cluster, new_database: Callable[[Cluster], str], keyed_repo: KeyedRepo
) -> None:
    keyed_repo.backup(_small_database(pg18, new_database))
    repo = str(keyed_repo.repo)
    for command in (["show", "latest"], ["list"], ["list", "--json"]):
        result = _into_closed_pipe(*command, "--repo", repo)
        assert result.returncode == 128 + signal.SIGPIPE, (command, result.returncode)
        assert result.stderr == "", result.stderr
    piped = subprocess.run(
        [
            "bash",
            "-c",
            '"$0" -m bika show latest --repo "$1" | head -1; exit "${PIPESTATUS[0]}"',
            sys.executable,
            repo,
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert piped.returncode in (0, 128 + signal.SIGPIPE), piped.returncode
    assert piped.stdout.startswith("backup ") and piped.stderr == ""


def test_every_json_result_has_ok_and_one_time_format(
    pg18: Cluster, new_database: Callable[[Cluster], str], keyed_repo: KeyedRepo, tmp_path: Path
) -> None:
    url = _small_database(pg18, new_database)
    repo, key = str(keyed_repo.repo), str(keyed_repo.key)
    documents = {
        "init": _json(
            run_bika(
                "init",
                "--repo",
                str(tmp_path / "r2"),
                "--recipient",
                keyed_repo.recipient,
                "--json",
            )
        ),
        "backup": _json(run_bika("backup", "--repo", repo, "--db", url, "--json")),
    }
    backup_id = documents["backup"]["backup"]["id"]
    target = new_database(pg18)
    documents |= {
        "verify": _json(run_bika("verify", "--repo", repo, "--json")),
        "drill": _json(
            run_bika("drill", "--repo", repo, "--identity", key, "--target", pg18.url(), "--json")
        ),
        "restore": _json(
            run_bika(
                "restore", backup_id, "--repo", repo, "--identity", key, "--to", target, "--json"
            )
        ),
        "copy": _json(run_bika("copy", "--repo", repo, "--to", str(tmp_path / "r2"), "--json")),
        "list": _json(run_bika("list", "--repo", repo, "--json")),
        "show": _json(run_bika("show", backup_id, "--repo", repo, "--json")),
        "doctor": _json(run_bika("doctor", "--repo", repo, "--json")),
    }
    assert {name: doc["ok"] for name, doc in documents.items()} == dict.fromkeys(documents, True)
    assert documents["init"]["recipients"] == [keyed_repo.recipient]
    assert documents["list"]["backups"][0]["id"] == backup_id
    assert [t["table"] for t in documents["restore"]["tables"]] == ["public.[/red]"]
    # show --json carries the drill history the human `show` prints
    assert [d["passed"] for d in documents["show"]["drills"]] == [True]
    times = [
        documents["backup"]["backup"]["started_at"],
        documents["list"]["backups"][0]["started_at"],
        documents["list"]["backups"][0]["drill"]["at"],
        documents["show"]["started_at"],
        documents["show"]["drills"][0]["finished_at"],
        documents["drill"]["finished_at"],
    ]
    assert all(RFC3339_UTC.match(t) for t in times), times
    assert documents["show"]["started_at"] == documents["list"]["backups"][0]["started_at"]


def test_errors_under_json_are_restics_exit_error_on_stdout(keyed_repo: KeyedRepo) -> None:
    result = run_bika("show", "nope", "--repo", str(keyed_repo.repo), "--json")
    assert_clean_error(result, "no backup 'nope'")
    assert json.loads(result.stdout) == {
        "ok": False,
        "message_type": "exit_error",
        "code": 1,
        "message": result.stderr.strip().removeprefix("bika: error: "),
    }
    missing = run_bika("list", "--repo", str(keyed_repo.repo / "nothing"), "--json")
    assert json.loads(missing.stdout)["code"] == 1
    usage = run_bika("list", "--json", "--bogus")
    assert usage.returncode == 2 and json.loads(usage.stdout)["code"] == 2


def test_show_with_an_empty_id_asks_for_one(keyed_repo: KeyedRepo) -> None:
    result = run_bika("show", "", "--repo", str(keyed_repo.repo))
    assert_clean_error(result, "give a backup id")
    assert result.returncode == 2


def test_init_names_a_path_with_brackets_as_given(tmp_path: Path, keyed_repo: KeyedRepo) -> None:
    repo = tmp_path / "[prod]repo"
    result = run_bika("init", "--repo", str(repo), "--recipient", keyed_repo.recipient)
    assert result.returncode == 0, result.stderr
    assert f"created repository {repo} " in result.stderr
    cleared = tmp_path / "x\x1b[2Jy"
    result = run_bika("init", "--repo", str(cleared), "--recipient", keyed_repo.recipient)
    assert result.returncode == 0, result.stderr
    assert "\x1b" not in result.stderr and f"{tmp_path}/x\\x1b[2Jy" in result.stderr


def _on_a_terminal(*args: str, columns: int = 80) -> str:
    """bika's stdout on a pseudo-terminal `columns` wide, as a person sees it."""
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 24, columns, 0, 0))
    env = offline_env({k: v for k, v in os.environ.items() if not k.startswith("BIKA_")})
    env.pop("COLUMNS", None)
    env["TERM"] = "xterm-256color"
    process = subprocess.Popen(
        [sys.executable, "-m", "bika", *args], stdout=follower, stderr=subprocess.PIPE, env=env
    )
    os.close(follower)
    chunks = []
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # EIO: the terminal's other side has closed
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(leader)
    assert process.wait(timeout=120) == 0
    return b"".join(chunks).decode()


def test_on_an_80_column_terminal_ids_are_whole_and_json_is_not_coloured(
    pg18: Cluster, new_database: Callable[[Cluster], str], keyed_repo: KeyedRepo
) -> None:
    backup_id = keyed_repo.backup(_small_database(pg18, new_database), "--kind", "pre-migration")
    repo = str(keyed_repo.repo)
    table = _on_a_terminal("list", "--repo", repo)
    assert backup_id in table and "…" not in table
    shown = _on_a_terminal("list", "--repo", repo, "--json")
    assert "\x1b" not in shown
    assert json.loads(shown)["backups"][0]["id"] == backup_id
