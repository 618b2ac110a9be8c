"""Incremental physical backups (PostgreSQL 18, summarize_wal = on): a full backup of a pgbench
scale-30 cluster, 2,000 pgbench transactions, an incremental; then restoring each one's files
(no replay; the incremental's includes pg_combinebackup), alternating, 3 runs.

Run from the repository root: PYTHONPATH=src .venv/bin/python bench/pitr_incremental.py
(results in bench/PITR.md).
"""

from __future__ import annotations

import json
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "src")]

import pytest  # noqa: E402
from archiving import archiving_server  # noqa: E402

from bika.postgres import binaries  # noqa: E402

from helpers import run_bika  # noqa: E402

RUNS = 3


def timed(*args: str, env: dict[str, str]) -> tuple[float, Any]:
    began = time.monotonic()
    done = run_bika(*args, env=env, timeout=3600)
    seconds = time.monotonic() - began
    assert done.returncode == 0, done.stderr
    return seconds, done


def main() -> None:
    pgbench = binaries.embedded_bin_dir() / "pgbench"
    with (
        pytest.MonkeyPatch.context() as monkeypatch,
        archiving_server(None, monkeypatch, summarize_wal="on") as server,
    ):
        url = server.cluster.url()
        subprocess.run([pgbench, "-i", "-s", "30", "-q", url], check=True, capture_output=True)
        env = server.env()
        backups = {}
        for name, extra in (("full", ()), ("incremental", ("--incremental",))):
            seconds, done = timed("backup", "--physical", *extra, "--db", url, "--json", env=env)
            backups[name] = json.loads(done.stdout)["backup"]
            base = backups[name]["artifacts"]["base"]
            print(
                f"{name} backup {seconds:.1f} s, tar {base['plain_size']}, stored"
                f" {base['stored_size']}"
            )
            if name == "full":
                subprocess.run(
                    [pgbench, "-t", "2000", "-c", "2", "-n", url], check=True, capture_output=True
                )
        server.switch_and_wait()
        times: dict[str, list[float]] = {name: [] for name in backups}
        for run in range(RUNS):
            for name, backup in backups.items():
                target = server.home / f"restored-{name}-{run}"
                args = ("restore", "--physical", backup["id"], "--latest", "--to-dir", str(target))
                times[name].append(timed(*args, env=env)[0])
                shutil.rmtree(target)
        for name, runs in times.items():
            print(
                f"{name} restore (files, no replay): {[round(r, 2) for r in runs]}, median"
                f" {statistics.median(runs):.2f} s"
            )


if __name__ == "__main__":
    main()
