"""The prefetcher behind `bika wal fetch`: a detached process that keeps the segments after the
one PostgreSQL asked for last fetched, checked and decrypted in the spool, on a few threads.

One runs per spool (it holds the spool's lock); the first fetch call that finds none starts it.
It leaves when PostgreSQL has asked for nothing for IDLE seconds, or when its spool is removed,
and takes its spooled segments with it. Its failures only cost speed: a segment it could not
spool is fetched from the repository by the fetch call itself, which reports the error.
"""

from __future__ import annotations

import os
import sys
import threading
import time

from bika.wal.spool import Spool

DEPTH = 8  # segments kept ahead (128 MB of 16 MB segments), as research/pitr.md's prototype
THREADS = 2
IDLE = 30.0  # seconds without a request before the prefetcher leaves
RETRY = 2.0  # seconds before a segment that was missing (or failed) is asked for again
POLL = 0.02
LOG = "prefetch.log"


def start(spool: Spool, lock_fd: int, options: dict[str, str | bool]) -> None:
    """Fork the prefetcher, detached (own session, no inherited descriptors but the lock);
    returns at once in the caller, which must not have started threads."""
    sys.stdout.flush()
    sys.stderr.flush()
    if os.fork():
        os.close(lock_fd)
        return
    try:
        os.setsid()
        devnull = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(devnull, fd)
        os.closerange(3, lock_fd)
        os.closerange(lock_fd + 1, 65536)
        _run(spool, options)
    except BaseException as exc:  # nobody to tell but the log: the fetch calls carry on
        _log(spool, f"prefetcher stopped: {type(exc).__name__}: {exc}")
    finally:
        os._exit(0)


def _run(spool: Spool, options: dict[str, str | bool]) -> None:
    from pathlib import Path

    from bika.crypto import load_identities
    from bika.wal import names, settings
    from bika.wal.archive import Archive, NotArchived
    from bika.wal.store import open_store

    found = settings.from_options(options)
    identities = load_identities(Path(found.require_identity()))
    archive = Archive(open_store(found.require_repo(), found.storage))
    cluster = archive.cluster()
    if cluster is None or str(cluster.get("system_identifier")) != str(spool.system_identifier):
        _log(spool, "the repository archives another cluster than this data directory's")
        return
    size = int(str(cluster["wal_segment_size"]))
    depth = _env_int("BIKA_WAL_PREFETCH", DEPTH)
    idle = float(_env_int("BIKA_WAL_PREFETCH_IDLE", int(IDLE)))
    spool.clear_parts()

    lock = threading.Lock()
    busy: set[str] = set()
    later: dict[str, float] = {}
    stop = threading.Event()

    def pick() -> str | None:
        wanted = spool.wanted()
        if wanted is None:
            return None
        first = names.parse_segment(wanted[0], size)
        window = [
            names.Segment(first.timeline, first.number + i).name(size) for i in range(1, depth + 1)
        ]
        now = time.monotonic()
        with lock:  # a segment leaves `busy` only once spooled, so this listing shows it
            present = spool.entries()
            spool.keep_only({wanted[0], *window, *busy}, present)
            for name in window:
                if name not in present and name not in busy and later.get(name, 0.0) <= now:
                    busy.add(name)
                    spool.started(name)
                    return name
        return None

    def work() -> None:
        while not stop.is_set():
            name = pick()
            if name is None:
                stop.wait(POLL)
                continue
            try:
                plain, sha = archive.fetch_checked(name, identities)
                header = names.read_header(plain)
                if header is None or header.system_identifier != spool.system_identifier:
                    raise ValueError(f"{name} in the repository is not a segment of this cluster")
                spool.put(name, sha, plain)
            except NotArchived:
                spool.abandon(name)
                later[name] = time.monotonic() + RETRY
            except Exception as exc:
                spool.abandon(name)
                later[name] = time.monotonic() + RETRY
                _log(spool, f"{name}: {type(exc).__name__}: {exc}")
            finally:
                with lock:
                    busy.discard(name)

    threads = [threading.Thread(target=work, daemon=True) for _ in range(THREADS)]
    for thread in threads:
        thread.start()
    try:
        seen = spool.wanted()
        last = time.monotonic()
        while os.path.isdir(spool.path):
            time.sleep(0.2)
            wanted = spool.wanted()
            if wanted != seen:
                seen, last = wanted, time.monotonic()
            elif time.monotonic() - last > idle:
                break
    finally:
        stop.set()
        for thread in threads:
            thread.join()
        spool.keep_only(set())
        spool.clear_parts()


def _env_int(variable: str, default: int) -> int:
    try:
        return int(os.environ.get(variable, default))
    except ValueError:
        return default


def _log(spool: Spool, line: str) -> None:
    try:
        with open(os.path.join(spool.path, LOG), "a") as handle:
            handle.write(f"{time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())} {line}\n")
    except OSError:
        pass
