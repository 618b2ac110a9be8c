"""The run log: one event per run of a command that touches the repository, failed ones
included, at events/<time>-<host>-<nonce>.json; written once, never modified (docs/FORMAT.md,
"Events").

Monitoring ("the newest backup run failed") and the audit trail read this one log. Each event
carries the hashes of the newest events its writer saw (a hash chain; a DAG when hosts write at
once), and a signature when the host signs. An event whose repository could not be reached
waits in a local folder (pending_folder()) and is chained and uploaded by the next run that
reaches that repository.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import secrets
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from bika.errors import ObjectExists, ObjectNotFound, RepositoryError
from bika.repository.index import read_records
from bika.repository.locks import key_safe
from bika.repository.repository import Repository
from bika.state import state_dir
from bika.storage import Storage, read_bytes

EVENTS = "events/"
EVENT_FORMAT_VERSION = 1
EVENT_INDEX = "events"
"""The index of events: index/events/… (index.py)."""

Outcome = Literal["ok", "failed", "interrupted"]


class Event(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    format_version: int = EVENT_FORMAT_VERSION
    command: str = Field(description="backup, prune, copy, drill, restore, verify, check")
    outcome: Outcome
    error: str | None = Field(default=None, description="one line, credentials redacted")
    started_at: datetime
    finished_at: datetime
    duration_seconds: float
    user: str = Field(description="the OS user that ran bika")
    host: str
    pid: int
    bika_version: str
    repository_id: str | None = Field(
        default=None, description="bika.json's id; null when the repository was unreachable"
    )
    backup_ids: list[str] = Field(
        default_factory=list,
        description="backup: the new one; prune: the deleted; copy: the copied; drill,"
        " restore: the one read",
    )
    detail: dict[str, Any] = Field(default_factory=dict, description="per command, below")
    prev: str | None = Field(
        default=None,
        description="sha256 of the stored bytes of the newest event the writer saw (by name)",
    )
    merges: list[str] = Field(
        default_factory=list,
        description="sha256 of the other events the writer saw that no event referred to yet:"
        " runs of other hosts at the same time (the chain is a DAG)",
    )

    def to_json(self) -> bytes:
        return (self.model_dump_json(indent=2) + "\n").encode()

    def name(self, nonce: str) -> str:
        stamp = self.started_at.astimezone(UTC)
        return (
            f"{stamp:%Y%m%dT%H%M%S}.{stamp.microsecond // 1000:03d}Z-{key_safe(self.host)}-{nonce}"
        )


def event_key(event: Event, nonce: str | None = None) -> str:
    return f"{EVENTS}{event.name(nonce or secrets.token_hex(3))}.json"


# how many of the newest events a writer reads to find the heads of the chain: more than runs
# that overlap in practice, so an event another host wrote meanwhile is merged, not left out
CHAIN_WINDOW = 8


def event_hash(raw: bytes) -> str:
    return hashlib.sha256(raw).hexdigest()


# how far back a writer first lists the log for its newest events, before listing all of it
# (a year of events is thousands of objects, a listing of which takes seconds)
_RECENT = (timedelta(days=7), timedelta(days=92))


def event_keys(storage: Storage, start_after: str | None = None) -> list[str]:
    """Every event's key (after `start_after`), oldest first (names sort by start time)."""
    listed = storage.list(EVENTS, start_after=start_after)
    return sorted(i.key for i in listed if i.key.endswith(".json"))


def newest_keys(storage: Storage, count: int) -> list[str]:
    """The keys of the `count` newest events, oldest first. Listed from a week back, else a
    quarter, else from the start: names sort by start time, so `count` keys listed after any
    key are the newest `count` of all."""
    now = datetime.now(UTC)
    for back in _RECENT:
        keys = event_keys(storage, start_after=f"{EVENTS}{now - back:%Y%m%dT%H%M%S}")
        if len(keys) >= count:
            return keys[-count:]
    return event_keys(storage)[-count:]


def _heads(storage: Storage) -> tuple[str | None, list[str]]:
    """(prev, merges) for a new event: the newest event's hash, and the hashes of the other
    recent events that no event refers to."""
    keys = newest_keys(storage, CHAIN_WINDOW)
    hashes: dict[str, str] = {}
    referenced: set[str] = set()
    for key in keys:
        try:
            raw = read_bytes(storage, key)
        except ObjectNotFound:
            continue  # deleted since it was listed
        hashes[key] = event_hash(raw)
        referenced.update(_references(raw))
    if not keys:
        return None, []
    newest = keys[-1]
    merges = [h for k, h in hashes.items() if k != newest and h not in referenced]
    return hashes.get(newest), merges


def _references(raw: bytes) -> list[str]:
    """The hashes an event's bytes refer to (prev and merges), read leniently."""
    try:
        data = json.loads(raw)
    except ValueError:
        return []
    if not isinstance(data, dict):
        return []
    refs = [data["prev"]] if isinstance(data.get("prev"), str) else []
    merges = data.get("merges")
    return refs + [m for m in merges if isinstance(m, str)] if isinstance(merges, list) else refs


def write_event(repo: Repository, event: Event, key: str | None = None) -> str:
    """Chain the event to the newest ones in the log, sign it when this host signs, and store
    it (create-only); return its key."""
    key = key or event_key(event)
    prev, merges = _heads(repo.storage)
    data = event.model_copy(update={"prev": prev, "merges": merges}).to_json()
    try:
        repo.write_signed(key, data)
    except ObjectExists:
        return key  # a pending event an earlier run uploaded before it died, done already
    _remember_newest(repo, key, data)
    return key


# this host's newest event ---------------------------------------------------------------
# The chain shows an event removed before a later one, not one removed from the end (nothing
# refers to it yet). Each host remembers the newest event it wrote to each repository, so
# `bika audit verify` on that host also notices the end of the log cut off.


def witness_path(repository_id: str) -> Path:
    """$XDG_STATE_HOME/bika/audit-witness/<repository id>.json."""
    return state_dir() / "audit-witness" / f"{repository_id}.json"


def _remember_newest(repo: Repository, key: str, data: bytes) -> None:
    path = witness_path(repo.id)
    newest = remembered_newest(repo.id)
    if newest is not None and newest[0] >= key:
        return  # a later run of this host wrote a newer one already
    with contextlib.suppress(OSError):  # a witness, not a condition of writing the event
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        temp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        temp.write_text(
            json.dumps({"repository": repo.url, "key": key, "sha256": event_hash(data)})
        )
        temp.replace(path)


def remembered_newest(repository_id: str) -> tuple[str, str] | None:
    """(key, sha256) of the newest event this host wrote to the repository, if it wrote one."""
    try:
        data = json.loads(witness_path(repository_id).read_text())
        return str(data["key"]), str(data["sha256"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def read_events(storage: Storage, url: str, since: datetime | None = None) -> list[Event]:
    """Every event (that started at or after `since`), oldest first: keys begin with the start
    time, so older ones are skipped without being read."""
    first = f"{EVENTS}{since.astimezone(UTC):%Y%m%dT%H%M%S}" if since else None
    listed = [
        info for info in storage.list(EVENTS, start_after=first) if info.key.endswith(".json")
    ]
    wanted = sorted(info.key for info in listed)
    # the index keeps the older events, which this listing did not look at, for other readers
    raws = read_records(
        storage, EVENT_INDEX, listed, wanted, unlisted=lambda key: first is not None and key < first
    )
    events = []
    for key in wanted:
        if key not in raws:
            continue  # deleted since it was listed (by hand: bika never deletes events)
        try:
            events.append(Event.model_validate_json(raws[key]))
        except ValidationError as exc:
            raise RepositoryError(f"{url}/{key} is not a valid event: {exc}") from exc
    return events


# pending events --------------------------------------------------------------------------


def pending_folder() -> Path:
    """$XDG_STATE_HOME/bika/pending-events (default ~/.local/state/bika/pending-events)."""
    return state_dir() / "pending-events"


def _url_folder(url: str) -> Path:
    return pending_folder() / hashlib.sha256(url.encode()).hexdigest()[:16]


def keep_pending(url: str, event: Event) -> Path:
    """Keep an event locally for the repository at url, to upload on the next run."""
    folder = _url_folder(url)
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    key = event_key(event)
    path = folder / key.removeprefix(EVENTS)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(
        json.dumps({"repository": url, "key": key, "event": json.loads(event.to_json())})
    )
    tmp.replace(path)
    return path


def pending(url: str) -> Iterator[tuple[Path, str, Event]]:
    folder = _url_folder(url)
    if not folder.is_dir():
        return
    for path in sorted(folder.glob("*.json")):
        try:
            data = json.loads(path.read_text())
            if data.get("repository") != url:
                continue
            yield path, str(data["key"]), Event.model_validate(data["event"])
        except (OSError, ValueError, KeyError, ValidationError):
            continue  # a damaged file is left for a person to look at


def upload_pending(repo: Repository) -> int:
    """Upload the events kept for this repository; returns how many."""
    count = 0
    for path, key, event in pending(repo.url):
        if event.repository_id is None:
            event = event.model_copy(update={"repository_id": repo.id})
        if repo.storage.stat(key) is None:  # else uploaded before a crash: done already
            write_event(repo, event, key)
        path.unlink(missing_ok=True)
        count += 1
    return count
