"""`bika daemon` as a subprocess with a seconds-level schedule, taking real backups of a real
server: one line per run, no overlapping runs, SIGTERM mid-backup stops cleanly with exit 0 and
no partial backup visible; /healthz and /metrics answer."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

import psycopg

from bika.postgres.cluster import Cluster

from helpers import KeyedRepo, offline_env, run_bika, wait_for
from storage.servers import free_port


def _descendants(pid: int) -> list[str]:
    """The command lines of a process's children, grandchildren, …"""
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError):
            for child in (task / "children").read_text().split():
                with contextlib.suppress(OSError):
                    cmdline = Path(f"/proc/{child}/cmdline").read_bytes()
                    found.append(cmdline.replace(b"\0", b" ").decode())
                    found += _descendants(int(child))
    return found


def test_daemon_runs_backups_on_schedule_and_stops_cleanly_on_sigterm(
    pg18: Cluster, new_database: Callable[[Cluster], str], keyed_repo: KeyedRepo, tmp_path: Path
) -> None:
    url = new_database(pg18)
    with psycopg.connect(url) as db:
        db.execute("CREATE TABLE t (id int, v text)")
        db.execute("INSERT INTO t SELECT g, repeat('x', 200) FROM generate_series(1, 200000) g")
    config = tmp_path / "bika.toml"
    config.write_text(
        f'repo = "{keyed_repo.repo}"\n'
        f'database_url = "{url}"\n'
        "[schedule]\n"
        'backup = "* * * * * */3"\n'  # every 3 seconds
        'verify = ""\n'
        'drill = ""\n'
        "prune = true\n"
    )
    port = free_port()
    env = offline_env({k: v for k, v in os.environ.items() if not k.startswith("BIKA_")})
    env["XDG_STATE_HOME"] = str(tmp_path / "state")
    daemon = subprocess.Popen(
        [sys.executable, "-m", "bika", "daemon", str(config), "--listen", f"127.0.0.1:{port}"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        wait_for(lambda: len(keyed_repo.list()) >= 2, 60, "two scheduled backups")
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as reply:
            assert reply.status == 200
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=30) as reply:
            assert b"bika_last_success_timestamp_seconds" in reply.read()
        # the next scheduled backup: SIGTERM as soon as its process runs (a backup of this
        # database takes seconds, so the signal lands mid-dump)
        before = {b["id"] for b in keyed_repo.list()}
        wait_for(lambda: any("pg_dump " in c for c in _descendants(daemon.pid)), 30, "a pg_dump")
        time.sleep(0.2)
        daemon.send_signal(signal.SIGTERM)
        _, err = daemon.communicate(timeout=60)
    finally:
        if daemon.poll() is None:
            daemon.kill()
            print(daemon.communicate()[1])
    assert daemon.returncode == 0, err
    lines = err.strip().splitlines()
    assert lines[-1].endswith("daemon stopped"), err
    runs = [line for line in lines if "job backup" in line]
    assert any(" ok in " in line for line in runs), err
    assert "failed at backup (exit 143)" in runs[-1], err
    assert "Traceback" not in err
    # the interrupted backup is not listed, and every listed one verifies
    after = {b["id"] for b in keyed_repo.list()}
    assert after == before
    verified = run_bika("verify", "--repo", str(keyed_repo.repo))
    assert verified.returncode == 0, verified.stderr
    state = json.loads((tmp_path / "state" / "bika" / "daemon.json").read_text())
    assert list(state) == [f"{config}::backup"]
