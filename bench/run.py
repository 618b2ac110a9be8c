"""Benchmark bika against the tools a user would otherwise run, in one run, as ratios.

Usage: python bench/run.py --url postgresql://postgres@127.0.0.1:PORT/ibimina [--repeat 2]
Load the dataset first with ../shared/bench/dataset.sh (MEDIUM ≈ 1 GB). Every row uses the same
pg_dump/pg_restore (bika's, PostgreSQL 18). Writes a Markdown table (default bench/RESULTS.md).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from psycopg import sql

from bika.crypto import generate_identity
from bika.postgres import binaries
from bika.postgres.connection import ConnInfo

TICK = os.sysconf("SC_CLK_TCK")


@dataclass
class Row:
    step: str
    what: str
    wall: float
    client_cpu: float
    server_cpu: float
    rss_mb: float
    output: int | None = None
    note: str = ""


def _proc_cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    # utime, stime, cutime, cstime: the postmaster's own and its reaped backends'
    return sum(int(f) for f in fields[11:15]) / TICK


@dataclass
class Dataset:
    """The database a benchmark reads: how to reach it, and facts about it and its server."""

    conn: ConnInfo
    conninfo: str  # for pg_dump/pg_restore --dbname=
    pgenv: dict[str, str]  # libpq variables (the password) the tools need with it
    db_bytes: int
    server_version: str
    shared_buffers: str
    postmaster: int  # the server's pid, whose children's CPU time server_cpu adds up

    @classmethod
    def open(cls, url: str) -> Dataset:
        conn = ConnInfo.parse(url)
        conninfo, pgenv = conn.libpq_args()
        with conn.connect() as db:
            show = {
                name: str(db.execute(f"SHOW {name}").fetchone()[0])  # type: ignore[index]
                for name in ("server_version", "shared_buffers", "data_directory")
            }
            db_bytes = int(db.execute("SELECT pg_database_size(current_database())").fetchone()[0])  # type: ignore[index]
        pid_file = Path(show["data_directory"]) / "postmaster.pid"
        postmaster = int(pid_file.read_text().split()[0])
        return cls(
            conn,
            conninfo,
            pgenv,
            db_bytes,
            show["server_version"],
            show["shared_buffers"],
            postmaster,
        )


def server_cpu(postmaster: int) -> float:
    total = _proc_cpu(postmaster)
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            if int(stat[1]) == postmaster:
                total += (int(stat[11]) + int(stat[12])) / TICK
        except (OSError, IndexError, ValueError):
            continue
    return total


def measure(
    step: str,
    what: str,
    command: str,
    postmaster: int,
    env: dict[str, str],
    output: Path | None = None,
    note: str = "",
) -> Row:
    os.sync()  # the previous step's files are on disk before this one starts
    with tempfile.NamedTemporaryFile("r", suffix=".time") as timing:
        before = server_cpu(postmaster)
        started = time.perf_counter()
        subprocess.run(
            ["/usr/bin/time", "-v", "-o", timing.name, "bash", "-o", "pipefail", "-c", command],
            check=True,
            env=env,
            stdout=subprocess.DEVNULL,
        )
        wall = time.perf_counter() - started
        after = server_cpu(postmaster)
        stats = dict(
            line.strip().split(": ", 1) for line in timing.read().splitlines() if ": " in line
        )
    cpu = float(stats["User time (seconds)"]) + float(stats["System time (seconds)"])
    rss = int(stats["Maximum resident set size (kbytes)"]) / 1024
    size = None
    if output is not None:
        size = (
            sum(p.stat().st_size for p in output.rglob("*") if p.is_file())
            if output.is_dir()
            else output.stat().st_size
        )
    return Row(step, what, wall, cpu, after - before, rss, size, note)


def best(rows: list[Row]) -> Row:
    """The median run by wall time (the noise here is other processes, not the tools)."""
    ordered = sorted(rows, key=lambda r: r.wall)
    return ordered[len(ordered) // 2]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True, help="database holding the dataset")
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--work", type=Path, default=Path("bench/work"))
    parser.add_argument("--out", type=Path, default=Path("bench/RESULTS.md"))
    parser.add_argument("--only", help="comma-separated steps to run (default: all)")
    parser.add_argument(
        "--also",
        action="append",
        default=[],
        metavar="LABEL=COMMAND",
        help="another bika command line to back up with, as step k1-LABEL in the same rounds"
        " (e.g. 'before=env PYTHONPATH=old/src python -m bika')",
    )
    args = parser.parse_args()

    dataset = Dataset.open(args.url)
    conn, conninfo, postmaster = dataset.conn, dataset.conninfo, dataset.postmaster
    env = {**os.environ, **dataset.pgenv}
    bin_dir = binaries.find_bin_dir()
    pg_dump = binaries.tool("pg_dump", bin_dir)
    pg_restore = binaries.tool("pg_restore", bin_dir)
    bika = Path(sys.executable).parent / "bika"

    work = args.work.absolute()
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    key = work / "key.txt"
    recipient = generate_identity(key)
    dump_file = work / "out.dump"
    q = shlex.quote
    d = f"--dbname={q(conninfo)}"

    def fresh_repo() -> Path:
        repo = work / f"repo-{time.monotonic_ns()}"
        subprocess.run(
            [bika, "init", "--repo", repo, "--recipient", recipient],
            check=True,
            capture_output=True,
        )
        return repo

    steps: dict[str, tuple[str, object]] = {
        "a1": (
            "pg_dump -Fc -Z0 > /dev/null (raw logical read ceiling)",
            lambda: measure("a1", "", f"{pg_dump} -Fc -Z0 {d} > /dev/null", postmaster, env),
        ),
        "d1": (
            "pg_dump -Fc (gzip level 6 inside pg_dump)",
            lambda: measure(
                "d1", "", f"{pg_dump} -Fc {d} -f {dump_file}", postmaster, env, dump_file
            ),
        ),
        "c1": (
            "pg_dump -Fp | gzip -6 (the seed procedure, streamed)",
            lambda: measure(
                "c1",
                "",
                f"{pg_dump} -Fp {d} | gzip -6 > {work}/out.sql.gz",
                postmaster,
                env,
                work / "out.sql.gz",
            ),
        ),
        "c3": (
            "pg_dump -Fc -Z0 | zstd -3 -T0 | age (shell pipe)",
            lambda: measure(
                "c3",
                "",
                f"{pg_dump} -Fc -Z0 {d} | zstd -3 -T0 -q | age -r"
                f" {recipient} > {work}/pipe.zst.age",
                postmaster,
                env,
                work / "pipe.zst.age",
            ),
        ),
        "k1": (
            "bika backup (pg_dump -Fc -Z0 → fingerprint → zstd -3 → age → local repo)",
            lambda: (
                lambda repo: measure(
                    "k1",
                    "",
                    f"{bika} -q backup --repo {repo} --db {q(args.url)}",
                    postmaster,
                    env,
                    repo / "backups",
                )
            )(fresh_repo()),
        ),
    }
    for also in args.also:
        label, _, other = also.partition("=")
        steps[f"k1-{label}"] = (
            f"bika backup ({label})",
            lambda other=other, step=f"k1-{label}": (
                lambda repo: measure(
                    step,
                    "",
                    f"{other} -q backup --repo {repo} --db {q(args.url)}",
                    postmaster,
                    env,
                    repo / "backups",
                )
            )(fresh_repo()),
        )
    wanted = args.only.split(",") if args.only else list(steps)
    wanted += [name for name in steps if name.startswith("k1-") and name not in wanted]
    rows: dict[str, Row] = {}
    # rounds of every step in turn, so a noisy neighbour slows all of them alike
    runs: dict[str, list[Row]] = {name: [] for name in wanted}
    for _ in range(args.repeat):
        for name in wanted:
            runs[name].append(steps[name][1]())  # type: ignore[operator]
    for name in wanted:
        row = best(runs[name])
        row.what = steps[name][0]
        row.note = "walls: " + ", ".join(f"{r.wall:.1f}" for r in runs[name])
        rows[name] = row
        print(json.dumps(row.__dict__), flush=True)

    if "k1" in wanted and "d1" in wanted:  # restores need bika's backup and the -Fc file
        rows.update(
            restore_rows(args, conn, postmaster, env, pg_restore, bika, work, key, dump_file)
        )
    write_results(args.out, rows, dataset.db_bytes, dataset.server_version, pg_dump)


def restore_rows(
    args: argparse.Namespace,
    conn: ConnInfo,
    postmaster: int,
    env: dict[str, str],
    pg_restore: Path,
    bika: Path,
    work: Path,
    key: Path,
    dump_file: Path,
) -> dict[str, Row]:
    repos = sorted(work.glob("repo-*"))
    if not repos or not dump_file.exists():
        return {}
    repo = repos[-1]
    steps = {
        "h1": "pg_restore -j2 of the pg_dump -Fc file into a new database",
        "k2": "bika restore --jobs 2 (decrypt to temp file, pg_restore -j2, row checks)",
        "k3": "bika restore (streamed, single transaction, row checks)",
    }
    runs: dict[str, list[Row]] = {step: [] for step in steps}
    for _ in range(args.repeat):  # rounds, as for the backups
        for step, what in steps.items():
            target = conn.with_database(f"bench_restore_{step}")
            drop_database(conn, target.database)
            conninfo, _ = target.libpq_args()
            if step == "h1":
                create_database(conn, target.database)
                # into a server older than 17, pg_restore 18's "SET transaction_timeout" is
                # the one error expected (and harmless); any other error fails the step
                errors = work / "h1.err"
                command = (
                    f"{pg_restore} -j2 --dbname={shlex.quote(conninfo)} {dump_file} 2>{errors};"
                    f" ! grep 'error:' {errors} | grep -qv transaction_timeout"
                )
            else:
                jobs = "--jobs 2" if step == "k2" else ""
                command = (
                    f"{bika} -q restore latest --repo {repo} --identity {key} --create"
                    f" {jobs} --to {shlex.quote(target.url)}"
                )
            runs[step].append(measure(step, what, command, postmaster, env))
            drop_database(conn, target.database)
    out: dict[str, Row] = {}
    for step in steps:
        row = best(runs[step])
        row.note = "walls: " + ", ".join(f"{r.wall:.1f}" for r in runs[step])
        out[step] = row
        print(json.dumps(row.__dict__), flush=True)
    return out


def drop_database(conn: ConnInfo, name: str) -> None:
    """Drop it, then CHECKPOINT and sync: the next step must not pay for this one's writes
    (a restore leaves ~1 GB of dirty buffers and WAL behind)."""
    with conn.with_database("postgres").connect(autocommit=True) as db:
        db.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        db.execute("CHECKPOINT")
    os.sync()


def create_database(conn: ConnInfo, name: str) -> None:
    with conn.with_database("postgres").connect(autocommit=True) as db:
        db.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))


def write_results(
    out: Path, rows: dict[str, Row], db_bytes: int, server: str, pg_dump: Path
) -> None:
    raw = rows.get("a1")
    fc = rows.get("d1")
    restore = rows.get("h1")
    lines = [
        "# bika benchmark results",
        "",
        f"Generated by `bench/run.py` at {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())}."
        f" Database: {db_bytes / 1e6:,.0f} MB (`pg_database_size`), PostgreSQL {server};"
        f" every row uses {binaries.tool_version(pg_dump)}'s pg_dump/pg_restore."
        f" {os.cpu_count()} cores. Median of the runs listed in *notes*.",
        "",
        "| step | command | wall s | × raw | × pg_dump -Fc | client CPU s | server CPU s |"
        " peak RSS MB | output MB | × -Fc size | notes |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for row in rows.values():
        base = restore if row.step.startswith(("h", "k2", "k3")) else raw
        ratio_raw = f"{row.wall / base.wall:.2f}" if base else "—"
        ratio_fc = (
            f"{row.wall / fc.wall:.2f}"
            if fc and not row.step.startswith(("h", "k2", "k3"))
            else "—"
        )
        size = f"{row.output / 2**20:,.1f}" if row.output else "—"
        size_ratio = f"{row.output / fc.output:.2f}" if row.output and fc and fc.output else "—"
        lines.append(
            f"| {row.step} | {row.what} | {row.wall:.1f} | {ratio_raw} | {ratio_fc} |"
            f" {row.client_cpu:.1f} | {row.server_cpu:.1f} | {row.rss_mb:.0f} | {size} |"
            f" {size_ratio} | {row.note} |"
        )
    lines += ["", "*× raw* is wall time over a1 (backups) or over h1, pg_restore -j2 (restores)."]
    out.write_text("\n".join(lines) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
