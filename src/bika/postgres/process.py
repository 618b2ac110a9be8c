"""Running PostgreSQL's client programs with their output streamed and their stderr kept.

A child that fails becomes one clear error carrying its own last words; a child that is
abandoned (an exception upstream) is killed, never left running.
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import IO

from bika.errors import BikaError
from bika.postgres.connection import ConnInfo, scrub

StderrLine = Callable[[bytes], None]

_PR_SET_PDEATHSIG = 1


def _find_prctl() -> Callable[..., int] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        prctl: Callable[..., int] = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    return prctl


_prctl = _find_prctl()


def die_with_parent() -> Callable[[], None] | None:
    """A preexec_fn that makes the child get SIGTERM when bika ends, however it ends (even
    SIGKILL), so no pg_restore or psql goes on unsupervised (Linux; None elsewhere).

    Linux sends it when the *thread* that started the child ends: start such children from a
    thread that outlives them (bika starts them from the main thread)."""
    prctl = _prctl
    if prctl is None:
        return None
    parent = os.getpid()

    def arm() -> None:
        prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
        if os.getppid() != parent:  # bika died before the line above ran
            os._exit(1)

    return arm


class Child:
    def __init__(
        self,
        proc: subprocess.Popen[bytes],
        name: str,
        conn: ConnInfo | None,
        on_stderr_line: StderrLine | None = None,
    ) -> None:
        self.proc = proc
        self.name = name
        self._conn = conn
        self._stderr: list[bytes] = []
        self._on_stderr_line = on_stderr_line
        self._reader = threading.Thread(target=self._drain, daemon=True)
        self._reader.start()

    def _drain(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self._stderr.append(line)
            if self._on_stderr_line is not None:
                try:
                    self._on_stderr_line(line)
                except Exception:
                    # an observer that fails is dropped, not the drain: a child whose stderr
                    # nobody reads blocks once the pipe is full
                    self._on_stderr_line = None

    @property
    def stdout(self) -> IO[bytes]:
        assert self.proc.stdout is not None
        return self.proc.stdout

    @property
    def stdin(self) -> IO[bytes]:
        assert self.proc.stdin is not None
        return self.proc.stdin

    def stderr_text(self) -> str:
        self._reader.join(timeout=10)
        return scrub(b"".join(self._stderr).decode("utf-8", "replace"), self._conn)

    def wait(self) -> int:
        code = self.proc.wait()
        self._reader.join(timeout=10)
        return code

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@contextmanager
def run(
    argv: Sequence[str | Path],
    *,
    conn: ConnInfo | None = None,
    env: dict[str, str] | None = None,
    stdin: bool = False,
    stdout: bool = True,
    on_stderr_line: StderrLine | None = None,
) -> Iterator[Child]:
    """Start a child with piped stdout (and stdin if asked); kill it if the block raises.

    on_stderr_line sees each line of stderr as it arrives, on the thread that drains it."""
    full_env = {**os.environ, **(env or {})}
    full_env.setdefault("LC_MESSAGES", "C")
    try:
        proc = subprocess.Popen(
            [str(a) for a in argv],
            stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
            stdout=subprocess.PIPE if stdout else subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            env=full_env,
            preexec_fn=die_with_parent(),  # a prctl call in the child
        )
    except OSError as exc:
        raise BikaError(f"cannot run {argv[0]}: {exc.strerror}") from exc
    child = Child(proc, Path(str(argv[0])).name, conn, on_stderr_line)
    try:
        yield child
    except BaseException:
        child.kill()
        raise
    finally:
        for stream in (proc.stdin, proc.stdout):
            if stream is not None:
                with suppress(OSError):
                    stream.close()
        if proc.poll() is None:
            child.kill()
        if proc.stderr is not None:
            child._reader.join(timeout=10)
            proc.stderr.close()


def last_error_lines(text: str, limit: int = 3) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    errors = [line for line in lines if "error" in line.lower() or "fatal" in line.lower()]
    chosen = (errors or lines)[-limit:]
    return "; ".join(chosen) if chosen else "no message"
