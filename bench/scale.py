"""Benchmark a year of backups on S3 (moto_server): list, check, prune --dry-run and backup.

Usage: python bench/scale.py [--backups 2000] [--drills 500] [--repeat 3] [--signed]
                             [--before PATH/src] [--out bench/RESULTS.md]

Populates one repository with `--backups` synthetic manifests (cloned from a real backup of a
small database, so their size is realistic), their artifacts' objects (small placeholders: only
the listing sees them), one run-log event per backup and `--drills` drill records, all written
through the repository API; then times the CLI as a user runs it (a subprocess each), on that
repository and on an empty one, for the code under `--before` (main's, e.g. from
`git archive`) and for this tree, and writes its section ("## Scale") of bench/RESULTS.md.
With `--signed`, a second repository of as many backups and drills, each signed (ed25519), whose
readers check every signature (bika.json lists the signer): list, check and prune there too.
Target (issue 11, "Scale"): list, check and prune --dry-run ≤ 2 s; backup adds ≤ 0.5 s over
an empty repository.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT / "tests"))

from bika.crypto import generate_identity  # noqa: E402
from bika.postgres.cluster import start_cluster  # noqa: E402
from bika.repository import Manifest, Repository  # noqa: E402
from bika.repository.drills import DrillRecord, DrillTarget, record_drill  # noqa: E402
from bika.repository.events import Event, event_hash, event_key  # noqa: E402
from bika.repository.signatures import Trust  # noqa: E402
from bika.signing import generate_signing_key  # noqa: E402
from bika.storage import open_storage, write_bytes  # noqa: E402

from helpers import offline_env  # noqa: E402
from storage.servers import BUCKET, create_s3_bucket, s3_env, s3_settings, start_moto  # noqa: E402

KINDS = ["daily"] * 5 + ["weekly", "pre-migration", "manual", "monthly"]
SECTION = "## Scale: a year of backups on S3 (bench/scale.py)"
TARGET_SECONDS = 2.0
TARGET_BACKUP_OVERHEAD = 0.5
WHERE_THE_TIME_GOES = """\
Where the time goes in `after` (each phase timed in-process on this repository, load 2–3,
2026-12-04): the interpreter's start and imports 0.4–0.6 s (click, rich, pydantic and bika's
models; psycopg, apprise, prometheus_client and the restore code are no longer imported by
list, check or prune); backups/ listed by folder 0.16 s (2,000 prefixes); the manifests' index
object 0.1 s; validating the 2,000 manifests 0.25 s with the cyclic garbage collector paused
meanwhile (0.35–0.75 s with it running: its passes over the growing heap), nearly all of it
pydantic building their 40,000 table entries (a local cache of validated manifests would not
help: unpickling the same objects takes as long); drills/ listed and their index 0.15 s; the
JSON document 0.1 s. On the
signed repository add verifying 2,500 ed25519 signatures (about 120 µs each on these cores,
0.3 s) and a drills/ listing twice as long (their signatures): 0.3 s. Main read the signature
of every manifest and newest drill record one request at a time (2,500 requests), 9–12 s;
this branch takes them from the index with the records and verifies each as before. Main's
`backup`, `check` and `prune` also listed the whole run log (2,000 events) to chain their own
event; the chain's heads are now read from the last week's listing (else the last quarter's,
else all). The first run, with no index, fetches every manifest (16 at a time) and is still
far over 2 s; the runs after it read the index."""


@dataclass
class Timing:
    walls: list[float] = field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(self.walls)


def bika(src: Path, env: dict[str, str], *args: str) -> float:
    """Wall time of one CLI run; fail loudly when it errs (check's exit 1/2 is its verdict)."""
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "bika", *args],
        env={**env, "PYTHONPATH": str(src)},
        capture_output=True,
        text=True,
    )
    wall = time.monotonic() - started
    allowed = (0, 1, 2) if args[0] == "check" else (0,)
    if result.returncode not in allowed:
        raise SystemExit(f"bika {' '.join(args)} failed ({result.returncode}): {result.stderr}")
    return wall


def make_database(url_of: str) -> None:
    import psycopg

    with psycopg.connect(url_of, autocommit=True) as db:
        for n in range(20):
            db.execute(
                f"CREATE TABLE t{n:02d} (id int PRIMARY KEY, name text, at timestamptz"
                " DEFAULT now())"
            )
            db.execute(
                f"INSERT INTO t{n:02d} (id, name) SELECT i, md5(i::text)"
                f" FROM generate_series(1, {100 * (n + 1)}) i"
            )


def populate(repo: Repository, template: Manifest, backups: int, drills: int) -> None:
    """`backups` manifests over the year before now, one event each, `drills` drill records."""
    rng = random.Random(11)
    now = datetime.now(UTC)
    step = timedelta(days=365) / backups
    manifests = []
    for n in range(backups):
        started = now - timedelta(days=365) + step * n
        kind = rng.choice(KINDS)
        backup_id = f"{started:%Y%m%dT%H%M%SZ}-{kind}-{n % 65536:04x}"
        artifacts = {
            name: artifact.model_copy(update={"key": repo.artifact_key(backup_id, key_name)})
            for name, artifact in template.artifacts.items()
            for key_name in [artifact.key.rsplit("/", 1)[1]]
        }
        manifests.append(
            template.model_copy(
                update={
                    "id": backup_id,
                    "repository_id": repo.id,
                    "kind": kind,
                    "started_at": started,
                    "finished_at": started + timedelta(seconds=rng.uniform(20, 90)),
                    "artifacts": artifacts,
                }
            )
        )

    def write_backup(manifest: Manifest) -> None:
        for artifact in manifest.artifacts.values():
            write_bytes(repo.storage, artifact.key, os.urandom(512))
        repo.commit(manifest)

    # the run log's events, chained here in time order as one host writing them in turn
    # would (write_event lists the log to find its heads: 2,000 of them would take hours)
    events: list[tuple[str, bytes]] = []
    prev: str | None = None
    for manifest in manifests:
        event = Event(
            command="backup",
            outcome="ok",
            started_at=manifest.started_at,
            finished_at=manifest.finished_at,
            duration_seconds=(manifest.finished_at - manifest.started_at).total_seconds(),
            user="bench",
            host="bench-host",
            pid=1,
            bika_version="0.1.0",
            repository_id=repo.id,
            backup_ids=[manifest.id],
            detail={"kind": manifest.kind, "stored_bytes": manifest.stored_size},
            prev=prev,
        )
        data = event.to_json()
        events.append((event_key(event), data))
        prev = event_hash(data)

    drilled = rng.sample(manifests, min(drills, len(manifests)))

    def write_drill(manifest: Manifest) -> None:
        finished = manifest.finished_at + timedelta(hours=3)
        record_drill(
            repo,
            DrillRecord(
                backup_id=manifest.id,
                repository_id=repo.id,
                passed=True,
                started_at=finished - timedelta(seconds=40),
                finished_at=finished,
                target=DrillTarget(kind="embedded", server_version="18.1", database="drill"),
                tools={"bika": "0.1.0", "pg_restore": "18.1", "server": "18.1"},
                setup_seconds=2.1,
                restore_seconds=30.5,
                verify_seconds=4.2,
                restored_size=12_000_000,
                owners="restored",
                tables_checked=len(manifest.tables),
                rows_checked=manifest.total_rows,
                bytes_hashed=sum(t.bytes for t in manifest.tables),
                objects_checked=80,
                tables=[],
                objects=[],
                problems=[],
                notes=["21 comments and grants not compared"],
            ),
        )

    with ThreadPoolExecutor(16) as pool:
        list(pool.map(write_backup, manifests))
        list(pool.map(lambda pair: repo.write_signed(*pair), events))
        list(pool.map(write_drill, drilled))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backups", type=int, default=2000)
    parser.add_argument("--drills", type=int, default=500)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--signed", action="store_true", help="also a signed repository")
    parser.add_argument("--before", type=Path, help="src/ of the code to compare with (main)")
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "bench" / "RESULTS.md")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="bika-scale-"))
    moto = start_moto(work)
    try:
        create_s3_bucket(moto.endpoint, BUCKET)
        env = {**offline_env(dict(os.environ)), **s3_env(moto.endpoint)}
        # as an installed bika runs: from compiled modules, not recompiling every one each run
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env["XDG_STATE_HOME"] = str(work / "state")
        env["XDG_CONFIG_HOME"] = str(work / "config")
        recipient = generate_identity(work / "key.txt")
        after = REPO_ROOT / "src"
        year_url, empty_url = f"s3://{BUCKET}/year", f"s3://{BUCKET}/empty"
        with start_cluster(fast=True) as cluster:
            db = cluster.create_database("scale")
            make_database(db)
            for url in (year_url, empty_url):
                bika(after, env, "init", "--repo", url, "--recipient", recipient)
            template_repo = f"s3://{BUCKET}/template"
            bika(after, env, "init", "--repo", template_repo, "--recipient", recipient)
            bika(after, env, "backup", "--repo", template_repo, "--db", db)
            settings = s3_settings(moto.endpoint)
            source = Repository.open(open_storage(template_repo, settings))
            template = source.scan()[0][0]
            repo = Repository.open(open_storage(year_url, settings))
            began = time.monotonic()
            populate(repo, template, args.backups, args.drills)
            populated = time.monotonic() - began
            manifest_bytes = len(template.to_json().encode())
            signing_key = work / "signing.key"
            generate_signing_key(signing_key)

            codes = [("before", args.before)] if args.before else []
            codes.append(("after", after))
            steps: dict[str, list[tuple[str, list[str]]]] = {}
            cold: dict[str, float] = {}
            for name, src in codes:
                bika(src, env, "list", "--repo", empty_url)  # compiles the modules once
                for info in list(repo.storage.list("index/")):  # as on a first run
                    repo.storage.delete(info.key)
                cold[name] = bika(src, env, "list", "--repo", year_url, "--json")
                steps[name] = [
                    ("list", ["list", "--repo", year_url, "--json"]),
                    ("check", ["check", "--repo", year_url, "--json"]),
                    ("prune --dry-run", ["prune", "--dry-run", "--repo", year_url, "--json"]),
                    ("backup (year)", ["backup", "--repo", year_url, "--db", db]),
                    ("backup (empty)", ["backup", "--repo", empty_url, "--db", db]),
                ]
                if args.signed:
                    # one each: the codes' indexes of a signed repository differ
                    signed_url = f"s3://{BUCKET}/signed-{name}"
                    bika(after, env, "init", "--repo", signed_url, "--recipient", recipient)
                    signed = Repository.open(open_storage(signed_url, settings))
                    signed.trust = Trust(signing_key=signing_key)
                    populate(signed, template, args.backups, args.drills)
                    bika(src, env, "list", "--repo", signed_url, "--json")  # its index
                    steps[name] += [
                        ("list (signed)", ["list", "--repo", signed_url, "--json"]),
                        ("check (signed)", ["check", "--repo", signed_url, "--json"]),
                        (
                            "prune --dry-run (signed)",
                            ["prune", "--dry-run", "--repo", signed_url, "--json"],
                        ),
                    ]
            results: dict[str, dict[str, Timing]] = {name: {} for name, _ in codes}
            for _ in range(args.repeat):
                for name, src in codes:  # alternating, so that both see the same load
                    timings = results[name]
                    for step, argv in steps[name]:
                        timings.setdefault(step, Timing()).walls.append(bika(src, env, *argv))
                        print(name, step, f"{timings[step].walls[-1]:.2f}s", flush=True)
    finally:
        moto.stop()
    write_report(args, results, cold, populated, manifest_bytes)


def write_report(
    args: argparse.Namespace,
    results: dict[str, dict[str, Timing]],
    cold: dict[str, float],
    populated: float,
    manifest_bytes: int,
) -> None:
    names = list(results)
    lines = [
        SECTION,
        "",
        f"Generated by `bench/scale.py` at {datetime.now(UTC):%Y-%m-%dT%H:%M:%SZ}:"
        f" {args.backups:,} backups (manifests of {manifest_bytes:,} bytes, cloned from a real"
        f" backup of a 20-table database; 3 objects each), {args.backups:,} run-log events and"
        f" {args.drills:,} drill records, written in {populated:.0f} s. Each command runs as the"
        f" CLI does (a subprocess, interpreter start included), {args.repeat} rounds, median in"
        " seconds; `before` is main's code, `after` this branch's. 2 shared cores.",
        "",
        "| command | " + " | ".join(names) + " | target |",
        "|---|" + "---:|" * len(names) + "---|",
        "| list, first run (no index yet) | "
        + " | ".join(f"{cold[n]:.2f}" for n in names)
        + f" | ≤ {TARGET_SECONDS:.0f} |",
    ]
    for step in results[names[0]]:
        target = f"≤ {TARGET_SECONDS:.0f}" if not step.startswith("backup") else ""
        lines.append(
            f"| {step} | "
            + " | ".join(f"{results[n][step].median:.2f}" for n in names)
            + f" | {target} |"
        )
    lines.append(
        "| backup overhead (year − empty) | "
        + " | ".join(
            f"{results[n]['backup (year)'].median - results[n]['backup (empty)'].median:+.2f}"
            for n in names
        )
        + f" | ≤ {TARGET_BACKUP_OVERHEAD} |"
    )
    lines += [
        "",
        f"Load average at the end: {os.getloadavg()[0]:.1f} (2 cores, shared with other work):"
        " absolute times move with it; `before` and `after` alternate round by round, so they"
        " see the same load. The signed rows are a repository of as many backups and drills,"
        " each signed, whose readers verify every signature (bika.json lists the signer); each"
        " code has its own, since their indexes of it differ.",
        "",
        WHERE_THE_TIME_GOES,
    ]
    lines += ["", "Every run (seconds):", ""]
    for name in names:
        for step, timing in results[name].items():
            lines.append(f"- {name} {step}: " + ", ".join(f"{w:.2f}" for w in timing.walls))
    section = "\n".join(lines) + "\n"
    print(section)
    old = args.out.read_text() if args.out.exists() else ""
    # replace this script's section (up to the next one), keep the rest of the file
    head, found, rest = old.partition(SECTION)
    tail = rest[rest.find("\n## ") + 1 :] if found and "\n## " in rest else ""
    args.out.write_text(
        (head.rstrip() + "\n\n" if head.strip() else "") + section + ("\n" + tail if tail else "")
    )


if __name__ == "__main__":
    main()
