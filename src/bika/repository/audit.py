"""The audit trail: the run log read as a whole, its hash chain and signatures checked.

Each event names the hashes of the newest events its writer saw (events.write_event), so an
event removed or edited leaves a reference that no event answers; a signed event edited no
longer matches its signature. Runs of two hosts at once make a fork, merged by the next run.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

from pydantic import ValidationError

from bika.errors import ObjectNotFound
from bika.repository.events import (
    EVENTS,
    Event,
    event_hash,
    event_keys,
    remembered_newest,
    witness_path,
)
from bika.repository.repository import Repository
from bika.repository.signatures import Status
from bika.signing import fingerprint
from bika.storage import read_bytes


@dataclass(frozen=True)
class Entry:
    """One stored event: its key, its hash, what its signature says, and the event (None when
    it does not parse)."""

    key: str
    sha256: str
    signature: Status
    signer: str | None
    event: Event | None


@dataclass(frozen=True)
class Problem:
    key: str
    message: str


@dataclass
class AuditReport:
    entries: list[Entry]
    problems: list[Problem] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def count(self, status: Status) -> int:
        return sum(1 for e in self.entries if e.signature == status)


def read_log(repo: Repository, since: datetime | None = None) -> list[Entry]:
    """Every event (started at or after `since`), oldest first, with its hash and verdict."""
    entries = []
    first = f"{EVENTS}{since.astimezone(UTC):%Y%m%dT%H%M%S}" if since else ""
    for key in event_keys(repo.storage):
        if key < first:
            continue
        try:
            raw = read_bytes(repo.storage, key)
        except ObjectNotFound:
            continue  # deleted since it was listed; audit verify says so if it mattered
        verdict = repo.verdict(key, raw)
        try:
            event: Event | None = Event.model_validate_json(raw)
        except ValidationError:
            event = None
        entries.append(Entry(key, event_hash(raw), verdict.status, verdict.signer, event))
    return entries


def verify_log(repo: Repository) -> AuditReport:
    """Check every event: it parses, its signature (when it has one, or must have one), and
    that every hash an event refers to is an event's hash."""
    entries = read_log(repo)
    report = AuditReport(entries)
    by_hash = {entry.sha256: entry.key for entry in entries}
    for index, entry in enumerate(entries):
        if entry.event is None:
            report.problems.append(Problem(entry.key, "not a valid event: edited or damaged"))
        if entry.signature == "invalid":
            report.problems.append(
                Problem(entry.key, "edited after it was written: it does not match its signature")
            )
        elif entry.signature == "untrusted" and repo.signers_known:
            shown = fingerprint(entry.signer or "")
            report.problems.append(
                Problem(entry.key, f"signed by {shown}…, a key this host does not trust")
            )
        if entry.event is None:
            continue
        for ref in [entry.event.prev, *entry.event.merges]:
            if ref is None or ref in by_hash:
                continue
            before = entries[index - 1].key if index else None
            where = (
                f"{before} was edited, or an event after it was deleted"
                if before
                else "an earlier event was deleted"
            )
            report.problems.append(
                Problem(
                    entry.key,
                    f"refers to an event (sha256 {ref[:12]}…) that is no longer there as it was"
                    f" written: {where}",
                )
            )
    _check_newest(repo, entries, report)
    unsigned = report.count("unsigned")
    if unsigned:
        report.notes.append(
            f"{unsigned} of {len(entries)} events are not signed (written before signing was"
            " set up, or by a host without signing_key): the chain still shows one removed or"
            " edited before a later event, but not one forged at the end"
        )
    first_chained = next((e for e in entries if e.event and e.event.prev), None)
    if first_chained is not None:
        older = entries[: entries.index(first_chained)]
        if len(older) > 1:
            report.notes.append(
                f"{len(older)} events before {first_chained.key} come from before the chain:"
                " one removed from among them cannot be noticed"
            )
    return report


def _check_newest(repo: Repository, entries: list[Entry], report: AuditReport) -> None:
    """The newest event this host wrote must still be there as written: without it, events cut
    off the end of the log would go unnoticed (no later event refers to them)."""
    newest = remembered_newest(repo.id)
    if newest is None:
        report.notes.append(
            "this host wrote no event to this repository: events removed from the end of the"
            " log can only be noticed on a host that wrote them (run audit verify there too)"
        )
        return
    key, sha256 = newest
    stored = next((e for e in entries if e.key == key), None)
    if stored is None:
        report.problems.append(
            Problem(
                key,
                "the newest event this host wrote is gone: events were removed from the end of"
                f" the log (this host's record of it: {witness_path(repo.id)})",
            )
        )
    elif stored.sha256 != sha256 and not any(p.key == key for p in report.problems):
        report.problems.append(Problem(key, "not the event this host wrote: edited or replaced"))
