"""`bika run -- COMMAND …`: back up as `bika backup` does (kind pre-migration by default), then
run COMMAND — a migration — only if the backup succeeded.

The backup's id goes to stdout before COMMAND starts, with a note on stderr on how to restore
it. COMMAND inherits stdin, stdout and stderr; SIGINT and SIGTERM reach it (bika/foreground.py)
and its exit code is bika's. If bika fails (the backup, or COMMAND is not found), COMMAND does
not run and the exit code is bika's own.
"""

from __future__ import annotations

import sys
from typing import Any

import click

from bika import foreground
from bika.cli.app import STATE, app
from bika.cli.backup_cmd import backed_up, backup_options


@app.command("run", context_settings={"allow_interspersed_args": False})
@backup_options(default_kind="pre-migration")
@click.argument("command", nargs=-1, type=click.UNPROCESSED, metavar="-- COMMAND [ARG]...")
def run(command: tuple[str, ...], **options: Any) -> int:
    """Back up, then run COMMAND (a migration) if the backup succeeded; exit with its code.

    \b
    Example:
      bika run --label 0042_add_loans -- supabase db push

    \b
    Exit codes:
      COMMAND's own exit code once it ran
      1    the backup failed (COMMAND did not run)
      2    bad usage or settings (COMMAND did not run)
      126  COMMAND exists but may not be executed, as a shell says
      127  COMMAND not found, as a shell says
    """
    if not command:
        raise click.UsageError("no command given; put it after --: bika run -- supabase db push")
    foreground.resolve(command)  # a misspelt command fails now, before a backup nobody needs
    _, manifest = backed_up(**options)
    STATE.out.print(manifest.id)
    STATE.say(
        f"note: if {command[0]} goes wrong, 'bika restore {manifest.id} --to URL --clean'"
        " puts the database back as it was before it"
    )
    sys.stdout.flush()  # the id before anything the command prints
    sys.stderr.flush()
    return foreground.run_foreground(command)
