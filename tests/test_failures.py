"""Nothing is lost, nothing half-done is visible, and every failure is one clear line.

Each case leaves the earlier backup listed and verifying, and no new backup.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil
import psycopg
import pytest

from bika.crypto import generate_identity
from bika.postgres import sample
from bika.postgres.cluster import Cluster

from helpers import KeyedRepo, assert_clean_error, run_bika, wait_for_partial


@pytest.fixture
def backed_up(
    pg18: Cluster, new_database: Callable[[Cluster], str], keyed_repo: KeyedRepo
) -> tuple[KeyedRepo, str, str]:
    """A repository holding one good backup of a small database: (repo, db url, backup id)."""
    url = new_database(pg18)
    sample.load(url, sample.SAVINGS_GROUP_SQL)
    return keyed_repo, url, keyed_repo.backup(url)


def assert_previous_intact(repo: KeyedRepo, backup_id: str) -> None:
    assert [b["id"] for b in repo.list()] == [backup_id]
    result = run_bika(
        "verify", "--repo", str(repo.repo), "--read-data", "--identity", str(repo.key)
    )
    assert result.returncode == 0, result.stderr


def _url_with(url: str, **parts: str) -> str:
    from psycopg.conninfo import conninfo_to_dict

    params = {**conninfo_to_dict(url), **parts}
    return (
        f"postgresql://{params['user']}:{params.get('password', '')}@{params['host']}:"
        f"{params['port']}/{params['dbname']}"
    )


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"password": "not-the-password"}, "password authentication failed"),
        ({"dbname": "no_such_database"}, "does not exist"),
        ({"port": "1"}, "cannot connect"),
    ],
    ids=["wrong-password", "missing-database", "unreachable-host"],
)
def test_backup_of_unreachable_database_fails_cleanly(
    backed_up: tuple[KeyedRepo, str, str], change: dict[str, str], expected: str
) -> None:
    repo, url, backup_id = backed_up
    bad = _url_with(url, **change)
    result = run_bika("backup", "--repo", str(repo.repo), "--db", bad)
    assert_clean_error(result, expected)
    assert "not-the-password" not in result.stderr + result.stdout
    assert "s3cret-pw" not in result.stderr + result.stdout
    assert_previous_intact(repo, backup_id)


@pytest.fixture
def big_database(pg18: Cluster, new_database: Callable[[Cluster], str]) -> str:
    """Big enough (~150 MB of dump) that a backup is still streaming when we strike."""
    url = new_database(pg18)
    import psycopg

    with psycopg.connect(url, autocommit=True) as db:
        db.execute(
            "CREATE TABLE big AS SELECT g AS id, md5(g::text) || md5((g * 7)::text)"
            " || md5((g * 13)::text) AS payload FROM generate_series(1, 1500000) g"
        )
    return url


def _start_backup(repo: KeyedRepo, url: str) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BIKA_")}
    return subprocess.Popen(
        [sys.executable, "-m", "bika", "backup", "--repo", str(repo.repo), "--db", url],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def test_backup_killed_midstream_leaves_no_visible_backup(
    backed_up: tuple[KeyedRepo, str, str], big_database: str
) -> None:
    repo, _, backup_id = backed_up
    proc = _start_backup(repo, big_database)
    wait_for_partial(repo.repo, proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    assert_previous_intact(repo, backup_id)


def test_pg_dump_killed_midstream_fails_cleanly(
    backed_up: tuple[KeyedRepo, str, str], big_database: str
) -> None:
    repo, _, backup_id = backed_up
    proc = _start_backup(repo, big_database)
    wait_for_partial(repo.repo, proc)
    dumps = [c for c in psutil.Process(proc.pid).children() if c.name() == "pg_dump"]
    assert dumps, "pg_dump is not running"
    dumps[0].send_signal(signal.SIGKILL)
    _, stderr = proc.communicate(timeout=60)
    assert_clean_error(subprocess.CompletedProcess([], proc.returncode, "", stderr), "pg_dump")
    assert not list((repo.repo / "backups").rglob(".tmp-*")), "partial object left behind"
    assert_previous_intact(repo, backup_id)


@pytest.fixture
def immutable() -> Iterator[Callable[[Path], None]]:
    """Make a folder unwritable even for root (chattr +i), undone afterwards."""
    locked: list[Path] = []

    def lock(path: Path) -> None:
        if os.geteuid() == 0:
            subprocess.run(["chattr", "+i", str(path)], check=True)
        else:
            path.chmod(0o555)
        locked.append(path)

    yield lock
    for path in locked:
        if os.geteuid() == 0:
            subprocess.run(["chattr", "-i", str(path)], check=True)
        else:
            path.chmod(0o755)


def test_unwritable_repository_fails_cleanly(
    backed_up: tuple[KeyedRepo, str, str], immutable: Callable[[Path], None]
) -> None:
    repo, url, backup_id = backed_up
    immutable(repo.repo / "backups")
    result = run_bika("backup", "--repo", str(repo.repo), "--db", url)
    assert_clean_error(result, "cannot write", "backups")
    assert_previous_intact(repo, backup_id)


def _database_artifact(repo: KeyedRepo, backup_id: str) -> Path:
    return repo.repo / repo.manifest(backup_id)["artifacts"]["database"]["key"]


def test_flipped_byte_is_named_by_verify_read_data(backed_up: tuple[KeyedRepo, str, str]) -> None:
    repo, _, backup_id = backed_up
    artifact = _database_artifact(repo, backup_id)
    data = bytearray(artifact.read_bytes())
    data[len(data) // 2] ^= 0x01
    artifact.write_bytes(bytes(data))
    quick = run_bika("verify", "--repo", str(repo.repo))
    assert quick.returncode == 0  # same size: only reading the data can tell
    full = run_bika("verify", "--repo", str(repo.repo), "--read-data", "--identity", str(repo.key))
    assert full.returncode == 1
    assert f"FAILED {backup_id} database" in full.stderr
    assert "corrupt" in full.stderr
    assert "Traceback" not in full.stderr


def test_truncated_artifact_is_named_by_verify(backed_up: tuple[KeyedRepo, str, str]) -> None:
    repo, _, backup_id = backed_up
    artifact = _database_artifact(repo, backup_id)
    data = artifact.read_bytes()
    artifact.write_bytes(data[: len(data) - 1000])
    for extra in ([], ["--read-data", "--identity", str(repo.key)]):
        result = run_bika("verify", "--repo", str(repo.repo), *extra)
        assert result.returncode == 1
        assert f"FAILED {backup_id} database" in result.stderr
        assert "truncated" in result.stderr


def test_restore_with_wrong_key_fails_before_touching_the_target(
    backed_up: tuple[KeyedRepo, str, str], pg18: Cluster, tmp_path: Path
) -> None:
    repo, _, backup_id = backed_up
    other = tmp_path / "other.txt"
    generate_identity(other)
    target = pg18.url("never_created")
    result = run_bika(
        "restore",
        backup_id,
        "--repo",
        str(repo.repo),
        "--identity",
        str(other),
        "--to",
        target,
        "--create",
    )
    assert_clean_error(result, "cannot decrypt")
    assert not pg18.query("SELECT 1 FROM pg_database WHERE datname = 'never_created'")


def test_restore_of_unknown_id_fails_cleanly(
    backed_up: tuple[KeyedRepo, str, str], pg18: Cluster
) -> None:
    repo, _, _ = backed_up
    result = run_bika(
        "restore",
        "20990101T000000Z-manual-0000",
        "--repo",
        str(repo.repo),
        "--identity",
        str(repo.key),
        "--to",
        pg18.url("x"),
    )
    assert_clean_error(result, "no backup", "bika list")


def test_restore_into_non_empty_database_is_refused(backed_up: tuple[KeyedRepo, str, str]) -> None:
    repo, url, backup_id = backed_up
    result = run_bika(
        "restore", backup_id, "--repo", str(repo.repo), "--identity", str(repo.key), "--to", url
    )
    assert_clean_error(result, "not empty", "--clean")


def test_malformed_config_file_fails_cleanly(tmp_path: Path) -> None:
    (tmp_path / "bika.toml").write_text('repo = "/tmp/x"\nrecipients = [\n')
    result = run_bika("list", cwd=tmp_path)
    assert_clean_error(result, "bika.toml", "not valid TOML")
    (tmp_path / "bika.toml").write_text('repository = "/tmp/x"\n')
    assert_clean_error(run_bika("list", cwd=tmp_path), "unknown setting 'repository'")


def test_passwords_never_reach_output_or_repository(backed_up: tuple[KeyedRepo, str, str]) -> None:
    repo, url, _ = backed_up
    assert "s3cret-pw" in url
    result = run_bika("backup", "--repo", str(repo.repo), "--db", url)
    assert result.returncode == 0, result.stderr
    shown = run_bika("show", "latest", "--repo", str(repo.repo), "--json")
    for text in (result.stdout, result.stderr, shown.stdout):
        assert "s3cret-pw" not in text
    for path in repo.repo.rglob("*"):
        if path.is_file():
            assert b"s3cret-pw" not in path.read_bytes(), path


def test_parallel_restore_of_a_replaced_archive_is_refused_before_loading(
    backed_up: tuple[KeyedRepo, str, str], pg18: Cluster, new_database: Callable[[Cluster], str]
) -> None:
    """--jobs decrypts the whole archive before pg_restore starts: one that is not the
    manifest's (here another backup's) is refused then, and the target stays empty."""
    repo, url, first = backed_up
    with psycopg.connect(url, autocommit=True) as db:
        db.execute("DELETE FROM public.contributions WHERE contribution_id % 2 = 0")
    second = repo.backup(url)
    artifact = "database.pgdump.zst.age"
    replaced = repo.repo / "backups" / first / artifact
    replaced.chmod(0o600)
    replaced.write_bytes((repo.repo / "backups" / second / artifact).read_bytes())
    target = new_database(pg18)

    result = run_bika(
        "restore",
        first,
        "--repo",
        str(repo.repo),
        "--identity",
        str(repo.key),
        "--to",
        target,
        "--jobs",
        "2",
    )

    assert_clean_error(result, "not the one the manifest describes", "bika verify")
    with psycopg.connect(target) as db:
        tables = db.execute(
            "SELECT count(*) FROM pg_class WHERE relnamespace = 'public'::regnamespace"
        ).fetchone()
    assert tables == (0,)
