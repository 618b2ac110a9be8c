"""A PostgreSQL server whose archive_command is `bika wal push %p`, run as the server's OS user.

As root, the tests' servers run as bika-pg, which cannot enter /root (where the test venv's
interpreter lives): its `bika` is a console script for the system python3 with the test's
source and the venv's site-packages on its path, as `pip install` would write for that user.
"""

from __future__ import annotations

import os
import pwd
import shutil
import sys
import sysconfig
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from bika.crypto import generate_identity
from bika.postgres.cluster import OS_USER, Cluster, start_cluster

from helpers import run_bika

SRC = Path(__file__).resolve().parent.parent / "src"
SERVER_PYTHON = "/usr/bin/python3"


@dataclass
class ArchivingServer:
    cluster: Cluster
    repo: Path
    key: Path
    recipient: str
    home: Path
    """A folder the server's OS user may use: the repository, bika.toml and bin/bika live here."""

    def env(self, **extra: str) -> dict[str, str]:
        return {"BIKA_REPO": str(self.repo), "BIKA_IDENTITY": str(self.key), **extra}

    def wal_objects(self) -> list[Path]:
        return sorted(
            p for p in (self.repo / "wal").rglob("*.zst.age") if not p.name.startswith(".")
        )

    def hand_back(self) -> None:
        """Give the repository back to the server's OS user after the test (root) wrote to it:
        local storage creates folders for its own user only, so the archiver could not enter
        a folder root made (as a second OS user writing to one local repository would find)."""
        user = server_user()
        if user is not None:
            for path in [self.repo, *self.repo.rglob("*")]:
                os.chown(path, user.pw_uid, user.pw_gid)

    def switch_and_wait(self, count: int = 1) -> str:
        """Switch to a new segment `count` times; wait until the last one is archived."""
        last = ""
        for _ in range(count):
            self.cluster.execute("CREATE TABLE IF NOT EXISTS wal_filler (n int)")
            self.cluster.execute("INSERT INTO wal_filler SELECT generate_series(1, 1000)")
            last = self.cluster.query("SELECT pg_walfile_name(pg_switch_wal())")[0][0]
        wait_archived(self.cluster, last)
        return str(last)


def wait_archived(cluster: Cluster, name: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        row = cluster.query("SELECT last_archived_wal, last_failed_wal FROM pg_stat_archiver")[0]
        if row[0] is not None and row[0] >= name:
            return
        time.sleep(0.1)
    log = cluster.log_path.read_text(errors="replace")[-2000:]
    raise AssertionError(f"{name} was not archived within {timeout} s; server log: {log}")


def server_user() -> pwd.struct_passwd | None:
    return pwd.getpwnam(OS_USER) if os.geteuid() == 0 else None


def install_bika(home: Path) -> Path:
    """A `bika` console script the server's OS user can run; returns its folder."""
    bin_dir = home / "bin"
    bin_dir.mkdir()
    site = sysconfig.get_paths()["purelib"]
    python = SERVER_PYTHON if server_user() is not None else sys.executable
    script = bin_dir / "bika"
    script.write_text(
        f"#!{python}\nimport sys\nsys.path[:0] = [{str(SRC)!r}, {site!r}]\n"
        "from bika.launcher import run\nrun()\n"
    )
    script.chmod(0o755)
    return bin_dir


@contextmanager
def archiving_server(
    bin_dir: Path | None, monkeypatch: pytest.MonkeyPatch, **settings: str
) -> Iterator[ArchivingServer]:
    home = Path(tempfile.mkdtemp(prefix="bika-wal-", dir="/tmp"))
    home.chmod(0o755)
    try:
        key = home / "key.txt"
        recipient = generate_identity(key)
        repo = home / "repo"
        done = run_bika("init", "--repo", str(repo), "--recipient", recipient)
        assert done.returncode == 0, done.stderr
        (home / "bika.toml").write_text(f'repo = "{repo}"\n')
        user = server_user()
        if user is not None:
            for path in [home, *home.rglob("*")]:
                if path != key:
                    os.chown(path, user.pw_uid, user.pw_gid)
        bika_bin = install_bika(home)
        monkeypatch.setenv("PATH", f"{bika_bin}:{os.environ['PATH']}")
        monkeypatch.setenv("BIKA_CONFIG", str(home / "bika.toml"))
        cluster = start_cluster(
            bin_dir,
            fast=False,
            settings={
                "wal_level": "replica",
                "archive_mode": "on",
                "archive_command": "bika wal push %p",
                "max_wal_senders": "4",
                "fsync": "off",
                **settings,
            },
        )
        monkeypatch.delenv("BIKA_CONFIG")
        try:
            yield ArchivingServer(cluster, repo, key, recipient, home)
        finally:
            cluster.remove()
    finally:
        shutil.rmtree(home, ignore_errors=True)
