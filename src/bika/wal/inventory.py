"""What the archive holds: segments per timeline, the timeline histories, and for each base
backup how far contiguous WAL reaches from it. Pure: the caller lists wal/ and passes it in.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from bika.wal import names


@dataclass(frozen=True)
class Switch:
    """One line of a timeline history file: `parent` ended at `lsn`, for `reason`."""

    parent: int
    lsn: int
    reason: str


def parse_history(text: str) -> list[Switch]:
    switches = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.split(None, 2)
        switches.append(Switch(int(parts[0]), names.parse_lsn(parts[1]), "".join(parts[2:])))
    return switches


@dataclass(frozen=True)
class Stretch:
    """Contiguous archived segments along one timeline's history."""

    timeline: int
    first: str
    last: str
    last_archived_at: datetime | None


@dataclass
class WalInventory:
    segment_size: int
    segments: dict[int, dict[int, datetime | None]] = field(default_factory=dict)
    """timeline → segment number → when it was stored."""
    histories: dict[int, list[Switch]] = field(default_factory=dict)
    history_names: list[str] = field(default_factory=list)

    def add(self, name: str, modified: datetime | None) -> None:
        if names.is_segment(name):
            segment = names.parse_segment(name, self.segment_size)
            self.segments.setdefault(segment.timeline, {})[segment.number] = modified
        elif names.is_history(name):
            self.history_names.append(name)

    def stretch_from(self, timeline: int, start: names.Segment) -> tuple[Stretch, str | None]:
        """The contiguous run of segments from `start` along `timeline`'s history (a parent's
        segments before each switch), and the first missing segment when later ones exist (a
        gap: every point after it is unrecoverable), else None."""
        number = start.number
        last: tuple[int, int] | None = None
        while number in self.segments.get(self._timeline_at(timeline, number), {}):
            last = (self._timeline_at(timeline, number), number)
            number += 1
        missing_tli = self._timeline_at(timeline, number)
        later = any(
            n > number for t, stored in self.segments.items() if t >= missing_tli for n in stored
        )
        gap = names.Segment(missing_tli, number).name(self.segment_size) if later else None
        if last is None:
            return Stretch(timeline, "", "", None), start.name(self.segment_size)
        tli, end = last
        first_tli = self._timeline_at(timeline, start.number)
        return (
            Stretch(
                timeline,
                names.Segment(first_tli, start.number).name(self.segment_size),
                names.Segment(tli, end).name(self.segment_size),
                self.segments[tli][end],
            ),
            gap,
        )

    def _timeline_at(self, timeline: int, number: int) -> int:
        """Which timeline's segment `number` is on `timeline`'s history: a switch at LSN L
        moves to the child from L's segment on (the switch segment is on both)."""
        for switch in self.histories.get(timeline, []):
            if number < switch.lsn // self.segment_size:
                return switch.parent
        return timeline

    def descendants(self, timeline: int, after_lsn: int) -> list[int]:
        """Timelines that fork from `timeline` after `after_lsn`."""
        return sorted(
            tli
            for tli, history in self.histories.items()
            if any(s.parent == timeline and s.lsn > after_lsn for s in history)
        )

    def newest(self) -> tuple[str, datetime | None] | None:
        best: tuple[int, int] | None = None
        for tli, stored in self.segments.items():
            for number in stored:
                if best is None or (number, tli) > (best[1], best[0]):
                    best = (tli, number)
        if best is None:
            return None
        return names.Segment(*best).name(self.segment_size), self.segments[best[0]][best[1]]

    def ranges(self, timeline: int) -> list[tuple[str, str, datetime | None]]:
        """The contiguous runs of one timeline's own segments: (first, last, last stored at)."""
        numbers = sorted(self.segments.get(timeline, {}))
        runs: list[tuple[str, str, datetime | None]] = []
        start = previous = None
        for number in [*numbers, None]:
            if number is not None and previous is not None and number == previous + 1:
                previous = number
                continue
            if start is not None and previous is not None:
                runs.append(
                    (
                        names.Segment(timeline, start).name(self.segment_size),
                        names.Segment(timeline, previous).name(self.segment_size),
                        self.segments[timeline][previous],
                    )
                )
            start = previous = number
        return runs


@dataclass(frozen=True)
class BackupReach:
    """How far one base backup can be recovered: to the end of the WAL contiguous from it."""

    backup_id: str
    timeline: int
    finished_at: datetime
    stop_segment: str
    reach: Stretch
    gap: str | None
    """The first missing segment, when later segments exist."""

    @property
    def consistent(self) -> bool:
        return bool(self.reach.last) and self.reach.last[8:] >= self.stop_segment[8:]


@dataclass(frozen=True)
class WalState:
    """What `bika wal status` and the monitoring rule read."""

    newest_segment: str | None
    newest_at: datetime | None
    timelines: dict[int, list[tuple[str, str, datetime | None]]]
    backups: list[BackupReach]
    """Oldest first."""
    refused: list[tuple[str, str]] = field(default_factory=list)
    """Physical backups whose manifest cannot be used (id, why): damaged or not signed by a
    key this host trusts."""
