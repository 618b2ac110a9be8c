"""The audit trail: events are hash-chained and signed, so `bika audit verify` names an event
edited or removed, and runs of several hosts at once do not look like tampering.
"""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from bika.crypto import generate_identity
from bika.repository import Repository
from bika.repository.audit import verify_log
from bika.repository.events import (
    CHAIN_WINDOW,
    Event,
    event_keys,
    newest_keys,
    witness_path,
    write_event,
)
from bika.repository.signatures import Trust
from bika.signing import generate_signing_key
from bika.storage.local import LocalStorage

from helpers import run_bika

START = datetime(2026, 12, 1, 2, 0, tzinfo=UTC)


def _event(n: int, command: str = "backup", host: str = "db-1", **extra: object) -> Event:
    at = START + timedelta(minutes=n)
    return Event(
        command=command,
        outcome="ok",
        started_at=at,
        finished_at=at + timedelta(seconds=5),
        duration_seconds=5.0,
        user="ops",
        host=host,
        pid=100 + n,
        bika_version="0.1.0",
        backup_ids=[f"20261201T02{n:02d}00Z-daily-00{n % 10}a"],
        **extra,  # type: ignore[arg-type]
    )


def _repo(tmp_path: Path, signed: bool = True) -> Repository:
    storage = LocalStorage(tmp_path / "repo")
    repo = Repository.init(storage, [generate_identity(tmp_path / "age.key")])
    if signed:
        key = tmp_path / "signing.key"
        generate_signing_key(key)
        repo.trust = Trust(signing_key=key)
    return repo


def _logged(repo: Repository, count: int) -> list[str]:
    return [write_event(repo, _event(n)) for n in range(count)]


def _writable(repo: Repository, key: str) -> Path:
    path = Path(repo.storage.url) / key
    path.chmod(0o600)
    return path


def test_each_event_refers_to_the_one_before(tmp_path: Path) -> None:
    repo = _repo(tmp_path)
    keys = _logged(repo, 4)
    raw = [json.loads((Path(repo.storage.url) / k).read_text()) for k in keys]
    assert raw[0]["prev"] is None
    assert all(later["prev"] for later in raw[1:])
    assert all((Path(repo.storage.url) / f"{k}.sig").is_file() for k in keys)
    report = verify_log(repo)
    assert report.ok, report.problems
    assert report.count("signed") == 4


def test_an_edited_signed_event_is_named(tmp_path: Path) -> None:
    repo = _repo(tmp_path)
    keys = _logged(repo, 5)
    path = _writable(repo, keys[2])
    path.write_text(path.read_text().replace('"command": "backup"', '"command": "check"'))
    problems = verify_log(repo).problems
    assert [p.key for p in problems] == [keys[2], keys[3]]
    assert "does not match its signature" in problems[0].message
    assert f"{keys[2]} was edited" in problems[1].message


def test_an_edited_unsigned_event_is_caught_by_the_chain(tmp_path: Path) -> None:
    repo = _repo(tmp_path, signed=False)
    keys = _logged(repo, 5)
    path = _writable(repo, keys[1])
    path.write_text(path.read_text().replace('"outcome": "ok"', '"outcome": "failed"'))
    problems = verify_log(repo).problems
    assert len(problems) == 1
    assert problems[0].key == keys[2]
    assert keys[1] in problems[0].message


def test_a_deleted_middle_event_fails_audit_verify(tmp_path: Path) -> None:
    repo = _repo(tmp_path)
    keys = _logged(repo, 5)
    for key in (keys[2], f"{keys[2]}.sig"):
        _writable(repo, key).unlink()
    result = run_bika("audit", "verify", "--repo", repo.storage.url, "--json")
    assert result.returncode == 1, result.stderr
    document = json.loads(result.stdout)
    assert document["ok"] is False
    assert [p["key"] for p in document["problems"]] == [keys[3]]
    assert f"{keys[1]} was edited, or an event after it was deleted" in result.stderr


def test_events_cut_off_the_end_are_noticed_by_the_host_that_wrote_them(tmp_path: Path) -> None:
    repo = _repo(tmp_path, signed=False)
    keys = _logged(repo, 5)
    assert verify_log(repo).ok
    # the newest two removed: no event refers to them, only this host's record
    for key in keys[3:]:
        _writable(repo, key).unlink()
    result = run_bika("audit", "verify", "--repo", repo.storage.url)
    assert result.returncode == 1, result.stderr
    assert keys[4] in result.stderr
    assert "removed from the end of the log" in result.stderr
    # the newest one rewritten (unsigned: only the record shows it)
    repo = _repo(tmp_path / "second", signed=False)
    keys = _logged(repo, 3)
    path = _writable(repo, keys[2])
    path.write_text(path.read_text().replace('"outcome": "ok"', '"outcome": "failed"'))
    problems = verify_log(repo).problems
    assert [(p.key, p.message) for p in problems] == [
        (keys[2], "not the event this host wrote: edited or replaced")
    ]


def test_a_host_that_wrote_no_event_says_it_cannot_see_the_end(tmp_path: Path) -> None:
    repo = _repo(tmp_path)
    _logged(repo, 2)
    witness_path(repo.id).unlink()
    report = verify_log(repo)
    assert report.ok
    assert any("only be noticed on a host that wrote them" in n for n in report.notes)


def test_hosts_writing_at_once_fork_the_chain_and_the_next_run_merges_it(tmp_path: Path) -> None:
    repo = _repo(tmp_path)
    _logged(repo, 2)
    # two hosts that both read the log before either wrote: both refer to the same event
    first = write_event(repo, _event(10, host="db-1"))
    prev = json.loads((Path(repo.storage.url) / first).read_text())["prev"]
    second_event = _event(11, host="db-2")
    key = f"events/{second_event.name('abcdef')}.json"
    repo.write_signed(key, second_event.model_copy(update={"prev": prev}).to_json())
    merged = write_event(repo, _event(12, command="restore", host="laptop"))
    document = json.loads((Path(repo.storage.url) / merged).read_text())
    assert len(document["merges"]) == 1  # the head it did not name as prev
    assert verify_log(repo).ok


def test_concurrent_writers_do_not_look_like_tampering(tmp_path: Path) -> None:
    repo = _repo(tmp_path)
    other = Repository.open(LocalStorage(tmp_path / "repo"))
    other.trust = repo.trust

    def write(repository: Repository, host: str, base: int) -> None:
        for n in range(12):
            write_event(repository, _event(base + n, host=host))

    threads = [
        threading.Thread(target=write, args=(repo, "db-1", 0)),
        threading.Thread(target=write, args=(other, "db-2", 0)),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(event_keys(repo.storage)) == 24
    report = verify_log(repo)
    assert report.ok, report.problems


def test_an_event_signed_by_an_unpinned_key_is_reported(tmp_path: Path) -> None:
    repo = _repo(tmp_path)
    keys = _logged(repo, 2)
    other_key = tmp_path / "other.key"
    pinned = generate_signing_key(other_key)
    repo.trust = Trust(pinned=frozenset({pinned}))
    problems = verify_log(repo).problems
    assert [p.key for p in problems] == keys
    assert all("a key this host does not trust" in p.message for p in problems)


@pytest.mark.parametrize("as_json", [True, False])
def test_audit_list_shows_who_did_what_to_which_backup(tmp_path: Path, as_json: bool) -> None:
    repo = _repo(tmp_path)
    old = _event(0, command="prune")
    write_event(repo, old.model_copy(update={"started_at": datetime.now(UTC) - timedelta(days=9)}))
    recent = _event(1, command="restore", host="laptop")
    write_event(repo, recent.model_copy(update={"started_at": datetime.now(UTC)}))
    args = ["audit", "list", "--repo", repo.storage.url, "--since", "7d"]
    result = run_bika(*args, *(["--json"] if as_json else []))
    assert result.returncode == 0, result.stderr
    if as_json:
        events = json.loads(result.stdout)["events"]
        assert [(e["command"], e["user"], e["host"], e["signature"]) for e in events] == [
            ("restore", "ops", "laptop", "signed")
        ]
        assert events[0]["backup_ids"] == recent.backup_ids
    else:
        assert "restore" in result.stdout and "ops@laptop" in result.stdout
        assert "prune" not in result.stdout


def test_a_writer_chains_to_the_newest_events_however_long_ago_they_were(tmp_path: Path) -> None:
    repo = _repo(tmp_path, signed=False)
    now = datetime.now(UTC)

    def logged(ago: timedelta) -> str:
        event = _event(0).model_copy(update={"started_at": now - ago})
        return write_event(repo, event)

    # a quiet repository: its newest events are months old, then a few this week
    for days in range(300, 280, -1):
        logged(timedelta(days=days))
    assert newest_keys(repo.storage, CHAIN_WINDOW) == event_keys(repo.storage)[-CHAIN_WINDOW:]
    for hours in (50, 30, 2):
        logged(timedelta(hours=hours))
    assert newest_keys(repo.storage, CHAIN_WINDOW) == event_keys(repo.storage)[-CHAIN_WINDOW:]
    # a busy one: the last week holds enough, and the chain still runs through every event
    for minutes in range(CHAIN_WINDOW, 0, -1):
        logged(timedelta(minutes=minutes))
    newest = newest_keys(repo.storage, CHAIN_WINDOW)
    assert newest == event_keys(repo.storage)[-CHAIN_WINDOW:]
    assert verify_log(repo).ok
