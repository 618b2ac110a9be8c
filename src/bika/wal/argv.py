"""The hand-parsed arguments of `wal push` and `wal fetch` (click costs them too much start-up):
`--name VALUE`, `--name=VALUE`, flags, positionals; -h/--help asks for the usage line."""

from __future__ import annotations


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
