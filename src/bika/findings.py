"""A finding: one thing a check learned, how bad it is, the fact behind it and how to fix it.

Plain values, no I/O. Monitoring (`bika check`) returns them; the levels map onto the exit codes
monitoring systems expect (Nagios/Icinga: 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

Level = Literal["ok", "info", "warn", "error", "unknown"]

# Nagios plugin convention; info counts as OK
EXIT_CODES: dict[Level, int] = {"ok": 0, "info": 0, "warn": 1, "error": 2, "unknown": 3}
NAGIOS_NAMES: dict[Level, str] = {
    "ok": "OK",
    "info": "OK",
    "warn": "WARNING",
    "error": "CRITICAL",
    "unknown": "UNKNOWN",
}
_RANK: dict[Level, int] = {"ok": 0, "info": 0, "unknown": 1, "warn": 2, "error": 3}


@dataclass(frozen=True)
class Finding:
    level: Level
    what: str
    """The rule or check that found it: "freshness", "drill", "size", …"""
    message: str
    """One line a person can act on."""
    fix: str = ""
    """A command or step that fixes it, when there is one."""
    facts: dict[str, Any] = field(default_factory=dict)
    """The evidence, as plain JSON values (ids, sizes, times as RFC 3339 strings)."""


def worst(findings: Iterable[Finding]) -> Level:
    """The most severe level: error, then warn, then unknown (a check that could not run), then
    ok; an empty list is ok."""
    levels = [f.level for f in findings]
    return max(levels, key=_RANK.__getitem__, default="ok")


def exit_code(findings: Iterable[Finding]) -> int:
    """Nagios exit code of a set of findings: its worst level decides."""
    return EXIT_CODES[worst(findings)]
