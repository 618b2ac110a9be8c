"""`bika prune`, the run log and the lock, through the command line on real repositories.

Time is moved with BIKA_NOW (tests only, see bika/clock.py): backups are taken "in" the past,
prunes run "in" the future. Repositories planted with manifests (no PostgreSQL) show the rules;
real backups — local and on S3 (moto), killed ones, failed ones, one running while prune runs —
show the rest.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest

from bika.crypto import generate_identity
from bika.errors import RepositoryLocked
from bika.postgres.cluster import Cluster
from bika.repository import Artifact, DumpSource, Manifest, Repository
from bika.repository.locks import exclusive_lock
from bika.repository.manifest import Roles
from bika.repository.repository import new_backup_id
from bika.storage import StorageSettings, open_storage, read_bytes, write_bytes
from bika.storage.local import LocalStorage

from helpers import KeyedRepo, assert_clean_error, run_bika, wait_for_partial
from storage.servers import BUCKET, Server, moto_client, s3_env

NOW = datetime(2026, 6, 20, 12, 0, tzinfo=UTC)  # a Saturday


def at(when: datetime) -> dict[str, str]:
    return {"BIKA_NOW": when.isoformat()}


def plant(repo: Path | Repository, kind: str, started: datetime, size: int = 1000) -> str:
    """A backup as bika writes one (artifact, then manifest), without dumping anything."""
    repository = repo if isinstance(repo, Repository) else Repository.open(LocalStorage(repo))
    backup_id = new_backup_id(kind, started)
    key = repository.artifact_key(backup_id, "database.pgdump.zst.age")
    data = os.urandom(size)
    write_bytes(repository.storage, key, data)
    repository.commit(
        Manifest(
            tool="bika test",
            id=backup_id,
            repository_id=repository.id,
            kind=kind,
            started_at=started,
            finished_at=started + timedelta(seconds=5),
            source=DumpSource(
                database="db", host_hash="0" * 16, server_version="18", pg_dump_version="18"
            ),
            artifacts={
                "database": Artifact(
                    key=key,
                    content="pg_dump-custom",
                    codecs=["zstd", "age"],
                    stored_size=size,
                    stored_sha256=hashlib.sha256(data).hexdigest(),
                    plain_size=size,
                    plain_sha256="0" * 64,
                )
            },
            tables=[],
            roles=Roles(status="skipped"),
        )
    )
    return backup_id


def backup(repo: Path | str, url: str, *args: str, env: dict[str, str] | None = None) -> str:
    result = run_bika("backup", "--repo", str(repo), "--db", url, *args, env=env)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip().splitlines()[-1]


def prune(repo: Path | str, *args: str, env: dict[str, str] | None = None) -> dict[str, Any]:
    result = run_bika("prune", "--repo", str(repo), "--json", *args, env=env)
    assert result.returncode == 0, result.stderr
    report: dict[str, Any] = json.loads(result.stdout)
    report["stderr"] = result.stderr
    return report


def verdicts(report: dict[str, Any]) -> dict[str, tuple[bool, str]]:
    return {b["id"]: (b["keep"], b["reason"]) for b in report["backups"]}


def events(repo: Path) -> list[dict[str, Any]]:
    folder = repo / "events"
    return [json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))]


def test_prune_keeps_what_the_policy_keeps_and_deletes_the_rest_with_its_drills(
    keyed_repo: KeyedRepo,
) -> None:
    repo = keyed_repo.repo
    may_first = plant(repo, "daily", datetime(2026, 5, 1, 2, tzinfo=UTC))  # monthly of May
    may_second = plant(repo, "daily", datetime(2026, 5, 2, 2, tzinfo=UTC))
    migration = plant(repo, "pre-migration", datetime(2026, 5, 10, 2, tzinfo=UTC))
    manual = plant(repo, "manual", datetime(2026, 6, 1, 2, tzinfo=UTC))
    last = plant(repo, "daily", datetime(2026, 6, 19, 2, tzinfo=UTC))
    drill = repo / "drills" / may_second / "20260503T000000.000Z.json"
    drill.parent.mkdir(parents=True)
    drill.write_text("{}")

    planned = prune(repo, "--dry-run", env=at(NOW))
    assert verdicts(planned) == {
        may_first: (True, "monthly of 2026-05: younger than 365 days"),
        may_second: (False, "daily: older than 7 days"),
        migration: (
            False,
            "weekly of 2026-W19: older than 30 days; pre-migration: older than 30 days",
        ),
        manual: (True, "weekly of 2026-W23: younger than 30 days"),
        last: (True, "newest backup"),
    }
    assert (repo / "backups" / may_second / "manifest.json").exists(), "a dry run deleted"

    done = prune(repo, env=at(NOW))
    assert done["deleted_objects"] == 5  # two manifests, two artifacts, one drill record
    assert done["freed_bytes"] > 2000
    assert not (repo / "backups" / may_second).exists()
    assert not (repo / "backups" / migration).exists()
    assert not (repo / "drills" / may_second).exists()
    assert [b["id"] for b in keyed_repo.list()] == [may_first, manual, last]
    assert not list((repo / "locks").iterdir()), "the lock was not released"

    again = prune(repo, env=at(NOW))
    assert again["deleted_objects"] == 0, "pruning what it kept dropped more"
    logged = [e for e in events(repo) if e["command"] == "prune" and e["outcome"] == "ok"]
    assert len(logged) == 3  # the dry run, the prune, the second prune
    assert sorted(sorted(e["backup_ids"]) for e in logged) == [
        [],
        [],
        sorted([may_second, migration]),
    ]


def test_restic_style_flags_replace_the_rules_they_name(keyed_repo: KeyedRepo) -> None:
    repo = keyed_repo.repo
    nights = [plant(repo, "daily", NOW - timedelta(days=d, hours=10)) for d in range(5, 0, -1)]
    report = prune(repo, "--dry-run", "--keep-daily", "2", env=at(NOW))
    kept = [b["id"] for b in report["backups"] if b["keep"]]
    # the newest two nights, and the first of the week and of the month
    assert nights[-2:] == kept[-2:]
    assert verdicts(report)[nights[1]] == (False, "daily: not one of the newest 2")
    within = prune(repo, "--dry-run", "--keep-daily", "0", "--keep-within", "3d", env=at(NOW))
    assert verdicts(within)[nights[3]] == (True, "younger than 3 days")
    assert not verdicts(within)[nights[2]][0]


def test_a_bad_duration_is_refused_with_the_fix(keyed_repo: KeyedRepo) -> None:
    result = run_bika("prune", "--repo", str(keyed_repo.repo), "--keep-within", "6m")
    assert_clean_error(result, "6m", "30d")
    assert result.returncode == 2


def test_retention_comes_from_bika_toml(keyed_repo: KeyedRepo, tmp_path: Path) -> None:
    repo = keyed_repo.repo
    old = plant(repo, "manual", NOW - timedelta(days=100))
    plant(repo, "daily", NOW - timedelta(hours=1))
    (tmp_path / "bika.toml").write_text(
        f'repo = "{repo}"\n[retention.manual]\nkeep_days = 90\n[retention.monthly]\nkeep_last = 0\n'
    )
    result = run_bika("prune", "--dry-run", "--json", cwd=tmp_path, env=at(NOW))
    assert result.returncode == 0, result.stderr
    keep, reason = verdicts(json.loads(result.stdout))[old]
    assert not keep
    assert "monthly of 2026-03: not one of the newest 0" in reason
    assert reason.endswith("manual: older than 90 days")


def test_a_damaged_manifest_blinds_no_prune_and_its_backup_is_never_collected(
    keyed_repo: KeyedRepo,
) -> None:
    repo = keyed_repo.repo
    damaged = plant(repo, "daily", NOW - timedelta(days=40))
    old = plant(repo, "daily", NOW - timedelta(days=20))
    newest = plant(repo, "daily", NOW - timedelta(hours=1))
    (repo / "backups" / damaged / "manifest.json").write_text('{"tables" ,,}')
    gfs_off = ("--keep-weekly", "0", "--keep-monthly", "0")
    # a year later, when every object of the damaged backup is old enough to look abandoned
    report = prune(repo, *gfs_off, env=at(NOW + timedelta(days=365)))
    assert verdicts(report)[old][0] is False and verdicts(report)[newest][0] is True
    assert damaged not in verdicts(report)
    assert any(damaged in note and "bika verify" in note for note in report["notes"])
    assert report["leftovers"] == []
    assert (repo / "backups" / damaged / "database.pgdump.zst.age").exists()


def test_a_half_deleted_backup_is_invisible_and_the_next_prune_finishes_it(
    keyed_repo: KeyedRepo, immutable_file: Callable[[Path], None]
) -> None:
    repo = keyed_repo.repo
    old = plant(repo, "daily", NOW - timedelta(days=40))
    plant(repo, "daily", NOW - timedelta(hours=1))
    artifact = repo / "backups" / old / "database.pgdump.zst.age"
    immutable_file(artifact)
    gfs_off = ("--keep-weekly", "0", "--keep-monthly", "0")
    result = run_bika("prune", "--repo", str(repo), *gfs_off, env=at(NOW))
    assert_clean_error(result, "cannot delete")
    # the manifest went first: the backup no longer exists, although its artifact does
    assert artifact.exists()
    assert old not in [b["id"] for b in keyed_repo.list()]
    failed = [e for e in events(repo) if e["command"] == "prune"][-1]
    assert failed["outcome"] == "failed" and "cannot delete" in failed["error"]

    subprocess.run(["chattr", "-i", str(artifact)], check=True)
    assert prune(repo, *gfs_off, env=at(NOW))["leftovers"] == [], "a fresh leftover went"
    report = prune(repo, *gfs_off, env=at(datetime.now(UTC) + timedelta(days=2)))
    assert [i["why"] for i in report["leftovers"]] == [
        "artifact without a manifest (a failed or killed backup)"
    ]
    assert not (repo / "backups" / old).exists()


@pytest.fixture
def immutable_file() -> Iterator[Callable[[Path], None]]:
    """A file even root cannot delete (chattr +i), undone afterwards."""
    if os.geteuid() != 0:
        pytest.fail("needs root for chattr +i")
    locked: list[Path] = []

    def lock(path: Path) -> None:
        subprocess.run(["chattr", "+i", str(path)], check=True)
        locked.append(path)

    yield lock
    for path in locked:
        subprocess.run(["chattr", "-i", str(path)], check=False)


def test_archive_classes_say_what_early_deletion_costs(moto: Server, tmp_path: Path) -> None:
    url = f"s3://{BUCKET}/prune-classes-{os.urandom(4).hex()}"
    env = s3_env(moto.endpoint)
    key = tmp_path / "k.txt"
    (tmp_path / "bika.toml").write_text(
        '[storage.classes]\nmonthly = "GLACIER_IR"\ndaily = "STANDARD_IA"\n'
    )
    init = run_bika("init", "--repo", url, "--recipient", generate_identity(key), env=env)
    assert init.returncode == 0, init.stderr
    storage = open_storage(
        url,
        StorageSettings(
            endpoint=moto.endpoint,
            access_key_id="test",
            secret_access_key="test",
            region="us-east-1",
        ),
    )
    may = plant(Repository.open(storage), "daily", datetime(2026, 5, 1, 2, tzinfo=UTC))
    plant(Repository.open(storage), "daily", NOW - timedelta(hours=1))
    result = run_bika(
        "prune",
        "--repo",
        url,
        "--keep-monthly",
        "0",
        "--json",
        cwd=tmp_path,
        env={**env, **at(NOW)},
    )
    assert result.returncode == 0, result.stderr
    notes = json.loads(result.stdout)["notes"]
    assert f"{may} is in GLACIER_IR (billed 90 days at the least): deleting it at 50 days" in (
        " ".join(notes)
    )
    assert any("daily backups go to STANDARD_IA, billed 30 days at the least" in n for n in notes)


# --- lock ----------------------------------------------------------------------------------


def _lock(repo: Path, host: str, pid: int, expires: datetime) -> Path:
    path = repo / "locks" / f"20260101T000000.000Z-{host}-beef.json"
    path.parent.mkdir(exist_ok=True)
    path.write_text(
        json.dumps(
            {
                "host": host,
                "pid": pid,
                "user": "ops",
                "command": "prune",
                "taken_at": "2026-06-20T11:00:00+00:00",
                "expires_at": expires.isoformat(),
            }
        )
    )
    return path


def test_prune_refuses_a_repository_another_host_holds_until_the_lock_is_broken(
    keyed_repo: KeyedRepo,
) -> None:
    repo = keyed_repo.repo
    plant(repo, "daily", datetime(2026, 6, 1, 2, tzinfo=UTC))  # June's monthly
    plant(repo, "daily", datetime(2026, 6, 2, 2, tzinfo=UTC))  # a daily, 18 days old: dropped
    plant(repo, "daily", NOW - timedelta(hours=1))
    held = _lock(repo, "db-2", 4242, NOW + timedelta(minutes=20))
    result = run_bika("prune", "--repo", str(repo), env=at(NOW))
    assert_clean_error(
        result, "repository locked by db-2", "since 2026-06-20 11:00:00 UTC", "--break-lock"
    )
    assert result.returncode == 1
    assert len(keyed_repo.list()) == 3, "deleted without the lock"
    assert held.exists() and len(list((repo / "locks").iterdir())) == 1

    broken = prune(repo, "--break-lock", env=at(NOW))
    assert "broke the lock of db-2 (pid 4242)" in broken["stderr"]
    assert len(keyed_repo.list()) == 2


def test_a_lock_whose_lease_ran_out_or_whose_process_is_gone_is_stale(
    keyed_repo: KeyedRepo,
) -> None:
    repo = keyed_repo.repo
    _lock(repo, "db-2", 4242, NOW - timedelta(minutes=1))
    assert "removed a stale lock of db-2" in prune(repo, env=at(NOW))["stderr"]
    dead = subprocess.Popen(["true"])
    dead.wait()
    _lock(repo, socket.gethostname(), dead.pid, NOW + timedelta(minutes=20))
    assert "removed a stale lock" in prune(repo, env=at(NOW))["stderr"]


# --- real backups --------------------------------------------------------------------------


@pytest.fixture
def database(pg18: Cluster, new_database: Callable[[Cluster], str]) -> str:
    url = new_database(pg18)
    with psycopg.connect(url, autocommit=True) as db:
        db.execute(
            "CREATE TABLE t AS SELECT g AS id, md5(g::text) AS v FROM generate_series(1, 2000) g"
        )
    return url


@pytest.fixture
def slow_database(pg18: Cluster, new_database: Callable[[Cluster], str]) -> str:
    """Big enough (~100 MB of dump) that a backup is still streaming while we act."""
    url = new_database(pg18)
    with psycopg.connect(url, autocommit=True) as db:
        db.execute(
            "CREATE TABLE big AS SELECT g AS id, md5(g::text) || md5((g * 7)::text)"
            " || md5((g * 13)::text) AS payload FROM generate_series(1, 1000000) g"
        )
    return url


def test_prune_of_real_backups_taken_over_two_months(keyed_repo: KeyedRepo, database: str) -> None:
    repo = keyed_repo.repo
    old = backup(repo, database, "--kind", "daily", env=at(NOW - timedelta(days=45)))
    weekly = backup(repo, database, "--kind", "weekly", env=at(NOW - timedelta(days=20)))
    new = backup(repo, database, "--kind", "daily", env=at(NOW - timedelta(hours=3)))
    report = prune(keyed_repo.repo, env=at(NOW))
    assert verdicts(report)[old][0] is True  # the first of May: May's monthly
    assert verdicts(report)[weekly] == (True, "weekly of 2026-W22: younger than 30 days")
    assert verdicts(report)[new] == (True, "newest backup")
    later = prune(keyed_repo.repo, env=at(NOW + timedelta(days=400)))
    assert [b["id"] for b in keyed_repo.list()] == [new]
    assert later["freed_bytes"] > 0
    result = run_bika("verify", "--repo", str(keyed_repo.repo))
    assert result.returncode == 0, result.stderr


def test_prune_on_s3(moto: Server, database: str, tmp_path: Path) -> None:
    url = f"s3://{BUCKET}/prune-{os.urandom(4).hex()}"
    env = s3_env(moto.endpoint)
    key = tmp_path / "k.txt"
    assert (
        run_bika("init", "--repo", url, "--recipient", generate_identity(key), env=env).returncode
        == 0
    )

    def nightly(when: datetime) -> str:
        return backup(url, database, "--kind", "daily", env={**env, **at(when)})

    old = nightly(NOW - timedelta(days=9, hours=1))  # Thursday: neither first of week nor month
    nightly(NOW - timedelta(days=10))  # the Wednesday before it: the week's weekly
    nightly(datetime(2026, 6, 1, 2, tzinfo=UTC))  # June's monthly
    new = nightly(NOW - timedelta(hours=1))
    report = prune(url, env={**env, **at(NOW)})
    assert [b["id"] for b in report["backups"] if not b["keep"]] == [old]
    prefix = url.split("/", 3)[3]
    keys = [
        o["Key"]
        for o in moto_client(moto.endpoint).list_objects_v2(Bucket=BUCKET, Prefix=prefix)[
            "Contents"
        ]
    ]
    assert not [k for k in keys if old in k]
    assert any(new in k for k in keys)
    assert [k for k in keys if "/events/" in k], "no run log on S3"
    assert not [k for k in keys if "/locks/" in k], "the lock was not released"


def _start_backup(repo: Path, url: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("BIKA_")}
    return subprocess.Popen(
        [sys.executable, "-m", "bika", "backup", "--repo", str(repo), "--db", url],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**environ, **(env or {})},
        start_new_session=True,
    )


def test_leftovers_of_a_killed_backup_go_once_they_are_a_day_old(
    keyed_repo: KeyedRepo, slow_database: str
) -> None:
    repo = keyed_repo.repo
    proc = _start_backup(repo, slow_database)
    wait_for_partial(repo, proc)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    temp = list((repo / "backups").rglob(".tmp-*"))
    assert temp, "the killed backup left nothing to clean"

    fresh = prune(repo)
    assert fresh["leftovers"] == [], "removed leftovers of what may be a running backup"
    assert all(p.exists() for p in temp)

    tomorrow = datetime.now(UTC) + timedelta(days=1, hours=1)
    report = prune(repo, env=at(tomorrow))
    assert {i["why"] for i in report["leftovers"]} == {"temp file of an interrupted write"}
    assert report["freed_bytes"] >= sum(1 << 20 for _ in temp)
    assert not list((repo / "backups").iterdir()), "the killed backup's folder is still there"


def test_a_backup_running_while_prune_runs_keeps_its_backup(
    keyed_repo: KeyedRepo, database: str, slow_database: str
) -> None:
    repo = keyed_repo.repo
    earlier = [backup(repo, database, "--kind", "daily") for _ in range(2)]
    proc = _start_backup(repo, slow_database)
    wait_for_partial(repo, proc)
    # hold the backup where it is (its half-written artifact in place) while prune runs, so the
    # two overlap however fast this machine is
    os.killpg(proc.pid, signal.SIGSTOP)
    try:
        report = prune(repo, "--keep-daily", "0", "--keep-weekly", "0", "--keep-monthly", "0")
    finally:
        os.killpg(proc.pid, signal.SIGCONT)
    assert proc.poll() is None, "the backup ended before the prune did: nothing overlapped"
    assert [b["id"] for b in report["backups"] if not b["keep"]] == earlier[:1]
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    running = out.strip().splitlines()[-1]
    assert [b["id"] for b in keyed_repo.list()] == [earlier[1], running]
    result = run_bika("verify", "--repo", str(repo), running)
    assert result.returncode == 0, result.stderr


# --- run log -------------------------------------------------------------------------------


def test_every_backup_run_is_logged_failed_ones_included(
    keyed_repo: KeyedRepo, database: str
) -> None:
    repo = keyed_repo.repo
    backup_id = backup(repo, database, "--kind", "daily")
    wrong = database.replace("s3cret-pw", "not-the-password")
    result = run_bika("backup", "--repo", str(repo), "--db", wrong)
    assert result.returncode == 1
    ok, failed = [e for e in events(repo) if e["command"] == "backup"]
    assert ok["outcome"] == "ok" and ok["backup_ids"] == [backup_id]
    assert ok["detail"]["kind"] == "daily"
    assert failed["outcome"] == "failed" and failed["backup_ids"] == []
    assert "password authentication failed" in failed["error"]
    assert "\n" not in failed["error"]
    for event in (ok, failed):
        raw = json.dumps(event)
        assert "s3cret-pw" not in raw and "not-the-password" not in raw
        assert event["host"] == socket.gethostname()
        assert event["user"] and event["pid"] > 0 and event["bika_version"]
        assert event["repository_id"] == json.loads((repo / "bika.json").read_text())["id"]
        assert event["duration_seconds"] >= 0
    # the run log is a hash chain: each event names the one before it
    first, second = sorted((repo / "events").glob("*.json"))[-2:]
    assert json.loads(second.read_text())["prev"] == hashlib.sha256(first.read_bytes()).hexdigest()


def test_a_run_that_cannot_reach_its_repository_is_logged_by_the_next_run(
    moto: Server, tmp_path: Path
) -> None:
    url = f"s3://{BUCKET}/pending-{os.urandom(4).hex()}"
    env = s3_env(moto.endpoint)
    state = tmp_path / "state"
    key = tmp_path / "k.txt"
    assert (
        run_bika("init", "--repo", url, "--recipient", generate_identity(key), env=env).returncode
        == 0
    )
    (tmp_path / "bika.toml").write_text("[storage]\nmax_retries = 0\nretry_timeout = 1\n")
    gone = {**env, "AWS_ENDPOINT_URL": "http://127.0.0.1:9", "XDG_STATE_HOME": str(state)}
    result = run_bika("prune", "--repo", url, cwd=tmp_path, env=gone)
    assert result.returncode == 1
    pending = state / "bika" / "pending-events"
    kept = list(pending.rglob("*.json"))
    assert len(kept) == 1

    result = run_bika(
        "prune", "--repo", url, cwd=tmp_path, env={**env, "XDG_STATE_HOME": str(state)}
    )
    assert result.returncode == 0, result.stderr
    assert not list(pending.rglob("*.json")), "the pending event was not uploaded"
    prefix = url.split("/", 3)[3] + "/events/"
    listed = moto_client(moto.endpoint).list_objects_v2(Bucket=BUCKET, Prefix=prefix)["Contents"]
    bodies = [
        json.loads(
            moto_client(moto.endpoint).get_object(Bucket=BUCKET, Key=o["Key"])["Body"].read()
        )
        for o in listed
    ]
    assert sorted(b["outcome"] for b in bodies) == ["failed", "ok"]
    unreachable = next(b for b in bodies if b["outcome"] == "failed")
    assert unreachable["repository_id"] is not None  # filled in on upload


def test_a_months_first_backup_lands_in_the_monthly_class(
    moto: Server, database: str, tmp_path: Path
) -> None:
    url = f"s3://{BUCKET}/classes-{os.urandom(4).hex()}"
    env = s3_env(moto.endpoint)
    (tmp_path / "bika.toml").write_text(
        '[storage.classes]\nmonthly = "GLACIER_IR"\ndaily = "STANDARD_IA"\n'
    )
    key = tmp_path / "k.txt"
    init = run_bika("init", "--repo", url, "--recipient", generate_identity(key), env=env)
    assert init.returncode == 0, init.stderr

    def nightly(when: datetime) -> str:
        result = run_bika(
            "backup", "--repo", url, "--db", database, "--kind", "daily",
            cwd=tmp_path, env={**env, **at(when)},
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        return result.stdout.strip().splitlines()[-1]

    first = nightly(datetime(2026, 6, 1, 2, tzinfo=UTC))
    second = nightly(datetime(2026, 6, 2, 2, tzinfo=UTC))
    client = moto_client(moto.endpoint)
    prefix = url.split("/", 3)[3]

    def class_of(backup_id: str, name: str) -> str:
        head = client.head_object(Bucket=BUCKET, Key=f"{prefix}/backups/{backup_id}/{name}")
        return str(head.get("StorageClass", "STANDARD"))

    assert class_of(first, "database.pgdump.zst.age") == "GLACIER_IR"
    assert class_of(second, "database.pgdump.zst.age") == "STANDARD_IA"
    assert class_of(first, "manifest.json") == "STANDARD"  # listing never waits for a restore


def test_copy_drill_and_restore_runs_are_logged_too(keyed_repo: KeyedRepo, tmp_path: Path) -> None:
    repo = keyed_repo.repo
    backup_id = plant(repo, "daily", NOW - timedelta(hours=1))
    other = tmp_path / "second"
    copied = run_bika("copy", "--repo", str(repo), "--to", str(other), "--init")
    assert copied.returncode == 0, copied.stderr
    # without a key, drill and restore fail once they have opened the repository
    drill = run_bika("drill", "--repo", str(repo))
    restore = run_bika(
        "restore", "--repo", str(repo), "--latest", "--to-file", str(tmp_path / "o.sql")
    )
    assert drill.returncode == 2 and restore.returncode == 2
    logged = {e["command"]: e for e in events(repo)}
    assert logged["copy"]["outcome"] == "ok"
    assert logged["copy"]["backup_ids"] == [backup_id]
    assert logged["copy"]["detail"]["destination"] == str(other)
    for command in ("drill", "restore"):
        assert logged[command]["outcome"] == "failed"
        assert "private key" in logged[command]["error"]
        assert logged[command]["backup_ids"] == [backup_id]
    assert not (other / "events").exists(), "copy logged in its destination"


def test_the_lock_renews_its_lease_and_stops_when_broken(keyed_repo: KeyedRepo) -> None:
    repository = Repository.open(LocalStorage(keyed_repo.repo))
    clock = [NOW]
    with exclusive_lock(repository, "prune", now=lambda: clock[0]) as lock:
        first = lock.key
        lock.renew()
        assert lock.key == first, "renewed before it was due"
        clock[0] += timedelta(minutes=11)
        lock.renew()
        assert lock.key != first
        assert [i.key for i in repository.storage.list("locks/")] == [lock.key]
        record = json.loads(read_bytes(repository.storage, lock.key))
        assert datetime.fromisoformat(record["expires_at"]) == clock[0] + timedelta(minutes=30)
        repository.storage.delete(lock.key)  # another host's --break-lock
        with pytest.raises(RepositoryLocked, match="broken by another process"):
            lock.renew()
    assert list(repository.storage.list("locks/")) == []
