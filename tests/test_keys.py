"""Keys: generating identities, a repository's recipients, which backups a key opens, and
rekeying backups to new recipients so an old key stops opening them.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import awkward
import psycopg
import pytest

from bika.crypto import fingerprint, generate_identity
from bika.postgres import sample
from bika.postgres.cluster import Cluster

from helpers import KeyedRepo, assert_clean_error, offline_env, row_counts, run_bika


def _repo_args(repo: KeyedRepo) -> list[str]:
    return ["--repo", str(repo.repo)]


def _recipients(repo: KeyedRepo) -> list[str]:
    result = run_bika("key", "list", *_repo_args(repo), "--json")
    assert result.returncode == 0, result.stderr
    return [r["recipient"] for r in json.loads(result.stdout)["recipients"]]


def _key_check(repo: KeyedRepo, key: Path) -> dict[str, dict[str, object]]:
    result = run_bika("key", "check", *_repo_args(repo), "--identity", str(key), "--json")
    assert result.returncode in (0, 1), result.stderr
    return {b["id"]: b for b in json.loads(result.stdout)["backups"]}


# --- fast: no server --------------------------------------------------------------------------


def test_key_generate_writes_a_private_file_and_prints_the_recipient(tmp_path: Path) -> None:
    out = tmp_path / "keys" / "key.txt"
    result = run_bika("key", "generate", "--out", str(out))
    assert result.returncode == 0, result.stderr
    recipient = result.stdout.strip()
    assert recipient.startswith("age1")
    assert out.stat().st_mode & 0o777 == 0o600
    assert f"# public key: {recipient}" in out.read_text()
    again = run_bika("key", "generate", "--out", str(out))
    assert_clean_error(again, "already exists")


def test_key_generate_with_passphrase_needs_it_to_open(tmp_path: Path) -> None:
    out = tmp_path / "locked.txt"
    made = run_bika(
        "key", "generate", "--passphrase", "--out", str(out),
        env={"BIKA_IDENTITY_PASSPHRASE": "correct horse"},
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    assert out.read_bytes().startswith(b"age-encryption.org/v1\n-> scrypt ")
    assert b"AGE-SECRET-KEY" not in out.read_bytes()
    assert out.stat().st_mode & 0o777 == 0o600
    # no terminal and no variable: a clear refusal, not a prompt that hangs
    assert_clean_error(
        run_bika("key", "generate", "--passphrase", "--out", str(tmp_path / "x.txt")),
        "BIKA_IDENTITY_PASSPHRASE",
    )
    repo = tmp_path / "repo"
    assert run_bika("init", "--repo", str(repo), "--recipient", made.stdout.strip()).returncode == 0
    check = ["key", "check", "--repo", str(repo), "--identity", str(out)]
    assert_clean_error(run_bika(*check), "passphrase", "BIKA_IDENTITY_PASSPHRASE")
    wrong = run_bika(*check, env={"BIKA_IDENTITY_PASSPHRASE": "wrong"})
    assert_clean_error(wrong, "wrong passphrase")
    right = run_bika(*check, env={"BIKA_IDENTITY_PASSPHRASE": "correct horse"})
    assert right.returncode == 0, right.stderr


def test_key_add_list_remove_change_the_recipients(keyed_repo: KeyedRepo, tmp_path: Path) -> None:
    escrow = generate_identity(tmp_path / "escrow.txt")
    assert run_bika("key", "add", escrow, *_repo_args(keyed_repo)).returncode == 0
    assert _recipients(keyed_repo) == [keyed_repo.recipient, escrow]
    listed = json.loads(run_bika("key", "list", *_repo_args(keyed_repo), "--json").stdout)
    assert listed["recipients"][1]["fingerprint"] == fingerprint(escrow)
    plain = run_bika("key", "list", *_repo_args(keyed_repo))
    assert fingerprint(escrow) in plain.stdout and escrow in plain.stdout
    # adding it again changes nothing
    assert run_bika("key", "add", escrow, *_repo_args(keyed_repo)).returncode == 0
    assert _recipients(keyed_repo) == [keyed_repo.recipient, escrow]
    # removed by its fingerprint
    removed = run_bika("key", "remove", fingerprint(keyed_repo.recipient), *_repo_args(keyed_repo))
    assert removed.returncode == 0, removed.stderr
    assert _recipients(keyed_repo) == [escrow]
    assert_clean_error(
        run_bika("key", "remove", escrow, *_repo_args(keyed_repo)), "last", "key add"
    )
    assert_clean_error(
        run_bika("key", "remove", "age1nothere", *_repo_args(keyed_repo)), "not a recipient"
    )
    assert _recipients(keyed_repo) == [escrow]
    bad = run_bika("key", "add", "age1xyz", *_repo_args(keyed_repo))
    assert_clean_error(bad, "not an age recipient")
    assert bad.returncode == 2
    # the audit trail has each change of recipients, the refused ones too
    events = [
        json.loads(p.read_text()) for p in sorted((keyed_repo.repo / "events").glob("*.json"))
    ]
    changes = [(e["command"], e["outcome"]) for e in events if e["command"].startswith("key ")]
    assert changes[:3] == [("key add", "ok"), ("key add", "ok"), ("key remove", "ok")]
    assert ("key remove", "failed") in changes and ("key add", "failed") in changes


def test_a_private_key_given_to_key_add_is_refused_and_never_echoed(keyed_repo: KeyedRepo) -> None:
    lines = keyed_repo.key.read_text().splitlines()
    secret = next(line for line in lines if line.startswith("AGE-SECRET"))
    result = run_bika("key", "add", secret, *_repo_args(keyed_repo))
    assert_clean_error(result, "private key")
    assert secret not in result.stderr + result.stdout
    assert _recipients(keyed_repo) == [keyed_repo.recipient]


def test_rekey_needs_ids_or_all_and_an_identity(keyed_repo: KeyedRepo) -> None:
    assert_clean_error(run_bika("rekey", *_repo_args(keyed_repo)), "--all")
    missing = run_bika("rekey", "--all", *_repo_args(keyed_repo))
    assert_clean_error(missing, "private key", "--identity")
    gone = run_bika("rekey", "--all", *_repo_args(keyed_repo), "--identity", "/nonexistent/k")
    assert_clean_error(gone, "does not exist")


# --- with PostgreSQL -------------------------------------------------------------------------


def test_every_recipient_reads_every_backup_and_a_removed_one_cannot_read_new_ones(
    pg18: Cluster, new_database: Callable[[Cluster], str], keyed_repo: KeyedRepo, tmp_path: Path
) -> None:
    url = new_database(pg18)
    sample.load(url, sample.SAVINGS_GROUP_SQL)
    expected = row_counts(url, sample.SAVINGS_GROUP_TABLES)
    escrow_key = tmp_path / "escrow.txt"
    escrow = generate_identity(escrow_key)
    assert run_bika("key", "add", escrow, *_repo_args(keyed_repo)).returncode == 0
    both = keyed_repo.backup(url)
    assert keyed_repo.manifest(both)["recipients"] == [keyed_repo.recipient, escrow]

    for key in (keyed_repo.key, escrow_key):
        verified = run_bika("verify", both, *_repo_args(keyed_repo), "--read-data", "-i", str(key))
        assert verified.returncode == 0, verified.stderr
        target = new_database(pg18)
        restored = run_bika(
            "restore", both, *_repo_args(keyed_repo), "-i", str(key), "--to", target
        )
        assert restored.returncode == 0, restored.stderr
        assert row_counts(target, sample.SAVINGS_GROUP_TABLES) == expected

    assert run_bika("key", "remove", keyed_repo.recipient, *_repo_args(keyed_repo)).returncode == 0
    escrow_only = keyed_repo.backup(url)
    for configured, level in ((escrow, "ok"), (keyed_repo.recipient, "warn")):
        checked = run_bika(
            "check", *_repo_args(keyed_repo), "--json", env={"BIKA_ESCROW_RECIPIENT": configured}
        )
        findings = [f for f in json.loads(checked.stdout)["findings"] if f["what"] == "escrow"]
        assert [f["level"] for f in findings] == [level], checked.stdout
    checked = _key_check(keyed_repo, keyed_repo.key)
    assert checked[both]["ok"] is True
    assert checked[escrow_only]["ok"] is False
    assert checked[escrow_only]["fails"] == ["database", "globals"]
    plain = run_bika("key", "check", *_repo_args(keyed_repo), "-i", str(keyed_repo.key))
    assert_clean_error(plain, "1 of 2 backups cannot be decrypted")
    assert f"{escrow_only}  NO" in plain.stdout
    assert all(b["ok"] for b in _key_check(keyed_repo, escrow_key).values())
    # the commands that read data say so before reading anything
    verify = ["verify", escrow_only, "--read-data", *_repo_args(keyed_repo)]
    refused = run_bika(*verify, "-i", str(keyed_repo.key))
    assert refused.returncode == 1 and "Traceback" not in refused.stderr
    assert "none of the given identities can decrypt it" in refused.stderr
    restore = ["restore", escrow_only, *_repo_args(keyed_repo), "--to", url]
    assert_clean_error(run_bika(*restore, "-i", str(keyed_repo.key)), "cannot decrypt")


def test_rekey_keeps_backups_restorable_and_the_old_key_stops_opening_them(
    pg18: Cluster, new_database: Callable[[Cluster], str], keyed_repo: KeyedRepo, tmp_path: Path
) -> None:
    url = new_database(pg18)
    sample.load(url, awkward.SQL)
    expected = row_counts(url, awkward.TABLES)
    first, second = keyed_repo.backup(url), keyed_repo.backup(url)
    before = {b: keyed_repo.manifest(b) for b in (first, second)}
    new_key = tmp_path / "new.txt"
    new = generate_identity(new_key)
    assert run_bika("key", "add", new, *_repo_args(keyed_repo)).returncode == 0
    assert run_bika("key", "remove", keyed_repo.recipient, *_repo_args(keyed_repo)).returncode == 0

    # the wrong key: nothing changes
    wrong = run_bika("rekey", "--all", *_repo_args(keyed_repo), "-i", str(new_key))
    assert_clean_error(wrong, "not rekeyed")
    assert {b: keyed_repo.manifest(b) for b in (first, second)} == before

    result = run_bika(
        "rekey", "--all", *_repo_args(keyed_repo), "-i", str(keyed_repo.key), "--json"
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert [b["status"] for b in report["backups"]] == ["rekeyed", "rekeyed"]
    for backup_id in (first, second):
        manifest = keyed_repo.manifest(backup_id)
        assert manifest["recipients"] == [new]
        old = before[backup_id]["artifacts"]
        for name, artifact in manifest["artifacts"].items():
            assert artifact["key"] != old[name]["key"]
            assert artifact["plain_sha256"] == old[name]["plain_sha256"]
            assert not (keyed_repo.repo / old[name]["key"]).exists()  # old objects deleted
            assert (keyed_repo.repo / artifact["key"]).exists()
        assert manifest["tables"] == before[backup_id]["tables"]
    # nothing left over for prune
    files = sorted(p.name for p in (keyed_repo.repo / "backups" / first).iterdir())
    assert len(files) == 3 and "manifest.json" in files

    assert not any(b["ok"] for b in _key_check(keyed_repo, keyed_repo.key).values())
    assert all(b["ok"] for b in _key_check(keyed_repo, new_key).values())
    old_verify = run_bika(
        "verify", first, *_repo_args(keyed_repo), "--read-data", "-i", str(keyed_repo.key)
    )
    assert old_verify.returncode == 1
    assert "none of the given identities can decrypt it" in old_verify.stderr
    verified = run_bika("verify", *_repo_args(keyed_repo), "--read-data", "-i", str(new_key))
    assert verified.returncode == 0, verified.stderr
    target = new_database(pg18)
    restored = run_bika(
        "restore", second, *_repo_args(keyed_repo), "-i", str(new_key), "--to", target
    )
    assert restored.returncode == 0, restored.stderr
    assert row_counts(target, awkward.TABLES) == expected

    # already current: skipped
    again = run_bika("rekey", first, *_repo_args(keyed_repo), "-i", str(new_key), "--json")
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["backups"][0]["status"] == "current"
    events = [json.loads(p.read_text()) for p in (keyed_repo.repo / "events").iterdir()]
    rekeys = [e for e in events if e["command"] == "rekey" and e["outcome"] == "ok"]
    assert any(sorted(e["backup_ids"]) == sorted([first, second]) for e in rekeys)


def test_rekey_killed_midway_leaves_every_backup_readable(
    pg18: Cluster, new_database: Callable[[Cluster], str], keyed_repo: KeyedRepo, tmp_path: Path
) -> None:
    url = new_database(pg18)
    with psycopg.connect(url, autocommit=True) as db:
        db.execute(
            "CREATE TABLE big AS SELECT g AS id, md5(g::text) || md5((g * 7)::text) AS payload"
            " FROM generate_series(1, 600000) g"
        )
    backup_id = keyed_repo.backup(url)
    new_key = tmp_path / "new.txt"
    assert (
        run_bika("key", "add", generate_identity(new_key), *_repo_args(keyed_repo)).returncode == 0
    )
    folder = keyed_repo.repo / "backups" / backup_id
    env = offline_env({k: v for k, v in os.environ.items() if not k.startswith("BIKA_")})
    proc = subprocess.Popen(
        [sys.executable, "-m", "bika", "rekey", backup_id, "--repo", str(keyed_repo.repo),
         "-i", str(keyed_repo.key)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env,
    )  # fmt: skip
    deadline = time.monotonic() + 120
    # strike while the new database object is being written
    while not any(".k" in p.name for p in folder.iterdir()):
        assert proc.poll() is None, "rekey ended before it could be killed"
        assert time.monotonic() < deadline
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    manifest = keyed_repo.manifest(backup_id)
    for artifact in manifest["artifacts"].values():
        assert (keyed_repo.repo / artifact["key"]).exists()
    key = keyed_repo.key if manifest.get("rekeyed_at") is None else new_key
    verified = run_bika("verify", backup_id, *_repo_args(keyed_repo), "--read-data", "-i", str(key))
    assert verified.returncode == 0, verified.stderr
    # a second run finishes the job
    finished = run_bika("rekey", backup_id, *_repo_args(keyed_repo), "-i", str(keyed_repo.key))
    assert finished.returncode == 0, finished.stderr
    verified = run_bika(
        "verify", backup_id, *_repo_args(keyed_repo), "--read-data", "-i", str(new_key)
    )
    assert verified.returncode == 0, verified.stderr


@pytest.mark.parametrize("when", ["before", "after"])
def test_prune_removes_what_an_interrupted_rekey_left_after_a_day(
    keyed_repo: KeyedRepo, pg18: Cluster, new_database: Callable[[Cluster], str], when: str
) -> None:
    url = new_database(pg18)
    sample.load(url, sample.SAVINGS_GROUP_SQL)
    backup_id = keyed_repo.backup(url)
    folder = keyed_repo.repo / "backups" / backup_id
    manifest = keyed_repo.manifest(backup_id)
    database = keyed_repo.repo / manifest["artifacts"]["database"]["key"]
    stray = folder / "database.k0123abcd.pgdump.zst.age"  # a rekey's new object, or its old one
    stray.write_bytes(database.read_bytes())
    later = {"BIKA_NOW": "2099-01-01T00:00:00+00:00"} if when == "after" else {}
    result = run_bika("prune", *_repo_args(keyed_repo), "--json", env=later)
    assert result.returncode == 0, result.stderr
    leftovers = [item["key"] for item in json.loads(result.stdout)["leftovers"]]
    assert leftovers == ([f"backups/{backup_id}/{stray.name}"] if when == "after" else [])
    assert stray.exists() == (when == "before")
    assert database.exists()


@pytest.mark.parametrize(
    "command",
    [
        ["verify", "latest", "--read-data"],
        ["restore", "latest", "--to-file", "-"],
        ["drill", "latest"],
        ["rekey", "--all"],
        ["key", "check"],
    ],
)
def test_commands_that_read_data_say_what_is_wrong_with_the_identity(
    keyed_repo: KeyedRepo,
    tmp_path: Path,
    command: list[str],
    pg18: Cluster,
    new_database: Callable[[Cluster], str],
) -> None:
    """Missing, not a key, locked without its passphrase, locked with a wrong one: each is
    one line that says what to do, before anything is read or started."""
    url = new_database(pg18)
    sample.load(url, sample.SAVINGS_GROUP_SQL)
    keyed_repo.backup(url)
    args = [*command, *_repo_args(keyed_repo)]
    assert_clean_error(run_bika(*args), "needs the private key", "--identity")
    not_a_key = tmp_path / "notes.txt"
    not_a_key.write_text("hello\n")
    assert_clean_error(run_bika(*args, "-i", str(not_a_key)), "not an age identity")
    locked = tmp_path / "locked.txt"
    made = run_bika(
        "key", "generate", "--passphrase", "-o", str(locked), env={"BIKA_IDENTITY_PASSPHRASE": "pw"}
    )
    assert made.returncode == 0, made.stderr
    assert_clean_error(run_bika(*args, "-i", str(locked)), "passphrase", "BIKA_IDENTITY_PASSPHRASE")
    wrong = run_bika(*args, "-i", str(locked), env={"BIKA_IDENTITY_PASSPHRASE": "nope"})
    assert_clean_error(wrong, "wrong passphrase")
