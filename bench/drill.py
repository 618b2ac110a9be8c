"""Benchmark `bika drill --jobs 2` against pg_restore -j2 of a pg_dump -Fc file, in one run.

Usage: python bench/drill.py --url postgresql://postgres@127.0.0.1:PORT/ibimina [--repeat 3]
The database (MEDIUM ≈ 1 GB, loaded by ../shared/bench/dataset.sh) is only read. pg_restore -j2
goes into a new database on that same server, as it is configured; the drill restores into its
own throwaway cluster (bika's embedded PostgreSQL). Each round runs every command once, so a
busy machine slows them alike. Issue 5's targets: the whole drill ≤ 1.0 × pg_restore -j2 and
verification ≤ 25 % of the drill's restore time. `--also LABEL=COMMAND` times another bika
(e.g. an older checkout's) the same way.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from run import Dataset, Row, create_database, drop_database, measure

from bika.crypto import generate_identity
from bika.postgres import binaries

SCRATCH = "bench_drill_pg_restore"
PG_RESTORE = "pg_restore"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True, help="database holding the dataset")
    parser.add_argument("--repeat", type=int, default=3, help="rounds of every command")
    # not under bench/work: bench/run.py empties that folder when it starts
    parser.add_argument(
        "--work", type=Path, default=Path(tempfile.gettempdir(), "bika-bench-drill")
    )
    parser.add_argument(
        "--reuse", action="store_true", help="keep the dump and the backup of a previous run"
    )
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument(
        "--also",
        action="append",
        default=[],
        metavar="LABEL=COMMAND",
        help="another bika command line to drill with, e.g. 'before=python old/bika'",
    )
    parser.add_argument("--skip-pg-restore", action="store_true", help="time only drills")
    args = parser.parse_args()

    dataset = Dataset.open(args.url)
    conn, conninfo, postmaster = dataset.conn, dataset.conninfo, dataset.postmaster
    env = {**os.environ, **dataset.pgenv}
    bin_dir = binaries.find_bin_dir()
    pg_dump = binaries.tool("pg_dump", bin_dir)
    pg_restore = binaries.tool("pg_restore", bin_dir)
    bika = str(Path(sys.executable).parent / "bika")

    work = args.work.absolute()
    work.mkdir(parents=True, exist_ok=True)
    dump_file = work / "out.dump"
    repo = work / "repo"
    key = work / "key.txt"
    q = shlex.quote
    if not (args.reuse and dump_file.exists()):
        command = f"{pg_dump} -Fc --dbname={q(conninfo)} -f {dump_file}"
        row = measure("d1", "pg_dump -Fc", command, postmaster, env)
        print(f"pg_dump -Fc: {row.wall:.1f} s", flush=True)
    if not (args.reuse and (repo / "backups").exists()):
        subprocess.run(["rm", "-rf", str(repo), str(key)], check=True)
        recipient = generate_identity(key)
        subprocess.run([bika, "init", "--repo", repo, "--recipient", recipient], check=True)
        command = f"{bika} -q backup --repo {repo} --db {q(args.url)}"
        row = measure("k1", "bika backup", command, postmaster, env)
        print(f"bika backup: {row.wall:.1f} s", flush=True)

    drillers = {"bika drill": bika}
    for also in args.also:
        label, _, command = also.partition("=")
        drillers[f"bika drill ({label})"] = command
    restores: list[Row] = []
    drills: dict[str, list[tuple[Row, dict[str, Any]]]] = {label: [] for label in drillers}
    errors = work / "pg_restore.err"
    record_file = work / "drill.json"
    for round_ in range(1, args.repeat + 1):
        if not args.skip_pg_restore:
            drop_database(conn, SCRATCH)
            create_database(conn, SCRATCH)
            target, _ = conn.with_database(SCRATCH).libpq_args()
            row = measure(
                "h1",
                PG_RESTORE,
                # pg_restore 18 sets transaction_timeout, which servers before 17 refuse in
                # each session: harmless, but pg_restore then exits 1 (checked below)
                f"{pg_restore} -j{args.jobs} --dbname={q(target)} {dump_file} 2> {errors} || true",
                postmaster,
                env,
            )
            drop_database(conn, SCRATCH)
            _check_pg_restore(errors)
            restores.append(row)
            print(f"round {round_}: pg_restore -j{args.jobs} {row.wall:.2f} s", flush=True)
        for label, command in drillers.items():
            row = measure(
                "k4",
                label,
                f"{command} -q drill --latest --jobs {args.jobs} --repo {repo}"
                f" --identity {key} --json > {record_file}",
                postmaster,
                env,
            )
            record = json.loads(record_file.read_text())
            drills[label].append((row, record))
            print(
                f"round {round_}: {label} {row.wall:.2f} s (client CPU {row.client_cpu:.1f} s):"
                f" setup {record['setup_seconds']:.2f}, restore {record['restore_seconds']:.2f},"
                f" verify {record['verify_seconds']:.2f}, passed {record['passed']}",
                flush=True,
            )
            if not record["passed"]:
                raise SystemExit(f"the drill failed: {record['problems']}")

    if args.repeat:
        print(_report(args, dataset, restores, drills))


def _report(
    args: argparse.Namespace,
    dataset: Dataset,
    restores: list[Row],
    drills: dict[str, list[tuple[Row, dict[str, Any]]]],
) -> str:
    baseline = statistics.median(r.wall for r in restores) if restores else float("nan")

    def line(what: str, values: list[float]) -> str:
        median = statistics.median(values)
        runs = ", ".join(f"{v:.1f}" for v in values)
        return f"| {what} | {median:.2f} | {median / baseline:.2f} | {runs} |"

    lines = [
        f"{time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())}:"
        f" database {dataset.db_bytes / 1e6:,.0f} MB,"
        f" {os.cpu_count()} cores, medians of {args.repeat} rounds. pg_restore into PostgreSQL"
        f" {dataset.server_version} as configured (shared_buffers {dataset.shared_buffers});"
        " drills into bika's embedded PostgreSQL.",
        "",
        f"| what | median s | × {PG_RESTORE} | runs |",
        "|---|---:|---:|---|",
    ]
    if restores:
        lines.append(line(f"pg_restore -j{args.jobs} of the -Fc file", [r.wall for r in restores]))
    for label, runs in drills.items():
        lines.append(line(f"{label} --jobs {args.jobs}: whole command", [r.wall for r, _ in runs]))
        for phase in ("setup", "restore", "verify"):
            values = [float(record[f"{phase}_seconds"]) for _, record in runs]
            lines.append(line(f"… {phase}_seconds (drill record)", values))
        share = statistics.median(
            float(record["verify_seconds"]) / float(record["restore_seconds"]) for _, record in runs
        )
        lines.append(f"| … verify / restore | {share:.0%} | | target ≤ 25 % |")
    return "\n".join(lines)


def _check_pg_restore(errors: Path) -> None:
    lines = errors.read_text().splitlines()
    if any("error:" in line and "transaction_timeout" not in line for line in lines):
        raise SystemExit("pg_restore failed:\n" + "\n".join(lines[-10:]))


if __name__ == "__main__":
    main()
