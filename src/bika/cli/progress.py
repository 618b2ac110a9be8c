"""A live line of byte counts and rates for long streams, shown only on a terminal; with an
expected size, also how far along it is and about how long is left.

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
def stream_progress(
    plain_label: str,
    stored_label: str,
    *,
    expected_plain: int | None = None,
    expected_stored: int | None = None,
    estimate: bool = True,
) -> Iterator[Progress | None]:
    """expected_plain or expected_stored (one of them) is what the count reaches at the end;
    estimate says it is a guess (shown as ~)."""
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
            line = progress_line(
                (plain_label, plain, expected_plain),
                (stored_label, stored, expected_stored),
                now - started,
                estimate=estimate,
            )
            live.update(Text(line))

        yield update


def progress_line(
    plain: tuple[str, int, int | None],
    stored: tuple[str, int, int | None],
    elapsed: float,
    *,
    estimate: bool = True,
) -> str:
    """ "dumped 312.0 MiB of ~450.0 MiB (69%)  stored 101.1 MiB  48.0 MiB/s  7s, ~3s left": each
    count is (label, bytes so far, bytes expected or None). The first count with an expected
    size gives % and ETA; past its expected size (an estimate fell short) they are left out."""
    parts = []
    ahead: tuple[int, int] | None = None
    for label, done, expected in (plain, stored):
        if expected and done <= expected and ahead is None:
            about = "~" if estimate else ""
            parts.append(
                f"{label} {size(done)} of {about}{size(expected)} ({done * 100 // expected}%)"
            )
            ahead = (done, expected)
        else:
            parts.append(f"{label} {size(done)}")
    rate = (ahead[0] if ahead else plain[1]) / max(elapsed, 1e-6)
    clock = f"{elapsed:.0f}s"
    if ahead is not None and ahead[0] > 0 and elapsed >= 1:
        left = (ahead[1] - ahead[0]) * elapsed / ahead[0]
        clock += f", ~{_duration(left)} left"  # a guess, whatever the total
    return "  ".join([*parts, f"{size(rate)}/s", clock])


def _duration(seconds: float) -> str:
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
