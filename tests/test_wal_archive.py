"""`bika wal push` / `bika wal fetch`: PostgreSQL's archive_command and restore_command.

Real servers (PostgreSQL 15 and the embedded 18) archive through `bika wal push %p` run as the
server's OS user; the exit codes are the ones PostgreSQL acts on.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pyrage
import pytest
import zstandard
from archiving import ArchivingServer, archiving_server
from conftest import PG15_BIN

from bika.crypto import generate_identity
from bika.wal import names

from helpers import run_bika
from storage.servers import BUCKET, Server, moto_client, s3_env

pytestmark = pytest.mark.server

FORBIDDEN = ("click", "pydantic", "psycopg", "rich", "bika.cli", "bika.config", "bika.storage")


# -- pure --------------------------------------------------------------------------------


def test_object_keys_name_the_folder_segment_and_plaintext_sha() -> None:
    sha = "a" * 64
    assert names.object_key("000000010000000200000003", sha) == (
        f"wal/0000000100000002/000000010000000200000003-{sha}.zst.age"
    )
    history = names.object_key("00000002.history", sha)
    assert history == f"wal/history/00000002.history-{sha}.zst.age"
    backup = "000000010000000000000003.00000028.backup"
    assert names.folder(backup) == "wal/0000000100000000/"
    assert names.parse_object(names.object_key(backup, sha)) == (backup, sha)
    assert names.parse_object("wal/cluster.json") is None
    # the listing of a segment does not show its .backup file, and vice versa
    assert not names.object_key(backup, sha).startswith(
        names.listing_prefix("000000010000000000000003")
    )
    with pytest.raises(ValueError):
        names.folder("pg_wal/RECOVERYXLOG")


def test_segment_arithmetic_matches_postgresql() -> None:
    size = 16 * 1024 * 1024
    segment = names.parse_segment("0000000200000001000000FF", size)
    assert segment.name(size) == "0000000200000001000000FF"
    assert names.Segment(2, segment.number + 1).name(size) == "000000020000000200000000"
    lsn = names.parse_lsn("1/FF000028")
    assert names.segment_of_lsn(lsn, 2, size) == segment
    assert names.format_lsn(lsn) == "1/FF000028"


# -- the lean path -----------------------------------------------------------------------


def test_wal_push_imports_no_cli_models_or_database_driver(tmp_path: Path) -> None:
    segment = tmp_path / "000000010000000000000001"
    segment.write_bytes(b"\0" * 100)
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "bika", "wal", "push", str(segment)],
        capture_output=True,
        text=True,
        env={**os.environ, "BIKA_REPO": str(tmp_path / "missing")},
        check=False,
    )
    assert done.returncode == 1
    imported = re.findall(r"^import time:\s+\d+ \|\s+\d+ \|\s*(\S+)$", done.stderr, re.M)
    assert "bika.wal.command" in imported
    heavy = [m for m in imported if any(m == f or m.startswith(f + ".") for f in FORBIDDEN)]
    assert heavy == []
    assert done.stderr.strip().splitlines()[-1].startswith("bika: error: wal push:")


def test_wal_fetch_usage_error_stops_recovery() -> None:
    done = run_bika("wal", "fetch", "only-one-argument")
    assert done.returncode == 126
    assert "usage: bika wal fetch" in done.stderr


def test_wal_fetch_storage_down_exits_above_125(tmp_path: Path) -> None:
    key = tmp_path / "key.txt"
    generate_identity(key)
    done = run_bika(
        "wal",
        "fetch",
        "000000010000000000000001",
        str(tmp_path / "out"),
        env={
            "BIKA_REPO": "s3://bucket/prefix",
            "BIKA_IDENTITY": str(key),
            "BIKA_STORAGE__ENDPOINT": "http://127.0.0.1:9",
            "BIKA_STORAGE__MAX_RETRIES": "0",
        },
    )
    assert done.returncode == 126, done.stderr
    assert "Traceback" not in done.stderr
    assert done.stderr.startswith("bika: error: wal fetch: cannot list")


# -- against real servers ----------------------------------------------------------------


@pytest.fixture(params=["pg18", "pg15"], scope="module")
def archiving(request: pytest.FixtureRequest) -> Iterator[ArchivingServer]:
    bin_dir = None if request.param == "pg18" else PG15_BIN
    with (
        pytest.MonkeyPatch.context() as monkeypatch,
        archiving_server(bin_dir, monkeypatch) as server,
    ):
        yield server


def _plaintext(server: ArchivingServer, obj: Path) -> bytes:
    identity = pyrage.x25519.Identity.from_str(server.key.read_text().splitlines()[-1])
    plain = pyrage.decrypt(obj.read_bytes(), [identity])
    return bytes(zstandard.ZstdDecompressor().decompress(plain))


def _stored(server: ArchivingServer, name: str) -> list[Path]:
    return [p for p in server.wal_objects() if p.name.startswith(name + "-")]


def test_server_archives_each_segment_once_encrypted_under_its_sha(
    archiving: ArchivingServer,
) -> None:
    last = archiving.switch_and_wait(3)
    objects = _stored(archiving, last)
    assert len(objects) == 1
    plain = _plaintext(archiving, objects[0])
    assert len(plain) == 16 * 1024 * 1024
    assert objects[0].name == f"{last}-{hashlib.sha256(plain).hexdigest()}.zst.age"
    header = names.read_header(plain)
    assert header is not None
    sysid = archiving.cluster.query("SELECT system_identifier FROM pg_control_system()")[0][0]
    assert header.system_identifier == sysid
    assert f'"system_identifier": "{sysid}"' in (archiving.repo / "wal/cluster.json").read_text()
    failed = archiving.cluster.query("SELECT failed_count FROM pg_stat_archiver")[0][0]
    assert failed == 0


def _segment_file(server: ArchivingServer, tmp_path: Path, name: str) -> Path:
    """A copy of an archived segment, as PostgreSQL would hand it to archive_command."""
    (obj,) = _stored(server, name)
    wal = tmp_path / "pg_wal"
    wal.mkdir(exist_ok=True)
    path = wal / name
    path.write_bytes(_plaintext(server, obj))
    return path


def test_pushing_the_same_segment_again_succeeds_and_stores_nothing(
    archiving: ArchivingServer, tmp_path: Path
) -> None:
    name = archiving.switch_and_wait()
    path = _segment_file(archiving, tmp_path, name)
    before = archiving.wal_objects()
    done = run_bika("wal", "push", str(path), env=archiving.env())
    assert done.returncode == 0, done.stderr
    assert archiving.wal_objects() == before


def test_other_content_under_an_archived_name_fails_loudly(
    archiving: ArchivingServer, tmp_path: Path
) -> None:
    name = archiving.switch_and_wait()
    path = _segment_file(archiving, tmp_path, name)
    data = bytearray(path.read_bytes())
    data[100_000:100_016] = os.urandom(16)
    path.write_bytes(bytes(data))
    before = archiving.wal_objects()
    done = run_bika("wal", "push", str(path), env=archiving.env())
    assert done.returncode == 1
    assert "already archived with other content" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    assert archiving.wal_objects() == before


def test_a_segment_of_another_cluster_is_refused(
    archiving: ArchivingServer, tmp_path: Path
) -> None:
    name = archiving.switch_and_wait()
    path = _segment_file(archiving, tmp_path, name)
    data = bytearray(path.read_bytes())
    data[24:32] = (12345).to_bytes(8, "little")  # xlp_sysid of the long page header
    other = path.with_name("000000010000000F00000001")
    other.write_bytes(bytes(data))
    done = run_bika("wal", "push", str(other), env=archiving.env())
    assert done.returncode == 1
    assert "system identifier 12345" in done.stderr
    assert _stored(archiving, other.name) == []


def test_fetch_restores_the_bytes_and_says_not_there_with_1(
    archiving: ArchivingServer, tmp_path: Path
) -> None:
    name = archiving.switch_and_wait()
    (obj,) = _stored(archiving, name)
    out = tmp_path / "RECOVERYXLOG"
    done = run_bika("wal", "fetch", name, str(out), env=archiving.env())
    assert done.returncode == 0, done.stderr
    assert out.read_bytes() == _plaintext(archiving, obj)
    missing = run_bika("wal", "fetch", "00000009.history", str(out), env=archiving.env())
    assert missing.returncode == 1
    assert missing.stderr == ""


def test_fetch_with_the_wrong_key_stops_recovery(
    archiving: ArchivingServer, tmp_path: Path
) -> None:
    name = archiving.switch_and_wait()
    wrong = tmp_path / "wrong.txt"
    generate_identity(wrong)
    out = tmp_path / "RECOVERYXLOG"
    done = run_bika("wal", "fetch", name, str(out), env=archiving.env(BIKA_IDENTITY=str(wrong)))
    assert done.returncode >= 126
    assert "cannot decrypt" in done.stderr
    assert not out.exists()


def _data_dir(server: ArchivingServer, tmp_path: Path) -> Path:
    """A folder as PostgreSQL runs restore_command in: the cluster's pg_control, a pg_wal/."""
    data = tmp_path / "data"
    (data / "global").mkdir(parents=True)
    (data / "pg_wal").mkdir()
    shutil.copy(server.cluster.data_dir / "global" / "pg_control", data / "global")
    return data


def _spooled(state: Path, name: str, timeout: float = 60) -> Path:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = list(state.glob(f"bika/wal-spool/*/{name}-*"))
        if found:
            return found[0]
        time.sleep(0.05)
    raise AssertionError(f"the prefetcher did not spool {name} within {timeout} s")


def test_fetch_serves_prefetched_segments_checked_and_says_not_there_with_1(
    archiving: ArchivingServer, tmp_path: Path
) -> None:
    size = 16 * 1024 * 1024
    last = names.parse_segment(archiving.switch_and_wait(4), size)
    first, second, third, fourth, after = (
        names.Segment(last.timeline, last.number + i).name(size) for i in range(-3, 2)
    )
    data = _data_dir(archiving, tmp_path)
    state = tmp_path / "state"
    env = archiving.env(XDG_STATE_HOME=str(state), BIKA_WAL_PREFETCH_IDLE="5")
    out = data / "pg_wal" / "RECOVERYXLOG"

    def fetch(name: str) -> subprocess.CompletedProcess[str]:
        return run_bika("wal", "fetch", name, "pg_wal/RECOVERYXLOG", env=env, cwd=data)

    done = fetch(first)
    assert done.returncode == 0, done.stderr
    assert out.read_bytes() == _plaintext(archiving, _stored(archiving, first)[0])
    # the next one comes from the spool (0700, outside the data directory), even once it has
    # gone from the repository
    spooled = _spooled(state, second)
    assert spooled.parent.stat().st_mode & 0o777 == 0o700
    (obj,) = _stored(archiving, second)
    expected = _plaintext(archiving, obj)
    aside = obj.with_name(".aside")
    obj.rename(aside)
    try:
        done = fetch(second)
    finally:
        aside.rename(obj)
    assert done.returncode == 0, done.stderr
    assert out.read_bytes() == expected
    assert not spooled.exists()
    # a damaged spooled copy is not served: the segment comes from the repository instead
    spooled = _spooled(state, third)
    with spooled.open("r+b") as handle:
        handle.seek(9000)
        byte = handle.read(1)
        handle.seek(9000)
        handle.write(bytes([byte[0] ^ 0xFF]))
    done = fetch(third)
    assert done.returncode == 0, done.stderr
    assert "spooled copy of " + third + " was damaged" in done.stderr
    assert out.read_bytes() == _plaintext(archiving, _stored(archiving, third)[0])
    # taking a spooled segment reads no key and decrypts nothing: it imports neither
    _spooled(state, fourth)
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "bika", "wal", "fetch", fourth, str(out)],
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        cwd=data,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    imported = re.findall(r"^import time:\s+\d+ \|\s+\d+ \|\s*(\S+)$", done.stderr, re.M)
    assert "bika.wal.spool" in imported
    assert [m for m in imported if m in ("pyrage", "zstandard", "bika.wal.archive")] == []
    assert out.read_bytes() == _plaintext(archiving, _stored(archiving, fourth)[0])
    # past the end of the archive: 1, said by the repository, with the prefetcher running
    missing = fetch(after)
    assert missing.returncode == 1, missing.stderr
    assert missing.stderr == ""


def test_push_killed_mid_upload_then_retried_stores_once(
    archiving: ArchivingServer, tmp_path: Path
) -> None:
    name = archiving.switch_and_wait()
    real = _segment_file(archiving, tmp_path, name)
    # incompressible, so writing and fsyncing the object takes long enough to be caught
    data = real.read_bytes()[:8192] + os.urandom(16 * 1024 * 1024 - 8192)
    path = real.with_name("000000010000000E00000001")
    path.write_bytes(data)
    folder = archiving.repo / "wal" / "000000010000000E"
    env = {**os.environ, **archiving.env()}
    process = subprocess.Popen(
        [sys.executable, "-m", "bika", "wal", "push", "--no-look-ahead", str(path)], env=env
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and process.poll() is None:
        if folder.is_dir() and any(p.name.startswith(".tmp-") for p in folder.iterdir()):
            break
        time.sleep(0.0005)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert process.returncode == -signal.SIGKILL, "the push finished before it could be killed"
    assert _stored(archiving, path.name) == []
    retry = run_bika("wal", "push", str(path), env=archiving.env())
    assert retry.returncode == 0, retry.stderr
    (obj,) = _stored(archiving, path.name)
    assert _plaintext(archiving, obj) == data
    again = run_bika("wal", "push", str(path), env=archiving.env())
    assert again.returncode == 0
    assert len(_stored(archiving, path.name)) == 1


def test_push_and_fetch_through_s3(
    archiving: ArchivingServer, tmp_path: Path, moto: Server
) -> None:
    url = f"s3://{BUCKET}/wal-{uuid.uuid4().hex[:8]}"
    env = {**s3_env(moto.endpoint), "BIKA_IDENTITY": str(archiving.key)}
    init = run_bika("init", "--repo", url, "--recipient", archiving.recipient, env=env)
    assert init.returncode == 0, init.stderr
    name = archiving.switch_and_wait()
    path = _segment_file(archiving, tmp_path, name)
    for _ in range(2):  # the second finds it stored
        done = run_bika("wal", "push", "--repo", url, str(path), env=env)
        assert done.returncode == 0, done.stderr
    keys = [
        o["Key"]
        for o in moto_client(moto.endpoint).list_objects_v2(Bucket=BUCKET, Prefix=url[15:])[
            "Contents"
        ]
    ]
    assert len([k for k in keys if f"/{name}-" in k]) == 1
    out = tmp_path / "fetched"
    done = run_bika("wal", "fetch", "--repo", url, name, str(out), env=env)
    assert done.returncode == 0, done.stderr
    assert out.read_bytes() == path.read_bytes()
    missing = run_bika("wal", "fetch", "--repo", url, "000000010000000F00000009", str(out), env=env)
    assert missing.returncode == 1


def test_look_ahead_stores_the_next_ready_segments_and_leaves_a_note_for_each(
    archiving: ArchivingServer, tmp_path: Path
) -> None:
    real = _segment_file(archiving, tmp_path, archiving.switch_and_wait())
    wal = real.parent
    (wal / "archive_status").mkdir()
    header = real.read_bytes()[:8192]
    segments = []
    for number in range(1, 5):
        path = wal / f"000000010000000D0000000{number}"
        path.write_bytes(header + os.urandom(4096))
        (wal / "archive_status" / f"{path.name}.ready").touch()
        segments.append(path)
    first = run_bika("wal", "push", str(segments[0]), env=archiving.env())
    assert first.returncode == 0, first.stderr
    assert all(len(_stored(archiving, p.name)) == 1 for p in segments)
    notes = wal / "bika_archive_status"
    noted = sorted(p.name for p in notes.iterdir() if not p.name.startswith("."))
    assert noted == [p.name for p in segments[1:]]
    # PostgreSQL's later call for a noted segment: exit 0, the note consumed, nothing stored
    before = archiving.wal_objects()
    again = run_bika("wal", "push", str(segments[1]), env=archiving.env())
    assert again.returncode == 0, again.stderr
    assert not (notes / segments[1].name).exists()
    assert archiving.wal_objects() == before


def test_wal_receive_streams_over_a_slot_and_stores_each_finished_segment(
    archiving: ArchivingServer, tmp_path: Path
) -> None:
    repo = tmp_path / "received"
    init = run_bika("init", "--repo", str(repo), "--recipient", archiving.recipient)
    assert init.returncode == 0, init.stderr
    staging = tmp_path / "staging"
    slot = f"bika_test_{uuid.uuid4().hex[:8]}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("BIKA_")}
    argv = [sys.executable, "-m", "bika", "wal", "receive", "--repo", str(repo)]
    argv += ["--db", archiving.cluster.url(), "--slot", slot, "--synchronous"]
    receiver = subprocess.Popen(
        [*argv, "--staging", str(staging)], env=env, stderr=subprocess.PIPE, text=True
    )
    db = archiving.cluster
    try:
        deadline = time.monotonic() + 60
        while not db.query(f"SELECT active FROM pg_replication_slots WHERE slot_name = '{slot}'"):
            assert receiver.poll() is None, receiver.communicate()[1]
            assert time.monotonic() < deadline, "the slot was not created"
            time.sleep(0.1)
        server = ArchivingServer(db, repo, archiving.key, archiving.recipient, archiving.home)
        db.execute("CREATE TABLE IF NOT EXISTS received (t text)")
        for round_ in ("first", "after pg_receivewal was killed"):
            # a committed row's segment reaches the repository once the server switches
            marker = f"bika-receive-{uuid.uuid4().hex}"
            db.execute(f"INSERT INTO received VALUES ('{marker}')")
            name = str(db.query("SELECT pg_walfile_name(pg_current_wal_lsn())")[0][0])
            db.query("SELECT pg_switch_wal()")
            deadline = time.monotonic() + 60
            while not list((repo / "wal").glob(f"*/{name}-*.zst.age")):
                assert receiver.poll() is None, receiver.communicate()[1]
                assert time.monotonic() < deadline, f"{name} did not reach the repository"
                time.sleep(0.1)
            (obj,) = (repo / "wal").glob(f"*/{name}-*.zst.age")
            plain = _plaintext(server, obj)
            assert marker.encode() in plain, round_
            assert obj.name.startswith(f"{name}-{hashlib.sha256(plain).hexdigest()}")
            # a lost connection: the receiver restarts pg_receivewal, which resumes
            children = Path(f"/proc/{receiver.pid}/task/{receiver.pid}/children").read_text()
            for pid in children.split():
                os.kill(int(pid), signal.SIGKILL)
    finally:
        receiver.send_signal(signal.SIGTERM)
        _, stderr = receiver.communicate(timeout=60)
        db.execute(f"SELECT pg_drop_replication_slot('{slot}')")
    assert receiver.returncode == 0, stderr
    assert "stopped;" in stderr
    # staged files go once stored: at most the segment being received is left (beside the
    # folder of push's notes and cache, bika_archive_status/)
    left = [p.name for p in staging.iterdir() if p.is_file() and p.suffix != ".partial"]
    assert left == []


def test_a_server_without_archiving_is_backed_up_while_wal_receive_streams_it(
    tmp_path: Path,
) -> None:
    with (
        pytest.MonkeyPatch.context() as monkeypatch,
        archiving_server(None, monkeypatch, archive_mode="off") as server,
    ):
        db = server.cluster.url()
        refused = run_bika("backup", "--physical", "--db", db, env=server.env())
        assert refused.returncode != 0
        assert "nor streams it over a replication slot" in refused.stderr
        assert "bika wal receive" in refused.stderr
        slot = f"bika_test_{uuid.uuid4().hex[:8]}"
        env = {k: v for k, v in os.environ.items() if not k.startswith("BIKA_")}
        argv = [sys.executable, "-m", "bika", "wal", "receive", "--repo", str(server.repo)]
        argv += ["--db", db, "--slot", slot, "--staging", str(tmp_path / "staging")]
        receiver = subprocess.Popen(argv, env=env, stderr=subprocess.PIPE, text=True)
        try:
            deadline = time.monotonic() + 60
            query = f"SELECT 1 FROM pg_replication_slots WHERE slot_name = '{slot}' AND active"
            while not server.cluster.query(query):
                assert receiver.poll() is None, receiver.communicate()[1]
                assert time.monotonic() < deadline, "the slot was not in use"
                time.sleep(0.1)
            done = run_bika("backup", "--physical", "--db", db, "--json", env=server.env())
            assert done.returncode == 0, done.stderr
            backup_id = json.loads(done.stdout)["backup"]["id"]
            # its WAL is in the repository: the backup recovers to a consistent point
            status = run_bika("wal", "status", "--json", env=server.env())
            assert status.returncode == 0, status.stdout
            (reach,) = json.loads(status.stdout)["backups"]
            assert reach["id"] == backup_id
            assert reach["consistent"] is True
        finally:
            receiver.send_signal(signal.SIGTERM)
            receiver.communicate(timeout=60)
            server.cluster.execute(f"SELECT pg_drop_replication_slot('{slot}')")
