"""Entry point: runs the typer app and turns errors into one line and an exit code.

A traceback is shown only with --debug (or BIKA_DEBUG=1).
"""

from __future__ import annotations

import os
import sys

import click

from bika.cli import (  # noqa: F401
    backup_cmd,
    copy_cmd,
    demo_cmd,
    doctor_cmd,
    drill_cmd,
    key_cmd,
    list_cmd,
    restore_cmd,
    verify_cmd,
)
from bika.cli.app import STATE, app
from bika.errors import BikaError
from bika.postgres.connection import redact

EXIT_INTERNAL = 70
EXIT_INTERRUPTED = 130


def run() -> None:
    debug = "--debug" in sys.argv or os.environ.get("BIKA_DEBUG") == "1"
    try:
        result = app(standalone_mode=False)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except (click.exceptions.Abort, KeyboardInterrupt):
        print("bika: interrupted", file=sys.stderr)
        sys.exit(EXIT_INTERRUPTED)
    except BikaError as exc:
        if debug:
            raise
        print(f"bika: error: {redact(_one_line(str(exc)))}", file=sys.stderr)
        sys.exit(exc.exit_code)
    except Exception as exc:
        if debug or STATE.debug:
            raise
        print(
            f"bika: internal error: {type(exc).__name__}: {redact(_one_line(str(exc)))}"
            " (run with --debug for the traceback, and please report it)",
            file=sys.stderr,
        )
        sys.exit(EXIT_INTERNAL)
    sys.exit(result if isinstance(result, int) else 0)


def _one_line(text: str) -> str:
    return " ".join(text.split())
