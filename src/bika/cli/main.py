"""Entry point: runs the click app and turns every outcome into one line and an exit code.

A traceback is shown only with --debug (or BIKA_DEBUG=1). SIGTERM is handled as SIGINT is, so
a stopped service cleans up exactly as a Ctrl-C does.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
from types import FrameType

import click

from bika.cli.app import STATE, app
from bika.cli.completion_cmd import COMPLETE_VAR
from bika.cli.render import JSON, print_json, text
from bika.errors import BikaError, Terminated
from bika.log import CONSOLE
from bika.postgres.connection import redact

EXIT_USAGE = 2
EXIT_INTERNAL = 70
EXIT_INTERRUPTED = 128 + signal.SIGINT
EXIT_TERMINATED = 128 + signal.SIGTERM
EXIT_BROKEN_PIPE = 128 + signal.SIGPIPE


def _terminate(signum: int, frame: FrameType | None) -> None:
    raise Terminated()


def run(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    debug = "--debug" in args or os.environ.get("BIKA_DEBUG") == "1"
    signal.signal(signal.SIGTERM, _terminate)
    for stream in (sys.stdout, sys.stderr):
        # a terminal that cannot show "→" gets "\u2192", not a UnicodeEncodeError
        stream.reconfigure(errors="backslashreplace")  # type: ignore[union-attr]
    if os.environ.get(COMPLETE_VAR):
        app.main(args, prog_name="bika", complete_var=COMPLETE_VAR)
    try:
        code = _main(args, debug)
    except BrokenPipeError:
        code = _broken_pipe()
    sys.exit(code)


def _main(args: list[str], debug: bool) -> int:
    # a usage error can come before --json is parsed
    JSON.requested = "--json" in args[: args.index("--")] if "--" in args else "--json" in args
    try:
        if not args:
            raise click.UsageError("no command given; 'bika --help' lists them")
        with app.make_context("bika", list(args)) as ctx:
            result = app.invoke(ctx)
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except click.exceptions.NoArgsIsHelpError as exc:
        where = exc.ctx.command_path if exc.ctx is not None else "bika"
        return _error("usage", f"no command given; '{where} --help' lists them", EXIT_USAGE)
    except click.UsageError as exc:
        hint = f" (see '{exc.ctx.command_path} --help')" if exc.ctx is not None else ""
        return _error("usage", f"{exc.format_message()}{hint}", EXIT_USAGE)
    except (KeyboardInterrupt, click.exceptions.Abort) as exc:
        terminated = isinstance(exc, Terminated)
        code = EXIT_TERMINATED if terminated else EXIT_INTERRUPTED
        return _error("", "terminated" if terminated else "interrupted", code)
    except click.ClickException as exc:
        return _error("error", exc.format_message(), exc.exit_code)
    except BrokenPipeError:
        raise
    except BikaError as exc:
        if debug or STATE.debug:
            raise
        return _error("error", str(exc), exc.exit_code)
    except Exception as exc:
        if debug or STATE.debug:
            raise
        return _error(
            "internal error",
            f"{type(exc).__name__}: {exc} (run with --debug for the traceback, and please"
            " report it)",
            EXIT_INTERNAL,
        )
    return result if isinstance(result, int) else 0


def _error(kind: str, message: str, code: int) -> int:
    """One line on stderr, its control characters escaped (it may quote a label or a path);
    under --json also restic's exit_error document on stdout, unless a result is there."""
    said = redact(_one_line(message))
    if JSON.requested and not JSON.written:
        from bika.cli.json_shapes import exit_error  # with every shape: only when needed

        print_json(exit_error(code, said))
    line = f"{kind}: {said}" if kind else said
    print(f"bika: {text(line)}", file=sys.stderr)
    # and into --log-file, if the run got as far as setting it up
    logging.getLogger("bika.cli").error(line, extra={CONSOLE: False})
    return code


def _broken_pipe() -> int:
    """The reader of our output went away (`bika list | head -1`): stop quietly, as git does.

    stdout is pointed at /dev/null so the interpreter's final flush cannot fail again."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    return EXIT_BROKEN_PIPE


def _one_line(text: str) -> str:
    return " ".join(text.split())
