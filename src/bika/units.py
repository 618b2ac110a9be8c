"""Quantities as people read them: byte counts in binary units ("1.5 GiB"), counts grouped
by thousands ("3,038,830").

One formatter for the command line and the operations' messages, so a size reads alike everywhere.
"""

from __future__ import annotations

_UNITS = ("B", "KiB", "MiB", "GiB", "TiB")


def size(n: float) -> str:
    """1536 → "1.5 KiB"; under 1 KiB whole bytes ("512 B"); TiB at the most."""
    value = float(n)
    for unit in _UNITS:
        if value < 1024 or unit == _UNITS[-1]:
            return f"{value:.1f} {unit}" if unit != "B" else f"{int(value)} B"
        value /= 1024
    return f"{value:.1f} {_UNITS[-1]}"


def count(n: int) -> str:
    """3038830 → "3,038,830": rows and other counts, grouped by thousands everywhere."""
    return f"{n:,}"
