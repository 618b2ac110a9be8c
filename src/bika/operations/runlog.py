"""Recording runs: one context manager turns a command's run into its event, however it ends.

The CLI wraps each logged command (backup, prune, copy, drill, restore) in recorded(); the
command attaches the repository once it has opened it and names the backups it touched. An
exception is recorded as a failure (KeyboardInterrupt: interrupted) and raised on; an event
that cannot reach the repository is kept locally and uploaded by the next run.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import bika
from bika import clock
from bika.errors import BikaError
from bika.postgres.connection import redact
from bika.repository import Repository
from bika.repository.events import Event, Outcome, keep_pending, upload_pending, write_event
from bika.repository.locks import host_name, user_name


@dataclass
class Run:
    command: str
    url: str | None = None
    repository: Repository | None = None
    backup_ids: list[str] = field(default_factory=list)
    detail: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    """What went wrong with the recording itself, for the command to say."""

    def attach(self, repository: Repository) -> None:
        """The run's repository is open: upload what earlier runs could not."""
        self.repository = repository
        self.url = repository.url
        try:
            upload_pending(repository)
        except (BikaError, OSError) as exc:
            self.warnings.append(f"could not upload pending events: {one_line(str(exc))}")


def one_line(text: str) -> str:
    return redact(" ".join(text.split()))


def _error_line(exc: BaseException) -> str:
    if isinstance(exc, BikaError):
        return one_line(str(exc))
    if isinstance(exc, KeyboardInterrupt):
        return "interrupted"
    message = str(exc)
    code = getattr(exc, "exit_code", None)
    if code is not None and not message:
        return f"exit code {code}"
    return one_line(f"{type(exc).__name__}: {message}" if message else type(exc).__name__)


@contextmanager
def recorded(command: str, url: str | None = None) -> Iterator[Run]:
    run = Run(command, url)
    started = clock.now()
    begun = time.monotonic()
    outcome: Outcome = "ok"
    error: str | None = None
    try:
        yield run
    except BaseException as exc:
        # click's Exit(0) is a success that happens to unwind
        if getattr(exc, "exit_code", None) != 0:
            outcome = "interrupted" if isinstance(exc, KeyboardInterrupt) else "failed"
            error = _error_line(exc)
        raise
    finally:
        event = Event(
            command=command,
            outcome=outcome,
            error=error,
            started_at=started,
            finished_at=clock.now(),
            duration_seconds=round(time.monotonic() - begun, 3),
            user=user_name(),
            host=host_name(),
            pid=os.getpid(),
            bika_version=bika.__version__,
            repository_id=run.repository.id if run.repository else None,
            backup_ids=run.backup_ids,
            detail=run.detail,
        )
        save(run, event)


def save(run: Run, event: Event) -> None:
    """Into the repository, else locally for the next run; never fails the command."""
    if run.repository is not None:
        try:
            write_event(run.repository, event)
            return
        except Exception as exc:  # the run's own error matters more than its log's
            run.warnings.append(f"run not logged in the repository: {one_line(str(exc))}")
    if run.url is None:
        return
    try:
        keep_pending(run.url, event)
    except OSError as exc:
        run.warnings.append(f"run not logged: {exc.strerror or exc}")
