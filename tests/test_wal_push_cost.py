"""What a `bika wal push` costs per call, and the shortcuts that save it: the lean imports of
the console script PostgreSQL runs, the local cache of the repository's recorded cluster, the
look-ahead's notes. No server: segments are built with a real WAL page header.
"""

from __future__ import annotations

import json
import os
import re
import statistics
import struct
import subprocess
import time
from pathlib import Path

import pyrage
import pytest
import zstandard
from archiving import install_bika

from bika.crypto import generate_identity
from bika.wal import names

from helpers import run_bika

SEGMENT_SIZE = 16 * 1024 * 1024
# modules whose import costs more than the rest of the push path (bench/PITR.md): none of
# them may load while PostgreSQL waits for a push
SLOW = (
    "click",
    "pydantic",
    "psycopg",
    "rich",
    "bika.cli",
    "bika.config",
    "bika.storage",
    "platform",
    "re",
    "json",
    "typing",
    "dataclasses",
    "inspect",
    "enum",
    "pathlib",
    "threading",
    "contextlib",
    "datetime",
    "tomllib",
    "concurrent",
    "zstandard",  # the package's __init__ imports platform; bika loads its C backend directly
)


def _segment(folder: Path, name: str, system_identifier: int, filler: bytes) -> Path:
    header = struct.pack(
        "<HHIQI4xQII", 0xD110, names.XLP_LONG_HEADER, 1, 0, 0, system_identifier, SEGMENT_SIZE, 8192
    )
    path = folder / name
    path.write_bytes(header.ljust(8192, b"\0") + filler)
    return path


def _repository(tmp_path: Path) -> tuple[Path, Path]:
    key = tmp_path / "key.txt"
    recipient = generate_identity(key)
    repo = tmp_path / "repo"
    done = run_bika("init", "--repo", str(repo), "--recipient", recipient)
    assert done.returncode == 0, done.stderr
    return repo, key


def _imported(stderr: str) -> list[str]:
    """Modules imported after site (the script's own), from -X importtime's report."""
    found = re.findall(r"^import time:\s+\d+ \|\s+\d+ \|\s*(\S+)$", stderr, re.M)
    return found[found.index("site") + 1 :] if "site" in found else found


def _plaintext(obj: Path, key: Path) -> bytes:
    identity = pyrage.x25519.Identity.from_str(key.read_text().splitlines()[-1])
    plain = pyrage.decrypt(obj.read_bytes(), [identity])
    return bytes(zstandard.ZstdDecompressor().decompress(plain))


def test_push_through_the_console_script_imports_nothing_slow(tmp_path: Path) -> None:
    repo, _ = _repository(tmp_path)
    bika = install_bika(tmp_path) / "bika"  # the script PostgreSQL's archive_command runs
    wal = tmp_path / "pg_wal"
    wal.mkdir()
    config = tmp_path / "bika.toml"  # as the README sets it up: read on every call
    config.write_text(f'repo = "{repo}"  # the repository\n\n[storage]\nmax_retries = 3\n')
    reports = []
    for number in (1, 2):  # the first records the cluster; the second finds it cached
        path = _segment(wal, f"00000001000000000000000{number}", 7, os.urandom(4096))
        done = subprocess.run(
            [str(bika), "wal", "push", str(path)],
            capture_output=True,
            text=True,
            env={**os.environ, "PYTHONPROFILEIMPORTTIME": "1", "BIKA_CONFIG": str(config)},
            check=False,
        )
        assert done.returncode == 0, done.stderr
        reports.append(_imported(done.stderr))
    cold, warm = reports
    assert "bika.wal.archive" in warm and "pyrage" in warm  # it did encrypt and store
    slow = [m for m in warm if any(m == s or m.startswith(s + ".") for s in SLOW)]
    assert slow == []
    # only the first push of a repository reads (and records) wal/cluster.json
    assert "json" in cold
    # a push the look-ahead stored: only the note is read
    (wal / "archive_status").mkdir()
    for number in (3, 4):
        _segment(wal, f"00000001000000000000000{number}", 7, os.urandom(4096))
        (wal / "archive_status" / f"00000001000000000000000{number}.ready").touch()
    env = {**os.environ, "PYTHONPROFILEIMPORTTIME": "1", "BIKA_CONFIG": str(config)}
    for number in (3, 4):
        path = wal / f"00000001000000000000000{number}"
        done = subprocess.run(
            [str(bika), "wal", "push", str(path)], capture_output=True, text=True, env=env
        )
        assert done.returncode == 0, done.stderr
    noted = _imported(done.stderr)
    assert "bika.wal.notes" in noted and "bika.wal.archive" not in noted and "pyrage" not in noted


def test_push_start_up_stays_within_a_few_interpreter_starts(tmp_path: Path) -> None:
    """The wall clock PostgreSQL waits, for a push whose work is nil (the file is stored):
    start-up, settings, bika.json, the cluster check, LIST. Measured against a bare
    interpreter start in the same moment, so a busy machine slows both."""
    repo, _ = _repository(tmp_path)
    bika = install_bika(tmp_path) / "bika"
    wal = tmp_path / "pg_wal"
    wal.mkdir()
    path = _segment(wal, "000000010000000000000001", 7, b"")
    push = [str(bika), "wal", "push", "--repo", str(repo), str(path)]
    assert subprocess.run(push, capture_output=True, check=False).returncode == 0
    python = bika.read_text().splitlines()[0].removeprefix("#!")
    walls: dict[str, list[float]] = {"bika": [], "python": []}
    for _ in range(9):
        for label, argv in (("bika", push), ("python", [python, "-c", "pass"])):
            began = time.perf_counter()
            done = subprocess.run(argv, capture_output=True, check=False)
            walls[label].append(time.perf_counter() - began)
            assert done.returncode == 0, done.stderr
    bika_wall, python_wall = (statistics.median(walls[k]) for k in ("bika", "python"))
    # 2026-12-04, 2 busy cores: 27 ms vs 10 ms (2.6 ×); before the lean path 66 ms (6.3 ×)
    assert bika_wall <= 4 * python_wall, f"{bika_wall * 1000:.0f} ms vs {python_wall * 1000:.0f}"


def test_a_changed_bika_json_is_read_again_and_its_recipients_used(tmp_path: Path) -> None:
    repo, old_key = _repository(tmp_path)
    wal = tmp_path / "pg_wal"
    wal.mkdir()
    first = _segment(wal, "000000010000000000000001", 7, b"one")
    assert run_bika("wal", "push", "--repo", str(repo), str(first)).returncode == 0
    cache = [p for p in (wal / "bika_archive_status").iterdir() if p.name.startswith(".repo")]
    assert len(cache) == 1
    # the key is replaced in bika.json (as `bika key add` + `key remove` leave it)
    new_key = tmp_path / "new.txt"
    info = json.loads((repo / "bika.json").read_text())
    info["recipients"] = [generate_identity(new_key)]
    (repo / "bika.json").write_text(json.dumps(info))
    second = _segment(wal, "000000010000000000000002", 7, b"two")
    done = run_bika("wal", "push", "--repo", str(repo), str(second))
    assert done.returncode == 0, done.stderr
    stored = next((repo / "wal" / "0000000100000000").glob("000000010000000000000002-*"))
    assert _plaintext(stored, new_key) == second.read_bytes()
    with pytest.raises(pyrage.DecryptError):
        _plaintext(stored, old_key)


def test_the_cached_cluster_still_refuses_another_clusters_segment(tmp_path: Path) -> None:
    repo, _ = _repository(tmp_path)
    wal = tmp_path / "pg_wal"
    wal.mkdir()
    ours = _segment(wal, "000000010000000000000001", 7, b"")
    assert run_bika("wal", "push", "--repo", str(repo), str(ours)).returncode == 0
    theirs = _segment(wal, "000000010000000000000002", 8, b"")
    done = run_bika("wal", "push", "--repo", str(repo), str(theirs))
    assert done.returncode == 1
    assert "system identifier 8" in done.stderr and "archives cluster 7" in done.stderr


def test_a_note_for_a_file_since_rewritten_is_not_believed(tmp_path: Path) -> None:
    """A note says "this file, stored": a segment of that name with other bytes (a restored
    data directory's) is pushed for real, and refused as other content."""
    repo, _ = _repository(tmp_path)
    wal = tmp_path / "pg_wal"
    (wal / "archive_status").mkdir(parents=True)
    for number in (1, 2):
        _segment(wal, f"00000001000000000000000{number}", 7, b"first")
        (wal / "archive_status" / f"00000001000000000000000{number}.ready").touch()
    done = run_bika("wal", "push", "--repo", str(repo), str(wal / "000000010000000000000001"))
    assert done.returncode == 0, done.stderr
    note = wal / "bika_archive_status" / "000000010000000000000002"
    assert note.is_file()  # the look-ahead stored it
    time.sleep(0.01)
    _segment(wal, "000000010000000000000002", 7, b"other bytes")
    done = run_bika("wal", "push", "--repo", str(repo), str(wal / "000000010000000000000002"))
    assert done.returncode == 1
    assert "already archived with other content" in done.stderr
    assert not note.exists()
    # the note of a file unchanged is believed: nothing is read from the repository
    _segment(wal, "000000010000000000000003", 7, b"third")
    (wal / "archive_status" / "000000010000000000000003.ready").touch()
    _segment(wal, "000000010000000000000004", 7, b"fourth")
    (wal / "archive_status" / "000000010000000000000004.ready").touch()
    done = run_bika("wal", "push", "--repo", str(repo), str(wal / "000000010000000000000003"))
    assert done.returncode == 0, done.stderr
    (repo / "bika.json").rename(repo / "bika.json.away")
    done = run_bika("wal", "push", "--repo", str(repo), str(wal / "000000010000000000000004"))
    assert done.returncode == 0, done.stderr
