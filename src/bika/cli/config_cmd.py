"""`bika config show`: the settings a command would use, each with where it came from; `bika
config path`: which settings file bika reads. Secrets are never printed.
"""

from __future__ import annotations

import json
import os

import click

from bika.cli import json_shapes
from bika.cli.app import STATE, BikaGroup, app, json_option
from bika.cli.render import print_json
from bika.config import config_candidates, find_config


@app.group("config", cls=BikaGroup)
def config_app() -> None:
    """Show the settings bika uses and where they come from."""


@config_app.command("show")
@json_option
def config_show(as_json: bool) -> None:
    """Every setting's effective value (secrets as ***, database passwords hidden) and where it
    came from: flag, env VAR, file PATH or default."""
    settings = STATE.settings()
    rows = settings.explain()
    path = settings.config_file
    if as_json:
        print_json(json_shapes.config_result(path, rows))
        return
    STATE.out.print(f"settings file: {path or 'none'}", markup=False, soft_wrap=True)
    width = max(len(r.name) for r in rows)
    for r in rows:
        value = "" if r.value is None else json.dumps(r.value, ensure_ascii=False)
        origin = f"{r.source} {r.detail}" if r.detail else r.source
        STATE.out.print(f"{r.name:<{width}} = {value:<24} ({origin})", markup=False, soft_wrap=True)


@config_app.command("path")
def config_path() -> None:
    """Print the settings file bika reads (exit 1 when there is none) and where it looks."""
    path = find_config(STATE.config, os.environ)
    searched = ", ".join(str(p) for p in config_candidates(os.environ))
    if path is None:
        STATE.say(f"no settings file; bika looks for BIKA_CONFIG, then {searched}")
        raise click.exceptions.Exit(1)
    STATE.out.print(str(path), markup=False, soft_wrap=True)
