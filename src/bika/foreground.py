"""Run a command in the foreground, as bika's last act: it inherits stdin, stdout and stderr,
SIGINT and SIGTERM sent to bika reach it once, and its exit code becomes bika's.

A Ctrl-C at a terminal already reaches the whole foreground process group, the command
included, so it is not sent a second time (a second SIGINT can cut a migration tool's own
rollback short); a signal sent to bika alone (kill, a supervisor, a CI runner) is forwarded.
"""

from __future__ import annotations

import os
import shutil
import signal
from collections.abc import Sequence
from types import FrameType

from bika.errors import BikaError

FORWARDED = (signal.SIGINT, signal.SIGTERM)
_SI_KERNEL = 0x80  # Linux si_code: sent by the kernel (a terminal's ^C), not by kill()
# what Python ignores at startup and subprocess gives back to every child
_RESTORED = (signal.SIGPIPE, signal.SIGXFSZ)


class CommandNotFound(BikaError):
    """The command to run is not on PATH (or not at the path given); 127, as a shell says."""

    exit_code = 127


class CommandNotExecutable(BikaError):
    """The command exists but may not be executed; 126, as a shell says."""

    exit_code = 126


def resolve(command: Sequence[str]) -> str:
    """The executable that command[0] names, or why there is none."""
    name = command[0]
    found = shutil.which(name)
    if found is not None:
        return found
    if os.sep in name and os.path.exists(name):
        raise CommandNotExecutable(f"{name!r} is not executable; chmod +x it or name another")
    raise CommandNotFound(f"command not found: {name!r}; check its spelling and PATH")


def exit_code(status: int) -> int:
    """A wait status as a shell reports it: the exit code, or 128 + the signal that killed it."""
    code = os.waitstatus_to_exitcode(status)
    return 128 - code if code < 0 else code


def run_foreground(command: Sequence[str]) -> int:
    """Run command to its end; return its exit code (128 + N if signal N killed it)."""
    executable = resolve(command)
    waited = {*FORWARDED, signal.SIGCHLD}
    # blocked, the signals wait for sigtimedwait, which says who sent each
    mask = signal.pthread_sigmask(signal.SIG_BLOCK, waited)
    handlers = {signum: signal.getsignal(signum) for signum in FORWARDED}
    try:
        try:
            pid = os.posix_spawn(
                executable, list(command), os.environ, setsigmask=mask, setsigdef=_RESTORED
            )
        except OSError as exc:  # a script without #! line (ENOEXEC), a wrong architecture
            raise CommandNotExecutable(f"cannot run {command[0]!r}: {exc.strerror}") from exc

        def forward(signum: int, frame: FrameType | None) -> None:
            # one delivered to another thread, which does not block it: no sender to tell
            os.kill(pid, signum)

        for signum in FORWARDED:
            if handlers[signum] is not signal.SIG_IGN:
                signal.signal(signum, forward)
        if not hasattr(signal, "sigtimedwait"):  # macOS: no sender to tell, all are forwarded
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)
            return exit_code(os.waitpid(pid, 0)[1])
        while True:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                break
            info = signal.sigtimedwait(waited, 1.0)
            if info is not None and info.si_signo in FORWARDED and info.si_code != _SI_KERNEL:
                os.kill(pid, info.si_signo)
        # a signal that came as the command ended is its, not bika's: not raised on unblocking
        while signal.sigtimedwait(FORWARDED, 0) is not None:
            pass
        return exit_code(status)
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        for signum, handler in handlers.items():
            if handler is not None:
                signal.signal(signum, handler)
