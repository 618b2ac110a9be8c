"""`bika wal push`, parsed by hand: PostgreSQL starts one per WAL file, so this path imports
neither click nor the settings models (the launcher sends it here; `wal fetch` is in fetch.py).

Exit codes follow what PostgreSQL makes of them: 0 only once the file is durably stored (or an
identical copy was), 1 for every failure (the archiver retries and counts it in
pg_stat_archiver).
"""

from __future__ import annotations

import os
import sys

from bika.wal import argv, settings

_USAGE = "usage: bika wal push [--repo REPO] [--config FILE] [--no-look-ahead] WALPATH"


_VALUED = ("--repo", "--config")
_FLAGS = ("--no-look-ahead", "--debug")


def main(args: list[str]) -> int:
    """args: ["push", …] (or ["fetch", …], which fetch.py answers)."""
    command, rest = args[0], args[1:]
    if command == "fetch":
        from bika.wal.fetch import main as fetch

        return fetch(rest)
    debug = "--debug" in rest or os.environ.get("BIKA_DEBUG") == "1"
    try:
        options, positional = argv.parse(rest, _VALUED, _FLAGS)
        if len(positional) != 1:
            raise argv.Usage("wrong number of arguments")
    except argv.Usage as exc:
        if not str(exc):  # --help
            print(_USAGE)
            return 0
        argv.say(f"error: {exc}")
        print(_USAGE, file=sys.stderr)
        return 2
    return argv.guarded(command, lambda: _push(options, positional[0]), 1, debug)


def _push(options: dict[str, str | bool], path: str) -> int:
    from bika.wal import notes
    from bika.wal.store import open_store

    found = settings.from_options(options)
    store = open_store(found.require_repo(), found.storage)
    if notes.take(path, store.url) is not None:
        return 0  # stored by an earlier call's look-ahead: nothing more to import or read
    from bika.wal.archive import Archive

    archive = Archive(store)
    if options.get("--no-look-ahead") or os.environ.get("BIKA_WAL_LOOK_AHEAD") == "0":
        archive.push(path)
    else:
        archive.push_with_look_ahead(path)
    return 0
