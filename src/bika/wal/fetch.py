"""`bika wal fetch WALNAME DESTPATH`, PostgreSQL's restore_command, parsed by hand (the launcher
sends it here without importing the CLI).

A segment is taken from the prefetch spool when the prefetcher has it (checked against the
sha256 in its name), else fetched from the repository; either way the call makes sure a
prefetcher works ahead. Exit codes are what PostgreSQL makes of them: 0 restored (the exact
plaintext, fsynced, renamed into place), 1 only when the repository said "not there" (recovery
moves on), 126 for any other failure, which makes recovery stop instead of ending early at the
wrong point.
"""

from __future__ import annotations

import os
import sys
import time

from bika.wal import argv
from bika.wal import spool as spooling

EXIT_NOT_ARCHIVED = 1
EXIT_FETCH_FAILED = 126
WAIT = 120.0  # seconds to wait for a segment the prefetcher is writing
USAGE = (
    "usage: bika wal fetch [--repo REPO] [--config FILE] [--identity FILE] [--spool DIR]"
    " [--no-prefetch] WALNAME DESTPATH"
)
_VALUED = ("--repo", "--config", "--identity", "--spool")
_FLAGS = ("--no-prefetch", "--debug")


def main(args: list[str]) -> int:
    """args: the arguments after `bika wal fetch`."""
    debug = "--debug" in args or os.environ.get("BIKA_DEBUG") == "1"
    try:
        options, positional = argv.parse(args, _VALUED, _FLAGS)
        if len(positional) != 2:
            raise argv.Usage("wrong number of arguments")
    except argv.Usage as exc:
        if not str(exc):  # --help
            print(USAGE)
            return 0
        argv.say(f"error: {exc}")
        print(USAGE, file=sys.stderr)
        return EXIT_FETCH_FAILED
    return argv.guarded(
        "fetch", lambda: _fetch(options, positional[0], positional[1]), EXIT_FETCH_FAILED, debug
    )


def _fetch(options: dict[str, str | bool], name: str, dest: str) -> int:
    spool = _spool(options, name)
    if spool is not None:
        try:
            outcome = _from_spool(spool, options, name, dest)
        except OSError as exc:  # the spool only saves time: the repository still answers
            argv.say(f"warning: prefetch spool {spool.path}: {exc.strerror or exc}")
            outcome = "absent"
        if outcome == "taken":
            return 0
        if outcome == "damaged":
            argv.say(f"warning: the spooled copy of {name} was damaged; fetching it again")
    return _from_repository(options, name, dest)


def _from_spool(spool: spooling.Spool, options: dict[str, str | bool], name: str, dest: str) -> str:
    spool.want(name)  # the prefetcher works ahead of this
    outcome = spool.take(name, dest)
    if outcome == "absent" and spool.in_progress(name):
        outcome = _wait(spool, name, dest)
    lock_fd = spool.lock()
    if lock_fd is not None:  # no prefetcher: start one (it goes on from this segment)
        from bika.wal.prefetch import start

        start(spool, lock_fd, options)
    return outcome


def _spool(options: dict[str, str | bool], name: str) -> spooling.Spool | None:
    """The spool for a segment request from a data directory, or None (no prefetching)."""
    if (
        not spooling.is_segment(name)
        or options.get("--no-prefetch")
        or os.environ.get("BIKA_WAL_PREFETCH", "").strip() == "0"
    ):
        return None
    system_identifier = spooling.cluster_of_data_dir()
    if system_identifier is None:
        return None
    # flag over variable over file, as settings.load: the file is read only if neither says
    repo = str(options.get("--repo") or os.environ.get("BIKA_REPO") or "")
    if not repo:
        from bika.wal.settings import from_options

        repo = from_options(options).repo or ""
    parent = str(options.get("--spool") or os.environ.get("BIKA_WAL_SPOOL") or "") or (
        spooling.default_parent()
    )
    if not repo or not parent:
        return None
    return spooling.Spool.open(parent, repo, system_identifier)


def _wait(spool: spooling.Spool, name: str, dest: str) -> str:
    """The prefetcher is writing `name`: wait for it, as long as it is alive and at it."""
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline and spool.in_progress(name):
        if not spool.prefetcher_running():
            break
        time.sleep(0.005)
    return spool.take(name, dest)


def _from_repository(options: dict[str, str | bool], name: str, dest: str) -> int:
    from pathlib import Path

    from bika.crypto import load_identities
    from bika.wal.archive import Archive, NotArchived
    from bika.wal.settings import from_options
    from bika.wal.store import open_store

    found = from_options(options)
    archive = Archive(open_store(found.require_repo(), found.storage))
    identities = load_identities(Path(found.require_identity()))
    try:
        data = archive.fetch(name, identities)
    except NotArchived:
        return EXIT_NOT_ARCHIVED
    tmp = os.path.join(os.path.dirname(dest), f".{os.path.basename(dest)}.bika-{os.getpid()}")
    try:
        spooling.write_whole(tmp, data)
        os.replace(tmp, dest)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return 0
