"""The `bika` command: `wal push` and `wal fetch` go straight to their lean path, the rest to
the full command line (click, pydantic, psycopg), which takes ten times as long to import."""

from __future__ import annotations

import sys

LEAN = ("push", "fetch")


def run(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    if len(args) >= 2 and args[0] == "wal" and args[1] == "fetch":
        from bika.wal.fetch import main as fetch

        sys.exit(fetch(args[2:]))
    if len(args) >= 2 and args[0] == "wal" and args[1] in LEAN:
        from bika.wal.command import main

        sys.exit(main(args[1:]))
    import signal

    # a signal during the second it takes to import the CLI (whose own handlers come after)
    signal.signal(signal.SIGTERM, _terminated_early)
    try:
        from bika.cli.main import run as run_cli
    except KeyboardInterrupt:
        print("bika: interrupted", file=sys.stderr)
        sys.exit(130)
    run_cli(args)


def _terminated_early(signum: int, frame: object) -> None:
    import os

    print("bika: terminated", file=sys.stderr, flush=True)
    os._exit(143)
