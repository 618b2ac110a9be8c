"""An interrupted or killed bika leaves nothing behind: no pg_restore loading on unsupervised,
no scratch PostgreSQL running, no plaintext dump in TMPDIR; and the next run removes what a
dead run did leave.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil
import psycopg
import pytest

from bika.crypto import generate_identity
from bika.postgres.cluster import Cluster

from helpers import KeyedRepo, offline_env, run_bika

ROWS = 1_000_000  # ~100 MiB dumped: a restore is still decrypting or loading when we strike


@pytest.fixture(scope="module")
def big_backup(pg18: Cluster) -> Iterator[tuple[KeyedRepo, Cluster]]:
    """A repository holding one backup of a database of ROWS rows."""
    folder = Path(tempfile.mkdtemp(prefix="bika-test-interrupts-"))
    name = "interrupts_big"
    url = pg18.create_database(name)
    try:
        with psycopg.connect(url, autocommit=True) as db:
            db.execute(
                "CREATE TABLE big AS SELECT g AS id, md5(g::text) || md5((g * 7)::text)"
                f" AS payload FROM generate_series(1, {ROWS}) g"
            )
        recipient = generate_identity(folder / "key.txt")
        repo = KeyedRepo(repo=folder / "repo", key=folder / "key.txt", recipient=recipient)
        assert run_bika("init", "--repo", str(repo.repo), "--recipient", recipient).returncode == 0
        repo.backup(url)
        yield repo, pg18
    finally:
        pg18.drop_database(name)
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def tmpdir_for_bika() -> Iterator[Path]:
    """The TMPDIR bika runs with: under /tmp, and enterable by others (as root, the scratch
    server's OS user must reach it; pytest's tmp_path is 0700)."""
    folder = Path(tempfile.mkdtemp(prefix="bika-test-tmp-", dir="/tmp"))
    folder.chmod(0o755)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def _start(args: list[str], tmpdir: Path) -> subprocess.Popen[str]:
    env = offline_env({k: v for k, v in os.environ.items() if not k.startswith("BIKA_")})
    env["TMPDIR"] = str(tmpdir)
    return subprocess.Popen(
        [sys.executable, "-m", "bika", *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        start_new_session=True,
    )


class Watched:
    """A running bika and every process it started, remembered as they appear."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.proc = proc
        self.seen: dict[int, psutil.Process] = {}

    def look(self) -> set[str]:
        with_children: list[psutil.Process] = []
        with contextlib.suppress(psutil.NoSuchProcess):
            with_children = psutil.Process(self.proc.pid).children(recursive=True)
        names = set()
        for child in with_children:
            try:
                names.add(child.name())
                self.seen.setdefault(child.pid, child)
            except psutil.NoSuchProcess:
                continue
        return names

    def wait_until(self, ready: Callable[[set[str]], bool], timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, f"bika ended first: {self.proc.stderr.read()}"  # type: ignore[union-attr]
            if ready(self.look()):
                return
            time.sleep(0.01)
        pytest.fail("bika never reached the moment to strike")

    def running(self) -> list[str]:
        """The processes it started that still run (but its watchdog, which cleans up)."""
        alive = []
        for child in self.seen.values():
            try:
                if child.status() == psutil.STATUS_ZOMBIE:
                    continue
                if any("watchdog.py" in part for part in child.cmdline()):
                    continue
                alive.append(f"{child.pid} {child.name()}")
            except psutil.NoSuchProcess:
                continue
        return alive


def _servers_in(folder: Path) -> list[int]:
    """Running postmasters (and their children) whose data folder is inside `folder`."""
    found = []
    for proc in psutil.process_iter(["name"]):
        try:
            if proc.info["name"] == "postgres" and proc.cwd().startswith(str(folder)):
                found.append(proc.pid)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return found


def _running(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _files_in(folder: Path) -> list[Path]:
    # os.walk, not rglob: a watchdog may be deleting the folder meanwhile
    return [Path(top, name) for top, _, files in os.walk(folder) for name in files]


def _assert_nothing_left(watched: Watched, tmpdir: Path, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        left = (watched.running(), _servers_in(tmpdir), _files_in(tmpdir))
        if not any(left):
            return
        time.sleep(0.1)
    processes, servers, files = left
    assert not processes, f"still running after bika died: {processes}"
    assert not servers, f"scratch PostgreSQL still running: {servers}"
    assert not files, f"left in TMPDIR: {files[:5]}"


def _restore_args(repo: KeyedRepo, cluster: Cluster, name: str) -> list[str]:
    return [
        "restore",
        "latest",
        "--repo",
        str(repo.repo),
        "--identity",
        str(repo.key),
        "--to",
        cluster.url(name),
        "--create",
        "--jobs",
        "2",
    ]


def _plaintext_at_least(tmpdir: Path, size: int) -> Callable[[set[str]], bool]:
    def ready(_: set[str]) -> bool:
        dumps = [p for p in _files_in(tmpdir) if p.suffix == ".pgdump"]
        return any(p.stat().st_size >= size for p in dumps if p.exists())

    return ready


def test_restore_jobs_killed_while_pg_restore_loads_leaves_nothing_running(
    big_backup: tuple[KeyedRepo, Cluster], tmpdir_for_bika: Path
) -> None:
    repo, cluster = big_backup
    name = "interrupts_killed_loading"
    watched = Watched(_start(_restore_args(repo, cluster, name), tmpdir_for_bika))
    try:
        watched.wait_until(lambda names: "pg_restore" in names)
        time.sleep(0.3)
        watched.look()  # pg_restore's workers too
        os.kill(watched.proc.pid, signal.SIGKILL)
        watched.proc.wait(timeout=30)
        _assert_nothing_left(watched, tmpdir_for_bika)
    finally:
        cluster.drop_database(name)


def test_restore_jobs_killed_while_decrypting_leaves_no_plaintext(
    big_backup: tuple[KeyedRepo, Cluster], tmpdir_for_bika: Path
) -> None:
    repo, cluster = big_backup
    name = "interrupts_killed_decrypting"
    watched = Watched(_start(_restore_args(repo, cluster, name), tmpdir_for_bika))
    try:
        watched.wait_until(_plaintext_at_least(tmpdir_for_bika, 20 << 20))
        os.kill(watched.proc.pid, signal.SIGKILL)
        watched.proc.wait(timeout=30)
        _assert_nothing_left(watched, tmpdir_for_bika)
    finally:
        cluster.drop_database(name)


def test_drill_killed_leaves_no_scratch_server_and_no_plaintext(
    big_backup: tuple[KeyedRepo, Cluster], tmpdir_for_bika: Path
) -> None:
    repo, _ = big_backup
    args = ["drill", "--repo", str(repo.repo), "--identity", str(repo.key), "--jobs", "2"]
    watched = Watched(_start(args, tmpdir_for_bika))
    # the restore into the scratch server, whose data folder is in bika's TMPDIR
    watched.wait_until(lambda names: "pg_restore" in names and bool(_servers_in(tmpdir_for_bika)))
    os.kill(watched.proc.pid, signal.SIGKILL)
    watched.proc.wait(timeout=30)
    _assert_nothing_left(watched, tmpdir_for_bika)


@pytest.mark.parametrize("size_mib", [30])
def test_ctrl_c_while_decrypting_for_jobs_exits_130_and_removes_the_copy(
    big_backup: tuple[KeyedRepo, Cluster], tmpdir_for_bika: Path, size_mib: int
) -> None:
    repo, cluster = big_backup
    name = f"interrupts_ctrl_c_{size_mib}"
    watched = Watched(_start(_restore_args(repo, cluster, name), tmpdir_for_bika))
    try:
        watched.wait_until(_plaintext_at_least(tmpdir_for_bika, size_mib << 20))
        os.killpg(watched.proc.pid, signal.SIGINT)  # as Ctrl-C does: the whole group
        _, stderr = watched.proc.communicate(timeout=60)
        assert watched.proc.returncode == 130, stderr  # not 134 (SIGABRT)
        assert "Fatal Python error" not in stderr
        _assert_nothing_left(watched, tmpdir_for_bika)
    finally:
        cluster.drop_database(name)


def _abandon_a_scratch_server(tmpdir: Path) -> tuple[list[int], Path]:
    """A process that starts a scratch server and writes a plaintext file, killed together
    with its watchdog (as an OOM kill of the whole group might): what it leaves behind."""
    script = (
        "import sys, time; from bika import scratch; from bika.postgres.cluster import"
        " start_cluster; c = start_cluster(); (scratch.folder() / 'restore-x.pgdump')"
        ".write_bytes(b'PGDMP secret rows'); print(scratch.folder(), flush=True);"
        " time.sleep(300)"
    )
    env = {**os.environ, "TMPDIR": str(tmpdir)}
    proc = subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, env=env
    )
    assert proc.stdout is not None
    folder = Path(proc.stdout.readline().strip())
    for child in psutil.Process(proc.pid).children():
        if any("watchdog.py" in part for part in child.cmdline()):
            child.kill()
    proc.kill()
    proc.wait()
    servers = _servers_in(tmpdir)
    assert servers and folder.is_dir()
    return servers, folder


def test_the_next_run_stops_and_removes_what_a_dead_run_left(
    pg18: Cluster,
    new_database: Callable[[Cluster], str],
    keyed_repo: KeyedRepo,
    tmpdir_for_bika: Path,
) -> None:
    url = new_database(pg18)
    with psycopg.connect(url, autocommit=True) as db:
        db.execute("CREATE TABLE t AS SELECT g FROM generate_series(1, 100) g")
    keyed_repo.backup(url)
    servers, folder = _abandon_a_scratch_server(tmpdir_for_bika)

    target = new_database(pg18)
    proc = _start(
        [
            "restore",
            "latest",
            "--repo",
            str(keyed_repo.repo),
            "--identity",
            str(keyed_repo.key),
            "--to",
            target,
            "--jobs",
            "2",
        ],
        tmpdir_for_bika,
    )
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 0, stderr
    assert not folder.exists()
    assert not [pid for pid in servers if _running(pid)]
    deadline = time.monotonic() + 10
    while _files_in(tmpdir_for_bika) and time.monotonic() < deadline:
        time.sleep(0.1)  # the run's own folder, deleted by its watchdog as it exits
    assert not _files_in(tmpdir_for_bika)
