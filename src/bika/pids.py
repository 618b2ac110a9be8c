"""Whether a process still runs: for locks, scratch folders and servers left by a dead bika.

The watchdog (postgres/watchdog.py), a program that runs with the standard library only, keeps
a copy of it.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path


def alive(pid: int) -> bool:
    """True while process `pid` runs (another user's too); a zombie, exited but not yet reaped
    by its parent, does not run."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    with contextlib.suppress(OSError, IndexError):
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat[stat.rindex(")") + 2] != "Z"
    return True
