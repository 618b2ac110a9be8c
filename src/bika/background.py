"""Work on a thread of its own that the caller can always wait for, Ctrl-C or not.

Python 3.11's Thread.join(), interrupted by Ctrl-C, marks the thread as ended though it still
runs; a bika that then exits while that thread is inside pyrage (Rust) aborts with SIGABRT.
"""

from __future__ import annotations

import threading
from collections.abc import Callable


class Background:
    """Runs `work` on a daemon thread; `error` is what it raised, once it has ended."""

    def __init__(self, work: Callable[[], None], name: str) -> None:
        self._work = work
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self.error: BaseException | None = None

    def start(self) -> None:
        self._thread.start()

    @property
    def started(self) -> bool:
        return self._thread.ident is not None

    def _run(self) -> None:
        try:
            self._work()
        except BaseException as exc:  # handed to whoever waits
            self.error = exc
        finally:
            self._done.set()

    def wait(self, cancel: Callable[[], None] | None = None) -> None:
        """Until the work has ended. An interrupt (KeyboardInterrupt, or SystemExit from a
        signal handler) meanwhile calls `cancel`, which must make the work end soon, and is
        raised again once it has: no thread of bika's is left running behind it."""
        if not self.started:
            return
        interrupted: BaseException | None = None
        cancelled = cancel is None
        while True:
            try:
                if not cancelled and interrupted is not None:
                    cancelled = True
                    cancel()  # type: ignore[misc]  # not None when not cancelled
                self._done.wait()
                break
            except BaseException as exc:
                interrupted = interrupted or exc
        if interrupted is not None:
            raise interrupted
