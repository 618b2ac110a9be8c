"""Benchmark bika's WAL archiving and physical backups against pgBackRest, in one run.

Usage: python bench/pitr.py [--repeat 3] [--segments 48] [--scale 20] [--skip MODE | --only MODE]
                            [--out bench/PITR.md]
Starts its own PostgreSQL 15 (Debian's) with archive_mode = on. Needs Debian's pgbackrest
(`apt-get install -y --no-install-recommends pgbackrest`), set up with zst level 1 and
aes-256-cbc so that both tools compress and encrypt. Every round runs each tool once, in
turn, so a busy machine slows them alike; the table shows medians and every run.

  startup   `bika wal push --help`, and a push of an 8 KiB segment already stored (start-up,
            settings, bika.json, the cluster check, LIST: every fixed cost of a push), vs
            `pgbackrest version` (process start-up, ms)
  drain     a backlog of N .ready segments, from reload of archive_command to the last archived
            (cp, bika sync, bika look-ahead, pgBackRest sync, pgBackRest async process-max 2)
  replay    a base backup recovering through those N segments: restore_command = cp, bika wal
            fetch, pgBackRest archive-get; start to promotion
  base      bika backup --physical vs pgbackrest backup --type=full --process-max=2
  restore   bika restore --physical (files only) vs pgbackrest restore --process-max=2
  load      a bulk load (pgbench -f: INSERT of 50 000 md5 rows per transaction, 1 client) for
            --load-seconds alongside `pgbench -S -c 2` for as long, under each archive_command
            (cp, bika look-ahead, pgBackRest async process-max 2): the .ready backlog sampled
            every 0.2 s (max, mean) and the select-only tps (what archiving takes of the CPU)
  rpo       one row committed per second for --rpo-seconds with archive_timeout =
            --archive-timeout: from each commit to its segment archived (pg_stat_archiver's
            last_archived_wal reaching it, polled every 0.1 s), same three commands
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path

from bika.crypto import generate_identity
from bika.errors import BikaError
from bika.postgres import binaries
from bika.postgres.cluster import OS_USER, Cluster, start_cluster
from bika.postgres.recovery import recover

SRC = Path(__file__).resolve().parent.parent / "src"
PG15 = Path("/usr/lib/postgresql/15/bin")
CIPHER_PASS = "bench-only-passphrase-0123456789"
MODES = ("startup", "base", "restore", "drain", "replay", "load", "rpo")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--segments", type=int, default=48)
    parser.add_argument("--scale", type=int, default=20, help="pgbench scale of the cluster")
    parser.add_argument("--skip", action="append", default=[], help=", ".join(MODES))
    parser.add_argument("--only", action="append", default=[], help="skip the other modes")
    parser.add_argument("--load-seconds", type=int, default=20)
    parser.add_argument("--rpo-seconds", type=int, default=40)
    parser.add_argument("--archive-timeout", type=int, default=10)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "PITR.md")
    args = parser.parse_args()
    if args.only:
        args.skip = [mode for mode in MODES if mode not in args.only]
    if shutil.which("pgbackrest") is None:
        sys.exit(
            "pgbackrest is not installed: apt-get install -y --no-install-recommends pgbackrest"
        )

    home = Path(tempfile.mkdtemp(prefix="bika-bench-pitr-", dir="/tmp"))
    home.chmod(0o755)
    bika = _install_bika(home)
    key = home / "key.txt"
    recipient = generate_identity(key)
    _own(key)
    cluster = start_cluster(
        PG15,
        fast=False,
        parent=home,
        settings={
            "wal_level": "replica",
            "archive_mode": "on",
            "archive_command": "",
            "max_wal_senders": "4",
            "max_wal_size": "4GB",
            "checkpoint_timeout": "30min",
        },
    )
    results: dict[str, list[float]] = {}
    notes: list[str] = []

    def record(name: str, value: float) -> None:
        results.setdefault(name, []).append(value)
        print(f"  {name}: {value:.3f}", flush=True)

    try:
        socket = str(cluster.socket_dir)
        _pgbench_init(cluster, args.scale)
        pgbr = _pgbackrest_setup(home, cluster, socket)
        for round_number in range(1, args.repeat + 1):
            print(f"round {round_number}", flush=True)
            repo = _bika_repo(home, f"repo-{round_number}", recipient)
            _set_archive(cluster, f"{bika} wal push --repo {repo} %p")
            _switch(cluster)
            time.sleep(1)
            if "startup" not in args.skip:
                help_argv = [bika, "wal", "push", "--help"]
                record("startup bika wal push --help (ms)", _startup(help_argv))
                # a repository of its own: the archiver will push the whole segment of that name
                scratch = _bika_repo(home, f"startup-{round_number}", recipient)
                stored = _small_segment(cluster, home, scratch, bika)
                record(
                    "startup bika wal push, 8 KiB segment already stored (ms)",
                    _startup([bika, "wal", "push", "--repo", str(scratch), str(stored)]),
                )
                record("startup pgbackrest version (ms)", _startup(["pgbackrest", "version"]))
            if "base" not in args.skip:
                record(
                    "base bika backup --physical (s)",
                    _timed(
                        [bika, "backup", "--physical", "--repo", str(repo), "--db", cluster.url()]
                    ),
                )
                record(
                    "base pgbackrest backup (s)",
                    _as_server(
                        pgbr.command("backup", "--type=full", "--process-max=2"), timed=True
                    ),
                )
            if "restore" not in args.skip:
                target = home / f"restore-bika-{round_number}"
                record(
                    "restore bika --physical files (s)",
                    _timed(
                        [
                            bika,
                            "restore",
                            "--physical",
                            "--latest",
                            "--repo",
                            str(repo),
                            "--identity",
                            str(key),
                            "--to-dir",
                            str(target),
                        ]
                    ),
                )
                shutil.rmtree(target, ignore_errors=True)
                target = home / f"restore-pgbr-{round_number}"
                target.mkdir(mode=0o700)
                _own(target)
                record(
                    "restore pgbackrest (s)",
                    _as_server(
                        pgbr.command("restore", "--process-max=2", f"--pg1-path={target}"),
                        timed=True,
                    ),
                )
                shutil.rmtree(target, ignore_errors=True)
            if "load" not in args.skip or "rpo" not in args.skip:
                archivers = _archivers(home, round_number, recipient, bika, pgbr)
                if round_number % 2 == 0:
                    archivers.reverse()
                for name, command in archivers if "load" not in args.skip else []:
                    backlog_max, backlog_mean, tps, wal_mb = _load(
                        cluster, command, args.load_seconds, home
                    )
                    record(f"load {name} backlog max (segments)", backlog_max)
                    record(f"load {name} backlog mean (segments)", backlog_mean)
                    record(f"load {name} pgbench -S tps", tps)
                    record(f"load {name} WAL written (MB/s)", wal_mb / args.load_seconds)
                for name, command in archivers if "rpo" not in args.skip else []:
                    rpos = _rpo(cluster, command, args.rpo_seconds, args.archive_timeout)
                    record(f"rpo {name} max (s)", max(rpos))
                    record(f"rpo {name} median (s)", statistics.median(rpos))
                _set_archive(cluster, f"{bika} wal push --repo {repo} %p")
                for folder in home.glob(f"*-load-{round_number}"):
                    shutil.rmtree(folder, ignore_errors=True)
            if "drain" in args.skip and "replay" in args.skip:
                continue
            # the replay's WAL: a base backup, then one backlog, archived by cp into plain/
            plain = home / f"plain-{round_number}"
            plain.mkdir()
            _own(plain)
            _set_archive(cluster, f"test ! -f {plain}/%f && cp %p {plain}/%f")
            _switch(cluster)
            base = home / f"base-{round_number}"
            _basebackup(cluster, base)
            _bika_repo(home, "", recipient, path=Path(f"{repo}-la"))
            drains: list[tuple[str, str]] = [
                ("drain cp (s)", f"test ! -f {plain}/%f && cp %p {plain}/%f"),
                ("drain bika sync (s)", f"{bika} wal push --no-look-ahead --repo {repo} %p"),
                ("drain bika look-ahead (s)", f"{bika} wal push --repo {repo}-la %p"),
                ("drain pgbackrest sync (s)", " ".join(pgbr.command("archive-push", "%p"))),
                (
                    "drain pgbackrest async (s)",
                    " ".join(
                        pgbr.command("archive-push", "--archive-async", "--process-max=2", "%p")
                    ),
                ),
            ]
            if "drain" in args.skip:  # only the backlog the replay needs
                drains = drains[:1]
            for name, command in drains:
                _set_archive(cluster, "")
                last = _backlog(cluster, args.segments)
                record(name, _drain(cluster, command, last))
            _set_archive(cluster, f"{bika} wal push --repo {repo} %p")
            if "replay" in args.skip:
                continue
            replay_repo = _bika_repo(home, f"replay-{round_number}", recipient)
            for segment in sorted(plain.iterdir()):
                subprocess.run(
                    [
                        bika,
                        "wal",
                        "push",
                        "--no-look-ahead",
                        "--repo",
                        str(replay_repo),
                        str(segment),
                    ],
                    check=True,
                    capture_output=True,
                )
                _as_server(pgbr.command("archive-push", str(segment)))
            for item in [replay_repo, *replay_repo.rglob("*")]:
                _own(item)
            fetch = f"{bika} wal fetch --repo {replay_repo} --identity {key}"
            replays = [
                ("replay cp (s)", f"cp {plain}/%f %p"),
                ("replay bika wal fetch (s)", f"{fetch} %f %p"),
                ("replay bika wal fetch --no-prefetch (s)", f"{fetch} --no-prefetch %f %p"),
                # pg1-path: pgBackRest resolves %p (pg_wal/RECOVERYXLOG) against it, and the
                # stanza's is the source cluster's, not the recovering copy's
                (
                    "replay pgbackrest archive-get (s)",
                    " ".join(pgbr.command("archive-get", "--pg1-path={data}", "%f", "%p")),
                ),
            ]
            if round_number % 2 == 0:  # alternate the order, so no tool always goes first
                replays.reverse()
            ends: dict[str, str | None] = {}
            for name, command in replays:
                try:
                    wall, ends[name] = _replay(base, command, home)
                    record(name, wall)
                except BikaError as exc:  # reported, not fatal: the other rows still count
                    print(f"  {name}: failed: {exc}", flush=True)
            if len(set(ends.values())) > 1:  # a faster replay that stopped earlier is no win
                notes.append(f"round {round_number}: replays ended at different LSNs: {ends}")
                print(f"  {notes[-1]}", flush=True)
            shutil.rmtree(base, ignore_errors=True)
            shutil.rmtree(plain, ignore_errors=True)
    finally:
        cluster.remove()
        _write(args, results, notes)
        shutil.rmtree(home, ignore_errors=True)


# -- the tools ------------------------------------------------------------------------------


class PgBackRest:
    def __init__(self, config: Path) -> None:
        self.config = config

    def command(self, *args: str) -> list[str]:
        return ["pgbackrest", f"--config={self.config}", "--stanza=bench", *args]


def _pgbackrest_setup(home: Path, cluster: Cluster, socket: str) -> PgBackRest:
    root = home / "pgbackrest"
    for sub in ("repo", "log", "lock", "spool"):
        (root / sub).mkdir(parents=True)
    config = root / "pgbackrest.conf"
    config.write_text(
        "[global]\n"
        f"repo1-path={root / 'repo'}\nrepo1-cipher-type=aes-256-cbc\n"
        f"repo1-cipher-pass={CIPHER_PASS}\nrepo1-retention-full=99\n"
        "compress-type=zst\ncompress-level=1\n"
        f"log-path={root / 'log'}\nlock-path={root / 'lock'}\nspool-path={root / 'spool'}\n"
        "log-level-console=warn\nlog-level-file=off\nstart-fast=y\narchive-check=n\n"
        "[bench]\n"
        f"pg1-path={cluster.data_dir}\npg1-port={cluster.port}\npg1-socket-path={socket}\n"
        "pg1-user=postgres\n"
    )
    for path in [root, *root.rglob("*")]:
        _own(path)
    pgbr = PgBackRest(config)
    _set_archive(cluster, " ".join(pgbr.command("archive-push", "%p")))
    _as_server(pgbr.command("stanza-create"))
    return pgbr


def _bika_repo(home: Path, name: str, recipient: str, path: Path | None = None) -> Path:
    repo = path or home / name
    python = [sys.executable, "-m", "bika"]
    subprocess.run(
        [*python, "init", "--repo", str(repo), "--recipient", recipient],
        check=True,
        capture_output=True,
        env={**os.environ, "PYTHONPATH": str(SRC)},
    )
    for item in [repo, *repo.rglob("*")]:
        _own(item)
    return repo


def _install_bika(home: Path) -> str:
    """A `bika` the server's OS user can run (as tests/archiving.py writes it)."""
    site = sysconfig.get_paths()["purelib"]
    python = "/usr/bin/python3" if os.geteuid() == 0 else sys.executable
    script = home / "bika"
    script.write_text(
        f"#!{python}\nimport sys\nsys.path[:0] = [{str(SRC)!r}, {site!r}]\n"
        "from bika.launcher import run\nrun()\n"
    )
    script.chmod(0o755)
    # as pip does at install time: the server's OS user cannot write __pycache__ here, and
    # compiling every module on every call would be measured as start-up
    subprocess.run([python, "-m", "compileall", "-q", str(SRC)], check=True)
    return str(script)


def _small_segment(cluster: Cluster, home: Path, repo: Path, bika: str) -> Path:
    """The first 8 KiB of a real segment (its header: the cluster check passes), pushed once."""
    folder = home / "startup-wal"
    folder.mkdir(exist_ok=True)
    name = str(cluster.query("SELECT pg_walfile_name(pg_current_wal_lsn())")[0][0])
    with open(cluster.data_dir / "pg_wal" / name, "rb") as handle:
        head = handle.read(8192)
    path = folder / name
    path.write_bytes(head)
    subprocess.run([bika, "wal", "push", "--repo", str(repo), str(path)], check=True)
    return path


# -- measuring ------------------------------------------------------------------------------


def _account():  # type: ignore[no-untyped-def]
    import pwd

    return pwd.getpwnam(OS_USER) if os.geteuid() == 0 else None


def _own(path: Path) -> None:
    account = _account()
    if account is not None:
        os.chown(path, account.pw_uid, account.pw_gid)


def _as_server(argv: list[str], *, timed: bool = False, check: bool = True) -> float:
    prefix = ["runuser", "-u", OS_USER, "--"] if os.geteuid() == 0 else []
    began = time.monotonic()
    done = subprocess.run([*prefix, *argv], capture_output=True, text=True, check=False, cwd="/tmp")
    if done.returncode != 0 and check:
        raise SystemExit(f"{' '.join(argv)} failed: {done.stderr or done.stdout}")
    return time.monotonic() - began if timed else 0.0


def _timed(argv: list[str]) -> float:
    began = time.monotonic()
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed: {done.stderr}")
    return time.monotonic() - began


def _startup(argv: list[str], times: int = 9) -> float:
    walls = []
    for _ in range(times):
        began = time.monotonic()
        subprocess.run(argv, capture_output=True, check=False)
        walls.append((time.monotonic() - began) * 1000)
    return statistics.median(walls)


def _pgbench_init(cluster: Cluster, scale: int) -> None:
    pgbench = binaries.tool("pgbench", binaries.embedded_bin_dir())
    subprocess.run(
        [str(pgbench), "-i", "-q", "-s", str(scale), cluster.url()], check=True, capture_output=True
    )


def _set_archive(cluster: Cluster, command: str) -> None:
    quoted = command.replace("'", "''")
    cluster.execute(f"ALTER SYSTEM SET archive_command = '{quoted}'")
    cluster.execute("SELECT pg_reload_conf()")


def _switch(cluster: Cluster) -> str:
    cluster.execute("CREATE TABLE IF NOT EXISTS fill (t text)")
    cluster.execute("INSERT INTO fill SELECT 'x'")
    return str(cluster.query("SELECT pg_walfile_name(pg_switch_wal())")[0][0])


def _backlog(cluster: Cluster, segments: int) -> str:
    """N segments of random-looking rows, each switched, left .ready (archive_command '')."""
    cluster.execute("CREATE TABLE IF NOT EXISTS fill (t text)")
    last = ""
    for _ in range(segments):
        cluster.execute(
            "INSERT INTO fill SELECT md5(random()::text) || md5(random()::text)"
            " FROM generate_series(1, 110000)"
        )
        last = str(cluster.query("SELECT pg_walfile_name(pg_switch_wal())")[0][0])
    cluster.execute("TRUNCATE fill")
    return last


def _drain(cluster: Cluster, command: str, last: str) -> float:
    began = time.monotonic()
    _set_archive(cluster, command)
    while True:
        done = cluster.query("SELECT last_archived_wal FROM pg_stat_archiver")[0][0]
        if done is not None and done >= last:
            return time.monotonic() - began
        if time.monotonic() - began > 1200:
            raise SystemExit(f"{command} did not drain the backlog in 20 minutes")
        time.sleep(0.05)


def _archivers(
    home: Path, round_number: int, recipient: str, bika: str, pgbr: PgBackRest
) -> list[tuple[str, str]]:
    """cp, bika with look-ahead and pgBackRest async into fresh places of this round."""
    plain = home / f"plain-load-{round_number}"
    plain.mkdir()
    _own(plain)
    repo = _bika_repo(home, f"bika-load-{round_number}", recipient)
    async_push = pgbr.command("archive-push", "--archive-async", "--process-max=2", "%p")
    return [
        ("cp", f"test ! -f {plain}/%f && cp %p {plain}/%f"),
        ("bika look-ahead", f"{bika} wal push --repo {repo} %p"),
        ("pgbackrest async", " ".join(async_push)),
    ]


def _ready(cluster: Cluster) -> int:
    return len(list((cluster.data_dir / "pg_wal" / "archive_status").glob("*.ready")))


def _settle(cluster: Cluster, command: str) -> None:
    """Switch to `command` and wait until it has archived everything (no .ready left)."""
    _set_archive(cluster, command)
    _switch(cluster)
    began = time.monotonic()
    while _ready(cluster) > 0:
        if time.monotonic() - began > 600:
            raise SystemExit(f"{command} left .ready segments for 10 minutes")
        time.sleep(0.1)


def _load(
    cluster: Cluster, command: str, seconds: int, home: Path
) -> tuple[int, float, float, float]:
    """Max and mean .ready backlog during a bulk load beside pgbench -S, its tps, WAL MB."""
    _settle(cluster, command)
    cluster.execute("DROP TABLE IF EXISTS bulk; CREATE TABLE bulk (t text)")
    script = home / "bulk.sql"
    script.write_text(
        "INSERT INTO bulk SELECT md5(random()::text) || md5(random()::text)"
        " FROM generate_series(1, 50000);\n"
    )
    pgbench = str(binaries.tool("pgbench", binaries.embedded_bin_dir()))
    start_lsn = cluster.query("SELECT pg_current_wal_lsn()")[0][0]
    common = ["-n", "-T", str(seconds), cluster.url()]
    bulk = subprocess.Popen(
        [pgbench, "-c", "1", "-f", str(script), *common], stdout=subprocess.DEVNULL
    )
    reads = subprocess.Popen(
        [pgbench, "-S", "-c", "2", "-j", "2", *common], stdout=subprocess.PIPE, text=True
    )
    samples = []
    while reads.poll() is None or bulk.poll() is None:
        samples.append(_ready(cluster))
        time.sleep(0.2)
    out = reads.communicate()[0]
    if reads.returncode != 0 or bulk.returncode != 0:
        raise SystemExit(f"pgbench failed during the load under {command}: {out}")
    tps = float(out.split("tps = ")[1].split()[0])
    wal = cluster.query(f"SELECT pg_current_wal_lsn() - '{start_lsn}'::pg_lsn")[0][0]
    cluster.execute("DROP TABLE bulk")
    return max(samples), statistics.mean(samples), tps, float(wal) / 1e6


def _rpo(cluster: Cluster, command: str, seconds: int, archive_timeout: int) -> list[float]:
    """Seconds from each commit (one a second) to its segment archived."""
    cluster.execute(f"ALTER SYSTEM SET archive_timeout = {archive_timeout}")
    _settle(cluster, command)
    cluster.execute("CREATE TABLE IF NOT EXISTS steady (at timestamptz)")
    commits: list[tuple[float, str]] = []  # (when, its segment)
    polls: list[tuple[float, str]] = []  # (when, last_archived_wal)
    began = time.monotonic()
    deadline = began + seconds + 3 * archive_timeout + 60
    while not commits or not polls or polls[-1][1] < commits[-1][1]:
        now = time.monotonic()
        if now > deadline:
            raise SystemExit(f"{command} did not archive the last commit's segment in time")
        if now - began < seconds and (not commits or now - commits[-1][0] >= 1.0):
            cluster.execute("INSERT INTO steady VALUES (now())")
            at = time.monotonic()
            segment = cluster.query("SELECT pg_walfile_name(pg_current_wal_insert_lsn())")[0][0]
            commits.append((at, str(segment)))
        done = cluster.query("SELECT last_archived_wal FROM pg_stat_archiver")[0][0]
        polls.append((time.monotonic(), str(done or "")))
        time.sleep(0.1)
    cluster.execute("ALTER SYSTEM RESET archive_timeout")
    cluster.execute("SELECT pg_reload_conf()")
    return [next(t for t, done in polls if done >= segment) - at for at, segment in commits]


def _basebackup(cluster: Cluster, target: Path) -> None:
    tool = binaries.tool("pg_basebackup", binaries.embedded_bin_dir())
    subprocess.run(
        [
            str(tool),
            f"--dbname={cluster.url()}",
            f"--pgdata={target}",
            "--wal-method=none",
            "--checkpoint=fast",
            "--no-sync",
        ],
        check=True,
        capture_output=True,
    )


def _replay(base: Path, command: str, home: Path) -> tuple[float, str | None]:
    """Start to promotion of a copy of `base` recovering to the end of the archive, and the
    LSN its redo ended at."""
    data = home / "replay"
    command = command.replace("{data}", str(data))
    shutil.rmtree(data, ignore_errors=True)
    shutil.copytree(base, data, symlinks=True)
    data.chmod(0o700)
    with (data / "postgresql.auto.conf").open("a") as conf:
        conf.write(
            f"\nrestore_command = '{command}'\narchive_mode = 'off'\n"
            "recovery_target_timeline = '1'\n"
        )
    (data / "recovery.signal").touch()
    for root, dirs, files in os.walk(data):
        for name in [root, *(os.path.join(root, n) for n in dirs + files)]:
            _own(Path(name))
    began = time.monotonic()
    recovered = recover(PG15, data)
    wall = time.monotonic() - began
    shutil.rmtree(data, ignore_errors=True)
    return wall, recovered.redo_done_at


def _write(args: argparse.Namespace, results: dict[str, list[float]], notes: list[str]) -> None:
    lines = [
        "# PITR benchmark: bika vs pgBackRest",
        "",
        f"Generated by `bench/pitr.py --repeat {args.repeat} --segments {args.segments}"
        f" --scale {args.scale} --load-seconds {args.load_seconds} --rpo-seconds"
        f" {args.rpo_seconds} --archive-timeout {args.archive_timeout}"
        f"{''.join(f' --skip {m}' for m in args.skip)}` at"
        f" {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())};"
        " PostgreSQL 15 (Debian), pgBackRest"
        f" {_version()} (zst level 1, aes-256-cbc); 2 shared cores.",
        "",
        "| measurement | median | runs |",
        "|---|---:|---|",
    ]
    for name, values in results.items():
        runs = ", ".join(f"{v:.2f}" for v in values)
        lines.append(f"| {name} | {statistics.median(values):.2f} | {runs} |")
    # per round, so a busy spell slows the rows it shares a round with alike
    if "replay cp (s)" in results:
        lines += ["", "| replay, per round / cp | ratios | median |", "|---|---|---:|"]
        for name, values in results.items():
            if name.startswith("replay ") and name != "replay cp (s)":
                ratios = [v / cp for v, cp in zip(values, results["replay cp (s)"], strict=False)]
                shown = ", ".join(f"{r:.2f}" for r in ratios)
                lines.append(f"| {name[7:-4]} | {shown} | {statistics.median(ratios):.2f} |")
    if "load cp pgbench -S tps" in results:
        lines += ["", "| load tps, per round / cp | ratios | median |", "|---|---|---:|"]
        cp_tps = results["load cp pgbench -S tps"]
        for name, values in results.items():
            if name.endswith(" pgbench -S tps") and name != "load cp pgbench -S tps":
                ratios = [v / cp for v, cp in zip(values, cp_tps, strict=False)]
                shown = ", ".join(f"{r:.2f}" for r in ratios)
                lines.append(f"| {name[5:-15]} | {shown} | {statistics.median(ratios):.2f} |")
    lines += ["", *notes] if notes else []
    args.out.write_text("\n".join(lines) + "\n")
    print(json.dumps({k: statistics.median(v) for k, v in results.items()}, indent=2))


def _version() -> str:
    done = subprocess.run(["pgbackrest", "version"], capture_output=True, text=True, check=False)
    return done.stdout.strip().removeprefix("pgBackRest ")


if __name__ == "__main__":
    main()
