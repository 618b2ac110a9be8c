"""A live line of byte counts and rates for long streams, shown only on a terminal.

Operations call the returned function with (plaintext bytes, stored bytes).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

from rich.live import Live
from rich.text import Text

from bika.cli.app import STATE
from bika.stream import Progress
from bika.units import size


@contextmanager
def stream_progress(plain_label: str, stored_label: str) -> Iterator[Progress | None]:
    if not STATE.interactive:
        yield None
        return
    started = time.monotonic()
    last = 0.0
    with Live(Text(""), console=STATE.err, transient=True, refresh_per_second=4) as live:

        def update(plain: int, stored: int) -> None:
            nonlocal last
            now = time.monotonic()
            if now - last < 0.2:
                return
            last = now
            rate = plain / max(now - started, 1e-6)
            live.update(
                Text(
                    f"{plain_label} {size(plain)}  {stored_label} {size(stored)}"
                    f"  {size(rate)}/s  {now - started:.0f}s"
                )
            )

        yield update
