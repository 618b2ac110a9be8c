"""Where bika's messages go: plain lines on a terminal, timestamped lines with a level (text or
JSON) when nobody watches (cron, systemd) and in --log-file. Passwords never reach either.

Modules log through logging.getLogger(__name__) and never print; the CLI calls configure() once.
Fields given as extra= (backup_id, repository, …) become JSON keys and key=value in text lines.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from bika.errors import ConfigError
from bika.postgres.connection import redact
from bika.untrusted import escape

LOGGER = "bika"
FORMATS = ("text", "json")
LogFormat = Literal["text", "json"]

CONSOLE = "console"
"""extra={CONSOLE: False} keeps a record off stderr (the CLI has printed it already)."""

# until configure(): nothing (not Python's last-resort printing of warnings to stderr)
logging.getLogger(LOGGER).addHandler(logging.NullHandler())

# what every LogRecord has; the rest of its __dict__ came from extra= and is a field
_STANDARD = {*logging.LogRecord("", 0, "", 0, "", None, None).__dict__, "message", "asctime"}


def configure(
    *,
    interactive: bool,
    quiet: bool = False,
    debug: bool = False,
    log_file: Path | None = None,
    log_format: LogFormat = "text",
    command: str | None = None,
) -> logging.Logger:
    """Set up the "bika" logger for this run; calling it again replaces the earlier setup.

    interactive: stderr is a terminal someone reads, so lines stay as bare as bika always printed
    them; otherwise each carries its time and level, in log_format. quiet keeps notes (INFO) off
    stderr but not out of the log file. command is added to every record (a JSON key)."""
    if log_format not in FORMATS:
        raise ConfigError(f"--log-format {log_format!r} is not one of {', '.join(FORMATS)}")
    logger = logging.getLogger(LOGGER)
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
        handler.close()
    logger.setLevel(logging.DEBUG if debug else logging.INFO)
    logger.propagate = False
    context = _Context(command)

    console = _Stderr()
    console.setLevel(logging.WARNING if quiet else logging.DEBUG)
    console.setFormatter(_Bare() if interactive else _formatter(log_format))
    console.addFilter(context)
    console.addFilter(lambda record: getattr(record, CONSOLE, True))
    logger.addHandler(console)

    if log_file is not None:
        try:
            file = logging.FileHandler(log_file, mode="a", encoding="utf-8")
        except OSError as exc:
            raise ConfigError(
                f"cannot open log file {log_file}: {exc.strerror}; check --log-file"
            ) from None
        file.setFormatter(_formatter(log_format))
        file.addFilter(context)
        logger.addHandler(file)
    return logger


def _formatter(log_format: LogFormat) -> logging.Formatter:
    return _JsonLines() if log_format == "json" else _TimedText()


class _Context(logging.Filter):
    def __init__(self, command: str | None) -> None:
        super().__init__()
        self.command = command

    def filter(self, record: logging.LogRecord) -> bool:
        if self.command and not hasattr(record, "command"):
            record.command = self.command
        return True


class _Stderr(logging.Handler):
    """Writes to whatever sys.stderr is at the time, so a live progress display that has
    taken stderr over shows the line above itself instead of being torn."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            sys.stderr.write(self.format(record) + "\n")
            sys.stderr.flush()
        except Exception:
            self.handleError(record)


def _time(record: logging.LogRecord) -> str:
    when = datetime.fromtimestamp(record.created, UTC)
    return when.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _fields(record: logging.LogRecord) -> dict[str, Any]:
    return {
        key: value
        for key, value in record.__dict__.items()
        if key not in _STANDARD and key != CONSOLE and not key.startswith("_")
    }


def _message(record: logging.LogRecord, escaped: bool = True) -> str:
    """The record's message, its control characters escaped for a terminal or a text log (a
    JSON line escapes its own), then the traceback, if it is an error with one."""
    text = escape(record.getMessage()) if escaped else record.getMessage()
    if record.exc_info and record.levelno >= logging.ERROR:
        text += "\n" + logging.Formatter().formatException(record.exc_info)
    return redact(text)


class _Bare(logging.Formatter):
    """A terminal's line: the message as written for a person, who sees when it came."""

    def format(self, record: logging.LogRecord) -> str:
        return _message(record)


class _TimedText(logging.Formatter):
    """2026-12-03T10:52:15.123Z INFO backup: message backup_id=…"""

    def format(self, record: logging.LogRecord) -> str:
        fields = _fields(record)
        command = fields.pop("command", None)
        where = f"{command}:" if command else ""
        message = _message(record)
        parts = [_time(record), record.levelname, where, message]
        # a field the message already names (the backup id, mostly) is not repeated
        parts += [f"{k}={redact(str(v))}" for k, v in fields.items() if str(v) not in message]
        return " ".join(part for part in parts if part).replace("\n", "\n    ")


class _JsonLines(logging.Formatter):
    """One JSON object a line: time, level, message, then the record's fields."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": _time(record),
            "level": record.levelname.lower(),
            "message": _message(record, escaped=False),
        }
        for key, value in _fields(record).items():
            if not isinstance(value, int | float | bool) and value is not None:
                value = redact(str(value))
            entry.setdefault(key, value)
        return json.dumps(entry, ensure_ascii=False)
