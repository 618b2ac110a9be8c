"""`bika run -- COMMAND`: a backup first, the command only if it succeeded, its exit code bika's.

Real PostgreSQL; the commands are small Python programs that look at what bika left them (the
backup listed, its id on stdout before theirs) and write marker files.
"""

from __future__ import annotations

import contextlib
import json
import os
import pty
import select
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from psycopg.conninfo import conninfo_to_dict, make_conninfo

from bika.postgres.cluster import Cluster

from helpers import KeyedRepo, assert_clean_error, run_bika

# lists the repository from inside the command, writes what it saw, exits with argv[3]
LISTS_AND_EXITS = """
import json, subprocess, sys
listed = subprocess.run(
    [sys.executable, "-m", "bika", "list", "--repo", sys.argv[1], "--json"],
    capture_output=True, text=True, check=True,
)
backups = json.loads(listed.stdout)["backups"]
open(sys.argv[2], "w").write(json.dumps(backups))
print("migrating")
sys.exit(int(sys.argv[3]))
"""


def _wait_for(path: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.05)


def test_the_command_runs_after_the_backup_sees_it_listed_and_its_exit_code_is_bikas(
    pg18: Cluster, new_database: Callable[[Cluster], str], keyed_repo: KeyedRepo, tmp_path: Path
) -> None:
    url = new_database(pg18)
    seen = tmp_path / "seen.json"
    result = run_bika(
        "run", "--repo", str(keyed_repo.repo), "--db", url, "--label", "0042_add_loans", "--",
        sys.executable, "-c", LISTS_AND_EXITS, str(keyed_repo.repo), str(seen), "3",
    )  # fmt: skip
    assert result.returncode == 3, result.stderr
    # the id first, then what the command printed
    backup_id, printed = result.stdout.splitlines()
    assert printed == "migrating"
    listed = json.loads(seen.read_text())
    assert [b["id"] for b in listed] == [backup_id]
    manifest = keyed_repo.manifest(backup_id)
    assert manifest["kind"] == "pre-migration"
    assert manifest["label"] == "0042_add_loans"
    assert f"bika restore {backup_id} --to URL --clean" in result.stderr


def test_a_command_that_succeeds_exits_zero_and_kind_can_be_chosen(
    pg18: Cluster, new_database: Callable[[Cluster], str], keyed_repo: KeyedRepo, tmp_path: Path
) -> None:
    url = new_database(pg18)
    seen = tmp_path / "seen.json"
    result = run_bika(
        "run", "-q", "--repo", str(keyed_repo.repo), "--db", url, "--kind", "manual", "--",
        sys.executable, "-c", LISTS_AND_EXITS, str(keyed_repo.repo), str(seen), "0",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert [b["kind"] for b in keyed_repo.list()] == ["manual"]
    assert result.stderr == ""


def test_a_failed_backup_runs_no_command_and_exits_one(
    pg18: Cluster, new_database: Callable[[Cluster], str], keyed_repo: KeyedRepo, tmp_path: Path
) -> None:
    params = {**conninfo_to_dict(new_database(pg18)), "password": "not-the-password"}
    marker = tmp_path / "ran"
    result = run_bika(
        "run", "--repo", str(keyed_repo.repo), "--db", make_conninfo(**params), "--",
        sys.executable, "-c", "import sys; open(sys.argv[1], 'w').write('ran')", str(marker),
    )  # fmt: skip
    assert result.returncode == 1
    assert_clean_error(result, "password authentication failed")
    assert "not-the-password" not in result.stdout + result.stderr
    assert not marker.exists(), "the command ran after a failed backup"
    assert result.stdout == ""
    assert keyed_repo.list() == []


def test_no_command_is_a_usage_error_of_one_line(keyed_repo: KeyedRepo) -> None:
    for args in ([], ["--"], ["--label", "x", "--"]):
        result = run_bika("run", "--repo", str(keyed_repo.repo), *args)
        assert result.returncode == 2, result.stderr
        assert result.stderr.splitlines() == [
            "bika: usage: no command given; put it after --: bika run -- supabase db push"
            " (see 'bika run --help')"
        ]
    assert keyed_repo.list() == []


def test_a_misspelt_or_unexecutable_command_fails_before_any_backup(
    keyed_repo: KeyedRepo, tmp_path: Path
) -> None:
    script = tmp_path / "migrate.sh"
    script.write_text("#!/bin/sh\nexit 0\n")  # not made executable
    for command, code, said in (
        ("supabsae", 127, "command not found: 'supabsae'"),
        (str(script), 126, "is not executable"),
    ):
        result = run_bika(
            "run", "--repo", str(keyed_repo.repo), "--db", "postgresql://nowhere/db", "--",
            command, "db", "push",
        )  # fmt: skip
        assert result.returncode == code, result.stderr
        assert_clean_error(result, said)
    assert keyed_repo.list() == []


# writes "ready", then waits; counts every SIGINT/SIGTERM delivered to it (the wakeup fd gets a
# byte for each, even when Python would run its handler once for two); exits 7 a second after
# the first, having written their names
COUNTS_SIGNALS = """
import os, signal, sys, time
read, write = os.pipe()
os.set_blocking(read, False)
os.set_blocking(write, False)
signal.set_wakeup_fd(write)
signal.signal(signal.SIGINT, lambda signum, frame: None)
signal.signal(signal.SIGTERM, lambda signum, frame: None)
open(sys.argv[1], "w").write("ready")
deadline = time.monotonic() + 60
got = b""
while not got and time.monotonic() < deadline:
    time.sleep(0.05)
    try:
        got += os.read(read, 100)
    except BlockingIOError:
        pass
time.sleep(1)
try:
    got += os.read(read, 100)
except BlockingIOError:
    pass
open(sys.argv[2], "w").write(",".join(signal.Signals(n).name for n in got))
sys.exit(7)
"""


def _bika_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BIKA_")}
    env["XDG_CONFIG_HOME"] = "/nonexistent/bika-tests"
    return env


def test_sigterm_to_bika_reaches_the_command_once_and_bika_exits_with_its_code(
    pg18: Cluster, new_database: Callable[[Cluster], str], keyed_repo: KeyedRepo, tmp_path: Path
) -> None:
    url = new_database(pg18)
    ready, got = tmp_path / "ready", tmp_path / "got"
    bika = subprocess.Popen(
        [sys.executable, "-m", "bika", "run", "--repo", str(keyed_repo.repo), "--db", url, "--",
         sys.executable, "-c", COUNTS_SIGNALS, str(ready), str(got)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_bika_env(),
    )  # fmt: skip
    try:
        _wait_for(ready)
        bika.send_signal(signal.SIGTERM)
        out, err = bika.communicate(timeout=60)
    finally:
        bika.kill()
    assert bika.returncode == 7, err
    assert got.read_text() == "SIGTERM"
    assert out.strip() == keyed_repo.list()[0]["id"]


def test_ctrl_c_at_a_terminal_reaches_the_command_once(
    pg18: Cluster, new_database: Callable[[Cluster], str], keyed_repo: KeyedRepo, tmp_path: Path
) -> None:
    """The terminal sends ^C to bika and the command both; bika does not send it again."""
    url = new_database(pg18)
    ready, got = tmp_path / "ready", tmp_path / "got"
    argv = [sys.executable, "-m", "bika", "run", "-q", "--repo", str(keyed_repo.repo),
            "--db", url, "--",
            sys.executable, "-c", COUNTS_SIGNALS, str(ready), str(got)]  # fmt: skip
    pid, master = pty.fork()
    if pid == 0:  # the child: a session of its own, the pty its controlling terminal
        try:
            os.execve(sys.executable, argv, _bika_env())
        finally:
            os._exit(127)
    status: int | None = None
    try:
        _wait_for(ready)
        os.write(master, b"\x03")
        deadline = time.monotonic() + 60
        while status is None:
            assert time.monotonic() < deadline, "bika did not end"
            if select.select([master], [], [], 0.05)[0]:
                with contextlib.suppress(OSError):
                    os.read(master, 65536)  # keep the terminal's buffer drained
            done, waited = os.waitpid(pid, os.WNOHANG)
            status = waited if done else None
    finally:
        if status is None:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        os.close(master)
    assert os.waitstatus_to_exitcode(status) == 7
    assert got.read_text() == "SIGINT"
