"""Quantities as people read them: byte counts in binary units ("1.5 GiB").

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
