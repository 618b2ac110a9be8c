"""What `wal push` and `wal fetch` share (click costs them too much start-up): their hand-parsed
arguments (`--name VALUE`, `--name=VALUE`, flags, positionals; -h/--help asks for the usage
line), their one-line messages and their handling of failures."""

from __future__ import annotations

import sys

from bika.errors import BikaError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable


class Usage(Exception):
    """Wrong arguments (the message says which), or an empty message for --help."""


def parse(
    args: list[str], valued: tuple[str, ...], flags: tuple[str, ...]
) -> tuple[dict[str, str | bool], list[str]]:
    options: dict[str, str | bool] = {}
    positional: list[str] = []
    items = iter(args)
    for arg in items:
        name, eq, value = arg.partition("=")
        if name in valued:
            if not eq:
                value = next(items, "")
            if not value:
                raise Usage(f"{name} needs a value")
            options[name] = value
        elif arg in flags:
            options[arg] = True
        elif arg in ("-h", "--help"):
            raise Usage("")
        elif arg.startswith("--"):
            raise Usage(f"no such option: {arg}")
        else:
            positional.append(arg)
    return options, positional


def say(line: str) -> None:
    """One line on stderr (PostgreSQL's log), prefixed, without control bytes."""
    text = " ".join(line.split())
    print(f"bika: {text.encode('ascii', 'backslashreplace').decode()}", file=sys.stderr)


def guarded(command: str, run: Callable[[], int], failed: int, debug: bool) -> int:
    """run()'s exit code, or `failed` after one line saying why (the traceback with --debug)."""
    try:
        return run()
    except BikaError as exc:
        if debug:
            raise
        say(f"error: wal {command}: {exc}")
    except OSError as exc:
        if debug:
            raise
        say(f"error: wal {command}: {exc.strerror or exc}: {exc.filename or ''}".rstrip(": "))
    except KeyboardInterrupt:
        pass
    except Exception as exc:
        if debug:
            raise
        say(
            f"internal error: wal {command}: {type(exc).__name__}: {exc} (run with BIKA_DEBUG=1"
            " for the traceback, and please report it)"
        )
    return failed
