"""Quantities as people and programs read them: byte counts in binary units ("1.5 GiB"),
counts grouped by thousands ("3,038,830"), durations ("30d"), and the one time format of bika's
JSON.

One formatter for the command line and the operations' messages, so a size reads alike everywhere.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from pytimeparse.timeparse import timeparse

from bika.errors import ConfigError

_UNITS = ("B", "KiB", "MiB", "GiB", "TiB")


def size(n: float) -> str:
    """1536 → "1.5 KiB"; under 1 KiB whole bytes ("512 B"); TiB at the most."""
    value = float(n)
    for unit in _UNITS:
        if value < 1024 or unit == _UNITS[-1]:
            return f"{value:.1f} {unit}" if unit != "B" else f"{int(value)} B"
        value /= 1024
    return f"{value:.1f} {_UNITS[-1]}"


def parse_duration(text: str) -> timedelta:
    """ "30d", "4w", "1w2d", "12h" → a timedelta; anything else (or under an hour) is refused.

    pytimeparse reads it; "m" is minutes there, and retention keeps whole hours at the least,
    so a restic-style "6m" (six months) is refused rather than read as six minutes."""
    seconds = timeparse(text.strip()) if text.strip() else None
    if seconds is None or seconds <= 0:
        raise ConfigError(
            f"{text!r} is not a duration; write e.g. 30d (days), 4w (weeks) or 12h (hours)"
        )
    if seconds < 3600:
        raise ConfigError(
            f"{text!r} is {seconds:g} seconds; retention counts hours at the least: write e.g."
            " 30d (days), 4w (weeks) or 12h (hours)"
        )
    return timedelta(seconds=seconds)


def count(n: int) -> str:
    """3038830 → "3,038,830": rows and other counts, grouped by thousands everywhere."""
    return f"{n:,}"


def timestamp(when: datetime) -> str:
    """2026-11-30T10:46:27.067336Z: RFC 3339 in UTC, always six fraction digits, so every time
    bika prints as JSON has one width, sorts as text, and loses nothing of a manifest's."""
    utc = when.astimezone(UTC) if when.tzinfo else when.replace(tzinfo=UTC)  # naive: UTC
    return f"{utc:%Y-%m-%dT%H:%M:%S.%fZ}"
