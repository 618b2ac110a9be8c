"""Local repositories: private whatever the umask, and a full disk or an abort leaves no temp
file and no empty backup folder behind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest

from bika.crypto import generate_identity
from bika.errors import StorageError
from bika.postgres.cluster import Cluster
from bika.storage import write_bytes
from bika.storage.local import LocalStorage

from helpers import KeyedRepo, assert_clean_error, offline_env, run_bika, wait_for_partial


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Callable[[int], Path]]:
    """A folder on a tmpfs of the given size (bytes): a disk that fills up."""
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    mounts: list[Path] = []

    def make(size: int) -> Path:
        folder = tmp_path / f"disk{len(mounts)}"
        folder.mkdir()
        subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(folder)],
            check=True,
        )
        mounts.append(folder)
        return folder

    yield make
    for folder in mounts:
        subprocess.run(["umount", "-l", str(folder)], check=False)


def _fill(folder: Path, leave: int) -> None:
    """Fill the disk under `folder` until only about `leave` bytes are free."""
    free = os.statvfs(folder).f_bavail * os.statvfs(folder).f_frsize
    if free > leave:
        subprocess.run(["fallocate", "-l", str(free - leave), str(folder / "ballast")], check=True)


def _everything(root: Path) -> list[str]:
    """Every file and folder under root, but the run log (a failed run is logged, on purpose)
    and an empty top-level folder (backups/ stays for the next backup, as a cloud prefix would
    not exist at all)."""
    return sorted(
        str(p.relative_to(root))
        for p in root.rglob("*")
        if p.relative_to(root).parts[0] != "events"
        and not (p.parent == root and p.is_dir() and not any(p.iterdir()))
    )


def test_objects_and_folders_are_private_whatever_the_umask(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        storage = LocalStorage(tmp_path / "repo")
        write_bytes(storage, "backups/x/manifest.json", b"{}")
    finally:
        os.umask(old)
    for path in (tmp_path / "repo", tmp_path / "repo/backups", tmp_path / "repo/backups/x"):
        assert path.stat().st_mode & 0o777 == 0o700, path
    assert (tmp_path / "repo/backups/x/manifest.json").stat().st_mode & 0o777 == 0o600


def test_a_full_disk_at_the_manifest_is_one_error_and_leaves_nothing(
    small_disk: Callable[[int], Path],
) -> None:
    # reliability review case 25: the close in `finally` raised ENOSPC again, which became an
    # internal error and skipped the removal of .tmp-manifest.json.*
    root = small_disk(1 << 20)
    storage = LocalStorage(root / "repo")
    write_bytes(storage, "bika.json", b"{}")
    _fill(root, 0)
    with pytest.raises(StorageError, match="No space left on device; free some space"):
        write_bytes(storage, "backups/x/manifest.json", b"m" * 200_000)
    assert _everything(root / "repo") == ["bika.json"]


def test_an_interrupted_write_leaves_no_temp_file_and_no_folder(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path / "repo")
    write_bytes(storage, "bika.json", b"{}")
    with pytest.raises(KeyboardInterrupt), storage.create("backups/x/a") as sink:
        sink.write(b"partial")
        raise KeyboardInterrupt
    assert _everything(tmp_path / "repo") == ["bika.json"]


def test_init_onto_a_regular_file_says_so(tmp_path: Path) -> None:
    afile = tmp_path / "afile"
    afile.write_text("not a repository\n")
    recipient = generate_identity(tmp_path / "key.txt")
    result = run_bika("init", "--repo", str(afile), "--recipient", recipient)
    assert_clean_error(result, f"{afile} is a file, not a folder")


@pytest.fixture
def big_url(pg18: Cluster, new_database: Callable[[Cluster], str]) -> str:
    url = new_database(pg18)
    with psycopg.connect(url, autocommit=True) as db:
        db.execute(
            "CREATE TABLE big AS SELECT g AS id, md5(g::text) || md5((g * 7)::text)"
            " AS payload FROM generate_series(1, 600000) g"
        )
    return url


def test_a_backup_onto_a_full_disk_leaves_no_backup_folder(
    small_disk: Callable[[int], Path], big_url: str
) -> None:
    # reliability review case 24: an empty backups/<id>/ was left
    root = small_disk(4 << 20)
    recipient = generate_identity(root.parent / "key.txt")
    assert run_bika("init", "--repo", str(root / "repo"), "--recipient", recipient).returncode == 0
    result = run_bika("backup", "--repo", str(root / "repo"), "--db", big_url)
    assert_clean_error(result, "No space left on device")
    assert _everything(root / "repo") == ["bika.json"]


def test_ctrl_c_during_a_backup_leaves_no_backup_folder(
    keyed_repo: KeyedRepo, big_url: str
) -> None:
    # reliability review case 56: an empty backups/<id>/ was left
    env = offline_env({k: v for k, v in os.environ.items() if not k.startswith("BIKA_")})
    proc = subprocess.Popen(
        [sys.executable, "-m", "bika", "backup", "--repo", str(keyed_repo.repo), "--db", big_url],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        start_new_session=True,
    )
    wait_for_partial(keyed_repo.repo, proc, minimum=0, seconds=60)
    os.killpg(proc.pid, signal.SIGINT)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    assert "age encryption failed" not in stderr
    assert _everything(keyed_repo.repo) == ["bika.json"]


def test_to_file_forced_onto_a_full_disk_is_one_error_and_leaves_no_file(
    small_disk: Callable[[int], Path], keyed_repo: KeyedRepo, big_url: str
) -> None:
    # reliability review case 102: an internal error (the partial file was removed)
    keyed_repo.backup(big_url)
    out = small_disk(2 << 20) / "out.sql"
    result = run_bika(
        *("restore", "latest", "--repo", str(keyed_repo.repo), "-i", str(keyed_repo.key)),
        *("--to-file", str(out), "--force"),
    )
    assert_clean_error(result, "No space left on device", "partial file has been removed")
    assert not out.exists()
