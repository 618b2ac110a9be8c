"""`bika wal receive`: for servers whose archive_command cannot be set, stream their WAL over a
replication slot with the bundled pg_receivewal, and store each finished file like `wal push`.

pg_receivewal writes into a local staging folder: the segment being received is a `.partial`
file (fsynced on every write with --synchronous), renamed to its name once complete. Each
finished segment or history file goes through the same Archive.push as archive_command (name,
idempotency, system identifier check) and is deleted from staging only once stored.
"""

from __future__ import annotations

import hashlib
import logging
import os
import subprocess
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from bika.errors import BikaError, PostgresError
from bika.postgres import binaries
from bika.postgres.connection import ConnInfo
from bika.postgres.process import die_with_parent
from bika.postgres.receivewal import create_slot_argv, pg_receivewal_argv, said
from bika.wal import names
from bika.wal.archive import Archive, ArchiveConflict

_LOG = logging.getLogger(__name__)

POLL = 0.2  # seconds between looks at the staging folder
RESTART_BACKOFF = (1.0, 60.0)  # pg_receivewal restarts after a lost connection, doubling


@dataclass(frozen=True)
class ReceiveOptions:
    slot: str = "bika"
    synchronous: bool = False
    staging: Path | None = None


def default_staging(repo_url: str) -> Path:
    """$XDG_STATE_HOME/bika/wal-receive/<repository hash> (default ~/.local/state/…)."""
    state = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    if "://" not in repo_url:
        repo_url = str(Path(repo_url).expanduser().absolute())
    return Path(state) / "bika" / "wal-receive" / hashlib.sha256(repo_url.encode()).hexdigest()[:16]


def finished_files(staging: Path) -> list[Path]:
    """The staged files pg_receivewal has completed (not .partial), oldest first; history
    files before segments, as PostgreSQL archives them."""
    found = [
        entry
        for entry in staging.iterdir()
        if names.is_segment(entry.name) or names.is_history(entry.name)
    ]
    return sorted(found, key=lambda p: (not p.name.endswith(".history"), p.name))


def store_finished(archive: Archive, staging: Path) -> list[str]:
    """Push every finished staged file, deleting each once stored; the names stored."""
    stored = []
    for path in finished_files(staging):
        archive.push(str(path))  # raises, leaving it staged, unless stored (or stored already)
        path.unlink()
        stored.append(path.name)
    return stored


def receive(
    archive: Archive,
    conn: ConnInfo,
    options: ReceiveOptions,
    *,
    say: Callable[[str], None],
    stop: threading.Event | None = None,
) -> int:
    """Receive until SIGTERM/Ctrl-C (or `stop`); the number of files stored."""
    stop = stop or threading.Event()
    tool = binaries.tool("pg_receivewal", binaries.embedded_bin_dir())
    conninfo, env = conn.libpq_args()
    env = {**os.environ, **env}
    staging = options.staging or default_staging(archive.store.url)
    staging.mkdir(mode=0o700, parents=True, exist_ok=True)
    staging.chmod(0o700)
    archive.recipients()  # a repository that is not one fails here, before any streaming
    created = subprocess.run(
        create_slot_argv(tool, conninfo, options.slot),
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    if created.returncode != 0:
        raise PostgresError(
            f"cannot create replication slot {options.slot} on {conn.redacted()}:"
            f" {said(conn.scrub(created.stderr))} (the role needs REPLICATION, and the"
            " server max_replication_slots and max_wal_senders above 0)"
        )
    say(
        f"receiving WAL from {conn.redacted()} over slot {options.slot} into {staging}"
        + (" (synchronous)" if options.synchronous else "")
    )
    quiet = _Repeats(say)
    stored = 0
    backoff = RESTART_BACKOFF[0]
    child: subprocess.Popen[str] | None = None
    try:
        while not stop.is_set():
            if child is None:
                child = subprocess.Popen(
                    pg_receivewal_argv(
                        tool, conninfo, staging, options.slot, synchronous=options.synchronous
                    ),
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.PIPE,
                    text=True,
                    env=env,
                    preexec_fn=die_with_parent(),  # a prctl call in the child
                )
                started = time.monotonic()
                # read as it comes, so a chatty pg_receivewal never blocks on a full pipe
                tail: deque[str] = deque(maxlen=20)
                reader = threading.Thread(target=tail.extend, args=(child.stderr,), daemon=True)
                reader.start()
            stored += _store(archive, staging, quiet)
            if child.poll() is not None:
                reader.join(timeout=5)
                reason = said(conn.scrub("".join(tail)))
                quiet(f"pg_receivewal stopped ({reason or f'exit {child.returncode}'}); restarting")
                child = None
                if time.monotonic() - started > RESTART_BACKOFF[1]:
                    backoff = RESTART_BACKOFF[0]
                stop.wait(backoff)
                backoff = min(backoff * 2, RESTART_BACKOFF[1])
                continue
            stop.wait(POLL)
    except KeyboardInterrupt:  # SIGTERM arrives as Terminated, a KeyboardInterrupt
        pass
    finally:
        if child is not None:
            child.terminate()  # pg_receivewal fsyncs its .partial and exits
            try:
                child.wait(timeout=30)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
    stored += _store(archive, staging, quiet)
    say(f"stopped; {stored} WAL files stored (the current .partial stays in {staging})")
    return stored


def _store(archive: Archive, staging: Path, say: Callable[[str], None]) -> int:
    try:
        done = store_finished(archive, staging)
    except ArchiveConflict:
        raise  # another cluster, or other content under an archived name: never retried
    except BikaError as exc:  # storage down: the files stay staged, and the next round retries
        say(f"cannot store staged WAL yet: {exc}")
        return 0
    for name in done:
        _LOG.debug(f"stored {name}")
    return len(done)


class _Repeats:
    """Says a line, but the same line again only after a minute (a down repository is retried
    every POLL seconds)."""

    def __init__(self, say: Callable[[str], None]) -> None:
        self.say = say
        self.last: tuple[str, float] = ("", 0.0)

    def __call__(self, line: str) -> None:
        now = time.monotonic()
        if line != self.last[0] or now - self.last[1] > 60:
            self.say(line)
            self.last = (line, now)
