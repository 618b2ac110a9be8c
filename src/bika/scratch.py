"""Scratch space: the one private folder per process where plaintext copies and throwaway
servers live, so that nothing of them outlives the bika that made them.

`folder(base)` is `<base>/bika-<pid>-<random>/` (mode 0700), with the owner's pid and start
time in `owner`. A watchdog process (bika.postgres.watchdog) deletes it and stops its servers
when the owner ends, however it ends; and making one first removes what dead owners left.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import re
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

from bika.errors import ConfigError
from bika.pids import alive
from bika.postgres import watchdog

PREFIX = "bika-"
OWNER_FILE = "owner"
_NAME = re.compile(r"bika-(\d+)-[a-z0-9_]{8}")  # tempfile.mkdtemp's random part

_lock = threading.Lock()
_folders: dict[Path, Path] = {}  # base (resolved) → this process's folder in it
_watchdogs: dict[Path, subprocess.Popen[bytes]] = {}  # folder → its watchdog


def folder(base: Path | None = None) -> Path:
    """This process's scratch folder under `base` (default: the system temp folder), made on
    first use, after removing the folders of bika processes that have ended."""
    base = Path(base or tempfile.gettempdir()).expanduser()
    if not base.is_dir():
        what = "is not a folder" if base.exists() else "does not exist"
        raise ConfigError(f"temporary folder {base} {what}; create it or choose another one")
    key = base.resolve()
    with _lock:
        known = _folders.get(key)
        if known is not None and known.is_dir():
            return known
        remove_leftovers(key)
        try:
            made = Path(tempfile.mkdtemp(prefix=f"{PREFIX}{os.getpid()}-", dir=key))
        except OSError as exc:
            raise ConfigError(
                f"cannot create a temporary folder in {base}: {exc.strerror}; choose another"
                " one (--temp-dir or TMPDIR)"
            ) from None
        (made / OWNER_FILE).write_text(f"{os.getpid()} {_start_time(os.getpid())}\n")
        _watch(made)
        _folders[key] = made
        return made


def tidy(base: Path | None = None) -> None:
    """Remove what ended bika processes left under `base` (default: the system temp folder),
    for commands that may need no scratch folder of their own."""
    with _lock:
        remove_leftovers(Path(base or tempfile.gettempdir()).expanduser())


def share_with_group(path: Path, gid: int) -> None:
    """Let members of group `gid` enter (not list) the scratch folder `path`: the OS user a
    scratch server runs as when bika runs as root (mode 0710)."""
    os.chown(path, -1, gid)
    path.chmod(0o710)


def remove_leftovers(base: Path) -> list[Path]:
    """Delete the scratch folders under `base` whose bika has ended (stopping their servers);
    returns them. Folders of other OS users are left alone."""
    removed: list[Path] = []
    try:
        entries = list(os.scandir(base))
    except OSError:
        return removed
    for entry in entries:
        if not _NAME.fullmatch(entry.name) or not entry.is_dir(follow_symlinks=False):
            continue
        with contextlib.suppress(OSError):
            if entry.stat(follow_symlinks=False).st_uid != os.geteuid():
                continue
        path = Path(entry.path)
        if _owner_alive(path):
            continue
        watchdog.remove(path)
        removed.append(path)
    return removed


def _owner_alive(path: Path) -> bool:
    try:
        pid_text, started = (path / OWNER_FILE).read_text().split()
        pid = int(pid_text)
    except FileNotFoundError:
        # written right after the folder is made: a folder without one is either being made
        # now (its pid is alive) or was abandoned in that instant
        found = _NAME.fullmatch(path.name)
        return found is not None and alive(int(found.group(1)))
    except (OSError, ValueError):
        return False
    if not alive(pid):
        return False
    # the pid may have been reused since: the owner's start time tells
    return started in ("-", _start_time(pid))


def _start_time(pid: int) -> str:
    """When process `pid` started (clock ticks since boot, from /proc), or "-" if unknown."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat[stat.rindex(")") + 2 :].split()[19]
    except (OSError, ValueError, IndexError):
        return "-"


def _watch(path: Path) -> None:
    """Start the watchdog that removes `path` once this process ends."""
    try:
        guard = subprocess.Popen(
            [sys.executable, "-I", "-S", watchdog.__file__, str(path)],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            cwd="/",
            # its own session: a signal to bika's process group (Ctrl-C, kill -KILL -PGID)
            # does not reach it
            start_new_session=True,
        )
    except OSError:
        return  # then later bika runs remove the folder (remove_leftovers)
    _watchdogs[path] = guard


def _remove_all() -> None:
    """At exit: hand each folder to its watchdog (closing the pipe), which deletes it while
    bika exits (a drill's restored database takes a while to delete); without a watchdog,
    delete it here."""
    with _lock:
        folders = list(_folders.values())
        _folders.clear()
    for path in folders:
        guard = _watchdogs.pop(path, None)
        if guard is not None and guard.poll() is None and guard.stdin is not None:
            with contextlib.suppress(OSError):
                guard.stdin.close()
                continue
        with contextlib.suppress(Exception):
            watchdog.remove(path)


atexit.register(_remove_all)
