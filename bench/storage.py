"""Benchmark backup and restore to S3 (a local moto_server) against local disk, as ratios.

Usage: python bench/storage.py --url postgresql://postgres@127.0.0.1:PORT/ibimina [--repeat 2]
Load the dataset first with ../shared/bench/dataset.sh (the issue's target is MEDIUM, ≈ 1 GB).
Needs the dev extras (moto[server]). Writes a Markdown table (default bench/STORAGE.md).

moto_server keeps every object in its own memory and shares the machine's CPUs with bika and
PostgreSQL, so the ratio is an upper bound on what the S3 code path costs; the network of a
real cloud is not in it. Peak RSS is bika's alone (from /usr/bin/time -v, as in run.py).
Target (issue 4): S3 adds < 15 % wall time over local disk; peak RSS stays < 200 MB.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import shlex
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from run import Dataset, Row, best, drop_database, measure

from bika.crypto import generate_identity
from bika.postgres.connection import ConnInfo

BUCKET = "bika-bench"
TARGET_RATIO = 1.15
TARGET_RSS_MB = 200


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_moto(log: Path) -> tuple[subprocess.Popen[bytes], str]:
    moto = Path(sys.executable).parent / "moto_server"
    if not moto.exists():
        raise SystemExit("moto_server is missing: pip install -e '.[dev]'")
    port = free_port()
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [str(moto), "-H", "127.0.0.1", "-p", str(port)], stdout=out, stderr=subprocess.STDOUT
        )
    endpoint = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return process, endpoint
        except OSError:
            if process.poll() is not None:
                break
            time.sleep(0.1)
    process.kill()
    raise SystemExit(f"moto_server did not start; see {log}")


def s3_env(endpoint: str) -> dict[str, str]:
    """The variables a user would set, and no way to a real cloud or a metadata service."""
    return {
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ACCESS_KEY_ID": "bench",
        "AWS_SECRET_ACCESS_KEY": "bench",
        "AWS_REGION": "us-east-1",
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_METADATA_ENDPOINT": "http://127.0.0.1:9",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True, help="database holding the dataset")
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--work", type=Path, default=Path("bench/work-storage"))
    parser.add_argument("--out", type=Path, default=Path("bench/STORAGE.md"))
    args = parser.parse_args()

    dataset = Dataset.open(args.url)
    conn, postmaster, pgenv = dataset.conn, dataset.postmaster, dataset.pgenv

    work = args.work.absolute()
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    key = work / "key.txt"
    recipient = generate_identity(key)
    bika = Path(sys.executable).parent / "bika"
    moto, endpoint = start_moto(work / "moto.log")
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("BIKA_", "AWS_"))}
    env = {**clean, **pgenv, **s3_env(endpoint)}
    try:
        boto3: Any = importlib.import_module("boto3")
        boto3.client(
            "s3",
            endpoint_url=endpoint,
            aws_access_key_id="bench",
            aws_secret_access_key="bench",
            region_name="us-east-1",
        ).create_bucket(Bucket=BUCKET)
        rows = run_steps(args, conn, postmaster, env, bika, work, key, recipient)
    finally:
        moto.terminate()
        moto.wait(timeout=30)
    write_results(args.out, rows, dataset.db_bytes)


def run_steps(
    args: argparse.Namespace,
    conn: ConnInfo,
    postmaster: int,
    env: dict[str, str],
    bika: Path,
    work: Path,
    key: Path,
    recipient: str,
) -> dict[str, Row]:
    q = shlex.quote
    counter = iter(range(1_000_000))

    def fresh(where: str) -> str:
        name = f"repo-{next(counter)}"
        repo = str(work / name) if where == "local" else f"s3://{BUCKET}/{name}"
        subprocess.run(
            [bika, "init", "--repo", repo, "--recipient", recipient],
            check=True,
            capture_output=True,
            env=env,
        )
        return repo

    rows: dict[str, Row] = {}
    repos: dict[str, str] = {}
    for step, where, what in (
        ("l1", "local", "bika backup → local disk"),
        ("s1", "s3", "bika backup → S3 (moto_server; multipart above 8 MiB)"),
    ):
        runs = []
        for _ in range(args.repeat):
            repo = fresh(where)
            command = f"{bika} -q backup --repo {q(repo)} --db {q(args.url)}"
            runs.append(measure(step, what, command, postmaster, env))
            repos[where] = repo
        rows[step] = _summarise(best(runs), runs, what)
        print(json.dumps(rows[step].__dict__), flush=True)

    for step, where, what in (
        ("l2", "local", "bika restore ← local disk (streamed, row checks)"),
        ("s2", "s3", "bika restore ← S3 (ranged reads, row checks)"),
    ):
        runs = []
        for _ in range(args.repeat):
            target = conn.with_database(f"bench_storage_{step}")
            drop_database(conn, target.database)
            command = (
                f"{bika} -q restore latest --repo {q(repos[where])} --identity {q(str(key))}"
                f" --create --to {q(target.url)}"
            )
            runs.append(measure(step, what, command, postmaster, env))
            drop_database(conn, target.database)
        rows[step] = _summarise(best(runs), runs, what)
        print(json.dumps(rows[step].__dict__), flush=True)
    return rows


def _summarise(row: Row, runs: list[Row], what: str) -> Row:
    row.what = what
    row.note = "walls: " + ", ".join(f"{r.wall:.1f}" for r in runs)
    return row


def write_results(out: Path, rows: dict[str, Row], db_bytes: int) -> None:
    base = {"s1": rows["l1"], "s2": rows["l2"]}
    lines = [
        "# bika storage benchmark: S3 (moto_server) vs local disk",
        "",
        f"Generated by `bench/storage.py` at {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())}."
        f" Database: {db_bytes / 1e6:,.0f} MB (`pg_database_size`). {os.cpu_count()} cores."
        " Median of the runs listed in *notes*. moto_server runs on the same machine.",
        "",
        "| step | command | wall s | × local | client CPU s | server CPU s | peak RSS MB |"
        " target | notes |",
        "|---|---|---:|---:|---:|---:|---:|---|---|",
    ]
    for step, row in rows.items():
        local = base.get(step)
        ratio = row.wall / local.wall if local else None
        verdict = []
        if ratio is not None:
            verdict.append("wall ok" if ratio < TARGET_RATIO else f"wall > {TARGET_RATIO:.2f}×")
        verdict.append("RSS ok" if row.rss_mb < TARGET_RSS_MB else f"RSS > {TARGET_RSS_MB} MB")
        lines.append(
            f"| {step} | {row.what} | {row.wall:.1f} | {f'{ratio:.2f}' if ratio else '—'} |"
            f" {row.client_cpu:.1f} | {row.server_cpu:.1f} | {row.rss_mb:.0f} |"
            f" {', '.join(verdict)} | {row.note} |"
        )
    lines += [
        "",
        f"*× local* is wall time over the same step on local disk. Targets: < {TARGET_RATIO:.2f}×"
        f" and < {TARGET_RSS_MB} MB peak RSS.",
    ]
    out.write_text("\n".join(lines) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
