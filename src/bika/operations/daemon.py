"""`bika daemon`: run the schedule of one or more bika.toml files, one job at a time.

Each step is the bika command itself in a child process (what a user would type), so a daemon
run and a cron run behave alike. A run missed while the daemon was down runs once at start;
SIGTERM stops the running step as SIGTERM stops bika (nothing half-done stays visible) and the
daemon exits 0. /healthz and /metrics are served on a loopback port when asked.
"""

from __future__ import annotations

import json
import logging
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from bika.postgres.connection import redact
from bika.schedule import Job, missed, next_run
from bika.state import state_dir

log = logging.getLogger("bika.daemon")

STOP_SECONDS = 120
"""How long a step may take to clean up after SIGTERM before it is killed."""


@dataclass(frozen=True)
class Entry:
    """One scheduled job of one settings file."""

    config: Path | None
    job: Job
    timezone: str = "UTC"

    @property
    def key(self) -> str:
        return f"{self.config or 'default'}::{self.job.name}"


@dataclass(frozen=True)
class RunResult:
    entry: Entry
    started: datetime
    seconds: float
    exit_code: int
    failed_step: str | None
    error: str


class State:
    """When each entry last ran, kept in a small JSON file so a restart can catch up."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            raw = json.loads(path.read_text())
            self.last = {k: datetime.fromisoformat(v) for k, v in raw.items()}
        except (OSError, ValueError):
            self.last = {}

    def record(self, entry: Entry, when: datetime) -> None:
        self.last[entry.key] = when
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        tmp = self.path.with_name(f".{self.path.name}.tmp")
        tmp.write_text(json.dumps({k: v.isoformat() for k, v in self.last.items()}))
        tmp.replace(self.path)


def run_entry(entry: Entry, stopping: threading.Event) -> RunResult:
    """Run the entry's steps in order; the first failing step ends the chain."""
    started = datetime.now(UTC)
    clock = time.monotonic()
    for step in entry.job.steps:
        argv = [sys.executable, "-m", "bika", *step]
        if entry.config is not None:
            argv += ["--config", str(entry.config)]
        code, error = _run_step(argv, stopping)
        if code != 0:
            return RunResult(entry, started, time.monotonic() - clock, code, step[0], error)
        if stopping.is_set():
            break
    return RunResult(entry, started, time.monotonic() - clock, 0, None, "")


def _run_step(argv: list[str], stopping: threading.Event) -> tuple[int, str]:
    child = subprocess.Popen(
        argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    try:
        _, err = child.communicate()
    except KeyboardInterrupt:
        # SIGTERM/SIGINT to the daemon: let the step stop as bika stops, then report it
        stopping.set()
        child.send_signal(signal.SIGTERM)
        try:
            _, err = child.communicate(timeout=STOP_SECONDS)
        except subprocess.TimeoutExpired:
            child.kill()
            _, err = child.communicate()
    lines = [line for line in (err or "").splitlines() if line.startswith("bika:")]
    return child.returncode, redact(lines[-1] if lines else "")


def _log_result(result: RunResult) -> None:
    fields = {
        "job": result.entry.job.name,
        "config": str(result.entry.config or ""),
        "seconds": round(result.seconds, 1),
        "exit_code": result.exit_code,
    }
    if result.exit_code == 0:
        log.info("job %s ok in %.1fs", result.entry.job.name, result.seconds, extra=fields)
    else:
        log.error(
            "job %s failed at %s (exit %d) after %.1fs: %s",
            result.entry.job.name,
            result.failed_step,
            result.exit_code,
            result.seconds,
            result.error or "no message",
            extra=fields,
        )


class Daemon:
    def __init__(
        self,
        entries: list[Entry],
        state: State,
        *,
        listen: tuple[str, int] | None = None,
        metrics: Callable[[], bytes] | None = None,
        status_page: Callable[[], bytes] | None = None,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.entries = entries
        self.state = state
        self.listen = listen
        self.metrics = metrics
        self.status_page = status_page
        self.now = now
        self.stopping = threading.Event()
        self.alive = time.monotonic()
        self.server: ThreadingHTTPServer | None = None

    def run(self) -> int:
        """Until SIGTERM/SIGINT; returns 0 (a stopped daemon is not a failure)."""
        if self.listen is not None:
            self._serve(self.listen)
        log.info(
            "daemon started: %s", ", ".join(e.key for e in self.entries) or "nothing scheduled"
        )
        try:
            started = self.now()
            for entry in self.entries:
                if missed(entry.job, self.state.last.get(entry.key), started, entry.timezone):
                    log.info(
                        "job %s missed a run while the daemon was down: running it now", entry.key
                    )
                    self._run(entry, started)
            upcoming = {e.key: next_run(e.job, started, e.timezone) for e in self.entries}
            while not self.stopping.is_set() and self.entries:
                entry = min(self.entries, key=lambda e: upcoming[e.key])
                due = upcoming[entry.key]
                while (wait := (due - self.now()).total_seconds()) > 0:
                    self.alive = time.monotonic()
                    time.sleep(min(wait, 1.0))
                self._run(entry, due)
                upcoming[entry.key] = next_run(entry.job, max(due, self.now()), entry.timezone)
        except KeyboardInterrupt:
            pass
        finally:
            if self.server is not None:
                self.server.shutdown()
        log.info("daemon stopped")
        return 0

    def _run(self, entry: Entry, due: datetime) -> None:
        result = run_entry(entry, self.stopping)
        self.alive = time.monotonic()
        _log_result(result)
        if not self.stopping.is_set():
            self.state.record(entry, due)

    def _serve(self, listen: tuple[str, int]) -> None:
        daemon = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path == "/healthz":
                    healthy = time.monotonic() - daemon.alive < 3600 * 24
                    self._reply(200 if healthy else 503, b"ok\n" if healthy else b"stalled\n")
                elif self.path == "/metrics" and daemon.metrics is not None:
                    self._answer(daemon.metrics, "text/plain; version=0.0.4")
                elif self.path == "/" and daemon.status_page is not None:
                    self._answer(daemon.status_page, "text/html; charset=utf-8")
                else:
                    self._reply(404, b"not found\n")

            def _answer(self, make: Callable[[], bytes], kind: str) -> None:
                try:
                    body = make()
                except Exception as exc:  # a request must not kill the daemon
                    self._reply(500, f"{redact(str(exc))}\n".encode())
                    return
                self._reply(200, body, kind)

            def _reply(self, code: int, body: bytes, kind: str = "text/plain") -> None:
                self.send_response(code)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(listen, Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        host, port = self.server.server_address[:2]
        log.info("serving /, /healthz and /metrics on http://%s:%s", host, port)


def state_path(environ: dict[str, str] | None = None) -> Path:
    """$XDG_STATE_HOME/bika/daemon.json (default ~/.local/state/bika/daemon.json)."""
    return state_dir(environ) / "daemon.json"
