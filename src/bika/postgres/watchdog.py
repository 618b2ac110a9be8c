"""Stops the PostgreSQL servers in a scratch folder and deletes it, once its bika has ended.

bika starts this file as a program of its own (`python -I -S watchdog.py FOLDER`, standard
library only) with a pipe on its stdin: the pipe closes when bika ends, however it ends (even
SIGKILL), and then no scratch server or plaintext file of that bika outlives it. The same
functions remove what a bika left whose watchdog died with it (bika.scratch).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import sys
import time
from pathlib import Path

STOP_WAIT = 10.0  # seconds a postmaster gets for an immediate shutdown before SIGKILL
_SCAN_DEPTH = 3  # FOLDER/pg-xxxx/data/postmaster.pid


def postmasters(folder: Path) -> list[int]:
    """The pids of the running postmasters whose data folders are inside `folder`."""
    found: list[int] = []
    for pid_file in _pid_files(folder, _SCAN_DEPTH):
        try:
            lines = pid_file.read_text().split("\n")
            pid = int(lines[0])
        except (OSError, ValueError, IndexError):
            continue
        if _alive(pid) and _serves(pid, pid_file.parent):
            found.append(pid)
    return found


def stop_servers(folder: Path) -> None:
    """Immediate shutdown (SIGQUIT, as `pg_ctl -m immediate`) of every server in `folder`;
    SIGKILL for one that is still up after STOP_WAIT seconds."""
    pids = postmasters(folder)
    for pid in pids:
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGQUIT)
    deadline = time.monotonic() + STOP_WAIT
    while any(_alive(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    for pid in pids:
        if _alive(pid):
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)


def remove(folder: Path) -> None:
    """Stop the servers in `folder`, then delete it."""
    stop_servers(folder)
    shutil.rmtree(folder, ignore_errors=True)


def _pid_files(folder: Path, depth: int) -> list[Path]:
    found: list[Path] = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return found
    for entry in entries:
        if entry.name == "postmaster.pid" and entry.is_file(follow_symlinks=False):
            found.append(Path(entry.path))
        elif depth > 0 and entry.is_dir(follow_symlinks=False):
            found += _pid_files(Path(entry.path), depth - 1)
    return found


def _serves(pid: int, data_dir: Path) -> bool:
    """Whether `pid` is the postmaster of `data_dir` (its working directory), not a process
    that reuses the pid of a stale postmaster.pid; True where /proc cannot tell."""
    try:
        return Path(os.readlink(f"/proc/{pid}/cwd")) == data_dir.resolve()
    except FileNotFoundError:
        return not Path("/proc/self").exists()
    except OSError:
        return False


def _alive(pid: int) -> bool:
    # bika.pids.alive, copied: this program runs with the standard library only
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # a zombie (exited, not yet reaped by its parent) is not running
    with contextlib.suppress(OSError, IndexError):
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat[stat.rindex(")") + 2] != "Z"
    return True


def main(folder: str) -> None:
    # Ctrl-C reaches the whole process group: bika handles it and then ends, which closes the
    # pipe; this program must outlive it to clean up after a bika that did not.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    with contextlib.suppress(OSError):
        while sys.stdin.buffer.read(1 << 16):
            pass
    remove(Path(folder))


if __name__ == "__main__":
    main(sys.argv[1])
