"""Point-in-time recovery end to end: a base backup (`bika backup --physical`), WAL archived by
`bika wal push`, and `bika restore --physical --time T --start`, on PostgreSQL 15 and 18.

A marker row is committed once a second; recovering to a time between two markers must bring
back every marker up to it and none after it.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from subprocess import CompletedProcess
from typing import Any

import pytest
from archiving import ArchivingServer, archiving_server, server_user
from conftest import PG15_BIN

from bika.crypto import load_identities, parse_recipients
from bika.postgres import binaries
from bika.postgres.cluster import Cluster, _free_port
from bika.signing import generate_signing_key
from bika.stream import decode, encode

from helpers import assert_clean_error, run_bika

pytestmark = pytest.mark.server

MARKERS = 6


@pytest.fixture(params=["pg18", "pg15"], scope="module")
def source(request: pytest.FixtureRequest) -> Iterator[ArchivingServer]:
    bin_dir = None if request.param == "pg18" else PG15_BIN
    # 18 summarizes its WAL, for incremental backups
    settings = {"summarize_wal": "on"} if request.param == "pg18" else {}
    with (
        pytest.MonkeyPatch.context() as monkeypatch,
        archiving_server(bin_dir, monkeypatch, **settings) as server,
    ):
        yield server


def _fetch_key(server: ArchivingServer) -> Path:
    """The identity, where the server's OS user (which runs restore_command) can read it."""
    key = server.home / "fetch-key.txt"
    if not key.exists():
        shutil.copy(server.key, key)
        user = server_user()
        if user is not None:
            os.chown(key, user.pw_uid, user.pw_gid)
    return key


def _restored(server: ArchivingServer, data_dir: Path) -> Cluster:
    """Start the recovered data directory as a server of the source's version."""
    bin_dir = server.cluster.bin_dir
    socket_dir = server.home / f"socket-{data_dir.name}"
    socket_dir.mkdir()
    user = server_user()
    if user is not None:
        os.chown(socket_dir, user.pw_uid, user.pw_gid)
    cluster = Cluster(
        bin_dir,
        data_dir,
        _free_port("127.0.0.1"),
        version=binaries.tool_version(bin_dir / "postgres"),
        socket_dir=socket_dir,
        os_user=user,
    )
    cluster.start()
    return cluster


def test_restore_to_a_second_brings_back_every_marker_up_to_it_and_none_after(
    source: ArchivingServer,
) -> None:
    db = source.cluster.url()
    source.cluster.execute("CREATE TABLE marker (n int PRIMARY KEY, at timestamptz)")
    backup = run_bika("backup", "--physical", "--db", db, "--json", env=source.env())
    assert backup.returncode == 0, backup.stderr
    manifest = json.loads(backup.stdout)["backup"]
    assert manifest["kind"] == "physical"
    sysid = source.cluster.query("SELECT system_identifier::text FROM pg_control_system()")
    assert manifest["source"]["system_identifier"] == sysid[0][0]
    times = []
    for n in range(1, MARKERS + 1):
        source.cluster.execute(f"INSERT INTO marker VALUES ({n}, clock_timestamp())")
        times.append(source.cluster.query(f"SELECT at FROM marker WHERE n = {n}")[0][0])
        time.sleep(1)
    source.switch_and_wait()
    cut = 3
    target = times[cut - 1] + timedelta(milliseconds=500)
    data_dir = source.home / "restored"
    done = run_bika(
        "restore",
        "--physical",
        "--time",
        target.isoformat(),
        "--to-dir",
        str(data_dir),
        "--start",
        "--json",
        env=source.env(BIKA_IDENTITY=str(_fetch_key(source))),
        timeout=600,
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["backup"] == manifest["id"]
    assert result["timeline"] == 1
    assert result["recovered"]["timeline"] == 2
    restored = _restored(source, data_dir)
    try:
        rows = restored.query("SELECT n FROM marker ORDER BY n")
        assert [r[0] for r in rows] == list(range(1, cut + 1))
        assert restored.query("SELECT pg_is_in_recovery()")[0][0] is False
        assert restored.query("SHOW archive_mode")[0][0] == "off"
    finally:
        restored.remove()


def test_a_target_outside_the_archive_is_refused_naming_the_window(
    source: ArchivingServer,
) -> None:
    env = source.env(BIKA_IDENTITY=str(_fetch_key(source)))
    backup = run_bika("backup", "--physical", "--db", source.cluster.url(), env=env)
    assert backup.returncode == 0, backup.stderr
    source.switch_and_wait()
    for when, said in (
        ("2000-01-01 00:00:00+00", "before the oldest physical backup"),
        ("2999-01-01 00:00:00+00", "after the last archived WAL"),
    ):
        done = run_bika(
            "restore", "--physical", "--time", when, "--to-dir", str(source.home / "x"), env=env
        )
        assert done.returncode != 0
        assert said in done.stderr, done.stderr
        assert "recoverable" in done.stderr
        assert not (source.home / "x").exists()


def test_physical_drill_recovers_the_archive_checks_and_records(source: ArchivingServer) -> None:
    env = source.env()
    backup = run_bika("backup", "--physical", "--db", source.cluster.url(), "--json", env=env)
    assert backup.returncode == 0, backup.stderr
    backup_id = json.loads(backup.stdout)["backup"]["id"]
    source.cluster.execute("CREATE TABLE drilled AS SELECT generate_series(1, 4321) AS n")
    source.switch_and_wait()
    done = run_bika("drill", "--physical", backup_id, "--json", env=env, timeout=600)
    assert done.returncode == 0, done.stderr
    record = json.loads(done.stdout)
    assert record["ok"] and record["passed"]
    assert record["amcheck"] == "ok"
    assert record["timeline"] >= 2
    assert record["rows"] >= 4321
    assert record["rto_seconds"] >= record["restore_seconds"]
    assert record["rpo_seconds"] is not None
    drills = list((source.repo / "physical" / backup_id / "drills").glob("*.json"))
    assert len(drills) == 1
    # the drill archived nothing into the source's repository
    assert not list((source.repo / "wal" / "history").glob("*")) or all(
        p.name.startswith("00000001") for p in (source.repo / "wal" / "history").glob("*")
    )


def test_prune_keeps_the_wal_every_kept_physical_backup_needs(source: ArchivingServer) -> None:
    env = source.env()
    ids = []
    for _ in range(2):
        done = run_bika("backup", "--physical", "--db", source.cluster.url(), "--json", env=env)
        assert done.returncode == 0, done.stderr
        ids.append(json.loads(done.stdout)["backup"])
        source.switch_and_wait()
    later = (datetime.now(UTC) + timedelta(days=30)).strftime("%Y-%m-%dT%H:%M:%SZ")
    future = {**env, "BIKA_NOW": later, "BIKA_RETENTION__PITR_WINDOW": "7d"}
    needed = ids[-1]["wal"]["start_segment"]

    def older() -> list[Path]:
        return [p for p in source.wal_objects() if "history" not in str(p) and p.name < needed]

    assert older()
    dry = run_bika("prune", "--dry-run", "--json", env=future)
    assert dry.returncode == 0, dry.stderr
    assert older()
    done = run_bika("prune", "--json", env=future)
    assert done.returncode == 0, done.stderr
    verdicts = {b["id"]: b["keep"] for b in json.loads(done.stdout)["backups"]}
    assert verdicts[ids[-1]["id"]] is True
    assert verdicts[ids[0]["id"]] is False
    assert not (source.repo / "physical" / ids[0]["id"] / "manifest.json").exists()
    assert (source.repo / "physical" / ids[-1]["id"] / "manifest.json").exists()
    assert older() == []
    status = run_bika("wal", "status", "--json", env=env)
    assert status.returncode == 0, status.stdout


def test_a_missing_middle_segment_is_named_by_status_and_restore(source: ArchivingServer) -> None:
    env = source.env(BIKA_IDENTITY=str(_fetch_key(source)))
    backup = run_bika("backup", "--physical", "--db", source.cluster.url(), "--json", env=env)
    assert backup.returncode == 0, backup.stderr
    stop = json.loads(backup.stdout)["backup"]["wal"]["stop_segment"]
    ok = run_bika("wal", "status", "--json", env=env)
    assert ok.returncode == 0, ok.stdout
    source.switch_and_wait(3)
    later = sorted(p for p in source.wal_objects() if p.name[:24] > stop and "." not in p.name[:25])
    middle = later[len(later) // 2]
    middle.unlink()
    missing = middle.name[:24]
    status = run_bika("wal", "status", "--json", env=env)
    assert status.returncode == 2, status.stdout
    state = json.loads(status.stdout)
    assert state["backups"][-1]["missing_segment"] == missing
    # the newest backup's gap is critical (an older backup's would only warn)
    errors = [f for f in state["findings"] if f["level"] == "error"]
    assert len(errors) == 1 and missing in errors[0]["message"]
    shown = run_bika("wal", "status", env=env)
    assert missing in shown.stdout
    check = run_bika("check", "--json", env=env)
    wal = [f for f in json.loads(check.stdout)["findings"] if f["what"] == "wal"]
    assert wal and wal[-1]["level"] == "error" and missing in wal[-1]["message"]
    refused = run_bika(
        "restore", "--physical", "--latest", "--to-dir", str(source.home / "gap"), env=env
    )
    assert refused.returncode != 0
    assert f"segment {missing} is missing" in refused.stderr
    assert "recoverable from" in refused.stderr


def test_physical_manifests_are_signed_and_a_pinned_host_refuses_unsigned_or_replaced_ones(
    source: ArchivingServer, tmp_path: Path
) -> None:
    key = tmp_path / "signing.key"
    public = generate_signing_key(key)
    other = generate_signing_key(tmp_path / "other.key")
    env = source.env(BIKA_IDENTITY=str(_fetch_key(source)))
    backup = run_bika(
        "backup", "--physical", "--db", source.cluster.url(), "--json",
        env={**env, "BIKA_SIGNING_KEY": str(key)},
    )  # fmt: skip
    assert backup.returncode == 0, backup.stderr
    backup_id = json.loads(backup.stdout)["backup"]["id"]
    user = server_user()
    if user is not None:  # the backup recorded its signer in bika.json, which wal push reads
        os.chown(source.repo / "bika.json", user.pw_uid, user.pw_gid)
    source.switch_and_wait()
    folder = source.repo / "physical" / backup_id
    assert json.loads((folder / "manifest.json.sig").read_text())["signer"] == public
    pinned = {**env, "BIKA_TRUSTED_SIGNERS": public}

    def restore(into: str, environment: dict[str, str], *extra: str) -> CompletedProcess[str]:
        to_dir = source.home / f"signed-{into}-{source.cluster.port}"
        args = ("restore", "--physical", backup_id, "--latest", "--to-dir", str(to_dir))
        return run_bika(*args, *extra, env=environment)

    strange = restore("other", {**env, "BIKA_TRUSTED_SIGNERS": other})
    assert_clean_error(strange, "a key this host does not trust")
    # an edited manifest, then an unsigned one
    manifest = folder / "manifest.json"
    original = manifest.read_bytes()
    manifest.write_bytes(original.replace(b'"files": ', b'"files": 1'))
    assert_clean_error(restore("edited", pinned), "does not match its signature")
    status = run_bika("wal", "status", env=pinned)  # and monitoring says so, not only restore
    assert status.returncode != 0, status.stdout
    assert f"backup {backup_id} cannot be read" in status.stdout
    assert "does not match its signature" in status.stdout
    manifest.write_bytes(original)
    (folder / "manifest.json.sig").rename(folder / "kept.sig")
    assert_clean_error(restore("unsigned", pinned), "--trust-unsigned")
    # a base backup replaced by one with the same plaintext, encrypted again: the manifest's
    # hashes (which the signature covers) no longer match it
    base = folder / "base.tar.zst.age"
    plain = io.BytesIO()
    identities = load_identities(source.key)
    with base.open("rb") as stored:
        decode(stored, plain, identities, name="base")
    with (folder / "again.age").open("wb") as sink:
        encode(io.BytesIO(plain.getvalue()), sink, parse_recipients([source.recipient]))
    base.rename(folder / "base.kept")
    (folder / "again.age").rename(base)
    replaced = restore("replaced", pinned, "--trust-unsigned")
    assert_clean_error(replaced, "does not match the backup's manifest")
    base.unlink()
    (folder / "base.kept").rename(base)
    (folder / "kept.sig").rename(folder / "manifest.json.sig")
    done = restore("ok", pinned)
    assert done.returncode == 0, done.stderr


def _backup(source: ArchivingServer, *extra: str) -> dict[str, Any]:
    db = source.cluster.url()
    done = run_bika("backup", "--physical", "--db", db, *extra, "--json", env=source.env())
    assert done.returncode == 0, done.stderr
    manifest: dict[str, Any] = json.loads(done.stdout)["backup"]
    return manifest


def test_an_incremental_restores_combined_with_its_full_to_a_point(
    source: ArchivingServer,
) -> None:
    if source.cluster.version.startswith("15"):
        refused = run_bika(
            "backup", "--physical", "--incremental", "--db", source.cluster.url(), env=source.env()
        )
        assert refused.returncode != 0, refused.stderr
        assert "incremental backups need 17 or newer" in refused.stderr
        assert "Traceback" not in refused.stderr
        return
    full = _backup(source)
    source.cluster.execute("CREATE TABLE counted AS SELECT generate_series(1, 1000) AS n")
    incremental = _backup(source, "--incremental")
    assert (incremental["kind"], incremental["parent"]) == ("incremental", full["id"])
    assert incremental["chain"] == [full["id"]]
    assert incremental["artifacts"]["base"]["plain_size"] < full["artifacts"]["base"]["plain_size"]
    source.cluster.execute("INSERT INTO counted SELECT generate_series(1001, 1200)")
    lsn = source.cluster.query("SELECT pg_current_wal_lsn()::text")[0][0]
    source.cluster.execute("INSERT INTO counted SELECT generate_series(1201, 1500)")
    source.switch_and_wait()
    env = source.env(BIKA_IDENTITY=str(_fetch_key(source)))
    data_dir = source.home / "combined"
    done = run_bika(
        "restore",
        "--physical",
        "--lsn",
        lsn,
        "--to-dir",
        str(data_dir),
        "--start",
        "--json",
        env=env,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["backup"] == incremental["id"]
    assert not list(source.home.glob(".bika-combine-*"))
    restored = _restored(source, data_dir)
    try:
        assert restored.query("SELECT count(*), max(n) FROM counted")[0] == (1200, 1200)
    finally:
        restored.remove()
    drilled = run_bika("drill", "--physical", incremental["id"], "--json", env=env, timeout=600)
    assert drilled.returncode == 0, drilled.stderr
    assert json.loads(drilled.stdout)["rows"] >= 1500
    # list, show and check know physical backups
    listed = json.loads(run_bika("list", "--json", env=env).stdout)
    entries = {b["id"]: b for b in listed["physical"]}
    assert (entries[incremental["id"]]["kind"], entries[incremental["id"]]["parent"]) == (
        "incremental",
        full["id"],
    )
    assert entries[incremental["id"]]["drill"]["passed"] is True
    assert entries[full["id"]]["drill"] is None
    table = run_bika("list", env={**env, "COLUMNS": "250"})
    assert table.returncode == 0, table.stderr
    assert "physical backups in" in table.stdout and f"incremental of {full['id']}" in table.stdout
    shown = run_bika("show", incremental["id"][:-2], env=env)
    assert shown.returncode == 0, shown.stderr
    assert f"builds on   {full['id']}" in shown.stdout
    assert incremental["wal"]["start_lsn"] in shown.stdout
    check = json.loads(run_bika("check", "--json", env=env).stdout)
    fresh = [f for f in check["findings"] if f["what"] == "freshness"]
    assert [f["level"] for f in fresh] == ["ok"] and "physical" in fresh[0]["message"]
    drill = [f for f in check["findings"] if f["what"] == "drill"]
    assert [f["level"] for f in drill] == ["ok"] and "physical drill" in drill[0]["message"]


@pytest.mark.parametrize("source", ["pg18"], indirect=True)  # 15 takes no incrementals
def test_an_incremental_whose_full_backup_is_gone_is_refused(source: ArchivingServer) -> None:
    full = _backup(source)
    incremental = _backup(source, "--incremental")
    manifest = source.repo / "physical" / full["id"] / "manifest.json"
    aside = manifest.with_name("aside.json")
    manifest.rename(aside)
    try:
        env = source.env(BIKA_IDENTITY=str(_fetch_key(source)))
        target = source.home / "orphan"
        refused = run_bika("restore", "--physical", "--latest", "--to-dir", str(target), env=env)
        assert refused.returncode != 0
        assert f"{incremental['id']} builds on {full['id']}" in refused.stderr
        assert "not in the repository" in refused.stderr
        assert not target.exists()
        again = run_bika(
            "backup", "--physical", "--incremental", "--db", source.cluster.url(), env=env
        )
        assert again.returncode != 0
        assert "take a full backup" in again.stderr
    finally:
        aside.rename(manifest)


def test_a_cluster_with_tablespaces_is_refused_naming_them(source: ArchivingServer) -> None:
    location = source.home / "spare-space"
    location.mkdir()
    user = server_user()
    if user is not None:
        os.chown(location, user.pw_uid, user.pw_gid)
    source.cluster.execute(f"CREATE TABLESPACE spare LOCATION '{location}'")
    try:
        done = run_bika("backup", "--physical", "--db", source.cluster.url(), env=source.env())
        assert done.returncode != 0
        assert "tablespaces besides pg_default (spare)" in done.stderr
        assert "Traceback" not in done.stderr
    finally:
        source.cluster.execute("DROP TABLESPACE spare")


def test_a_second_restore_after_a_fork_asks_for_the_timeline(source: ArchivingServer) -> None:
    env = source.env(BIKA_IDENTITY=str(_fetch_key(source)))
    backup = run_bika("backup", "--physical", "--db", source.cluster.url(), env=env)
    assert backup.returncode == 0, backup.stderr
    source.switch_and_wait()
    first = source.home / "first"
    done = run_bika("restore", "--physical", "--latest", "--to-dir", str(first), "--start", env=env)
    assert done.returncode == 0, done.stderr
    # the promoted copy's timeline history reaches the repository (a copy started with
    # archiving on, as happens): timeline 1 now has a child
    history = first / "pg_wal" / "00000002.history"
    pushed = run_bika("wal", "push", str(history), env=env)
    source.hand_back()
    assert pushed.returncode == 0, pushed.stderr
    second = source.home / "second"
    refused = run_bika("restore", "--physical", "--latest", "--to-dir", str(second), env=env)
    assert refused.returncode != 0
    assert "forked later into timeline 2" in refused.stderr
    assert "--timeline" in refused.stderr
    chosen = run_bika(
        "restore", "--physical", "--latest", "--timeline", "1", "--to-dir", str(second), env=env
    )
    assert chosen.returncode == 0, chosen.stderr
    settings = (second / "postgresql.auto.conf").read_text()
    assert "recovery_target_timeline = '1'" in settings
    assert "'latest'" not in settings
    assert (second / "recovery.signal").exists()
