"""`bika wal push` and `bika wal fetch`, parsed by hand: PostgreSQL starts one per WAL file,
so this path imports neither click nor the settings models (the launcher sends it here).

Exit codes follow what PostgreSQL makes of them. push: 0 only once the file is durably stored
(or an identical copy was), 1 for every failure (the archiver retries and counts it in
pg_stat_archiver). fetch: 0 restored, 1 only when the repository said "not there" (recovery
moves on), 126 for any other failure, which makes recovery stop instead of ending early at the
wrong point.
"""

from __future__ import annotations

import os
import sys

from bika.errors import BikaError
from bika.wal import settings

TYPE_CHECKING = False
if TYPE_CHECKING:
    from bika.wal.archive import Archive

EXIT_NOT_ARCHIVED = 1
EXIT_FETCH_FAILED = 126

_USAGE = {
    "push": "usage: bika wal push [--repo REPO] [--config FILE] [--no-look-ahead] WALPATH",
    "fetch": (
        "usage: bika wal fetch [--repo REPO] [--config FILE] [--identity FILE] WALNAME DESTPATH"
    ),
}


class _Usage(Exception):
    pass


def _parse(command: str, args: list[str]) -> tuple[dict[str, str | bool], list[str]]:
    options: dict[str, str | bool] = {}
    positional: list[str] = []
    valued = {"--repo", "--config", "--identity"} if command == "fetch" else {"--repo", "--config"}
    flags = {"--no-look-ahead", "--debug"} if command == "push" else {"--debug"}
    items = iter(args)
    for arg in items:
        name, eq, value = arg.partition("=")
        if name in valued:
            if not eq:
                value = next(items, "")
            if not value:
                raise _Usage(f"{name} needs a value")
            options[name] = value
        elif arg in flags:
            options[arg] = True
        elif arg in ("-h", "--help"):
            raise _Usage("")
        elif arg.startswith("--"):
            raise _Usage(f"no such option: {arg}")
        else:
            positional.append(arg)
    return options, positional


def main(args: list[str]) -> int:
    """args: ["push", …] or ["fetch", …]."""
    command, rest = args[0], args[1:]
    failed = EXIT_FETCH_FAILED if command == "fetch" else 1
    debug = "--debug" in rest or os.environ.get("BIKA_DEBUG") == "1"
    try:
        options, positional = _parse(command, rest)
        if len(positional) != (1 if command == "push" else 2):
            raise _Usage("wrong number of arguments")
    except _Usage as exc:
        if not str(exc):  # --help
            print(_USAGE[command])
            return 0
        _say(f"error: {exc}")
        print(_USAGE[command], file=sys.stderr)
        return failed if command == "fetch" else 2
    try:
        if command == "push":
            return _push(options, positional[0])
        return _fetch(options, positional[0], positional[1])
    except BikaError as exc:
        if debug:
            raise
        _say(f"error: wal {command}: {exc}")
        return failed
    except OSError as exc:
        if debug:
            raise
        _say(f"error: wal {command}: {exc.strerror or exc}: {exc.filename or ''}".rstrip(": "))
        return failed
    except KeyboardInterrupt:
        return failed
    except Exception as exc:
        if debug:
            raise
        _say(
            f"internal error: wal {command}: {type(exc).__name__}: {exc} (run with BIKA_DEBUG=1"
            " for the traceback, and please report it)"
        )
        return failed


def _settings(options: dict[str, str | bool]) -> settings.WalSettings:
    config = options.get("--config")
    return settings.load(
        config=str(config) if config else None,
        repo=str(options["--repo"]) if "--repo" in options else None,
        identity=str(options["--identity"]) if "--identity" in options else None,
    )


def _archive(options: dict[str, str | bool]) -> tuple[Archive, settings.WalSettings]:
    from bika.wal.archive import Archive
    from bika.wal.store import open_store

    found = _settings(options)
    return Archive(open_store(found.require_repo(), found.storage)), found


def _push(options: dict[str, str | bool], path: str) -> int:
    from bika.wal import notes
    from bika.wal.store import open_store

    found = _settings(options)
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


def _fetch(options: dict[str, str | bool], name: str, dest: str) -> int:
    from pathlib import Path

    from bika.crypto import load_identities  # only fetch reads a key
    from bika.wal.archive import NotArchived, write_file

    archive, found = _archive(options)
    identities = load_identities(Path(found.require_identity()))
    try:
        data = archive.fetch(name, identities)
    except NotArchived:
        return EXIT_NOT_ARCHIVED
    write_file(dest, data)
    return 0


def _say(line: str) -> None:
    text = " ".join(line.split())
    print(f"bika: {text.encode('ascii', 'backslashreplace').decode()}", file=sys.stderr)
