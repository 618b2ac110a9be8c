"""`bika completion SHELL`: the shell script that completes bika's commands and options.

bash: `eval "$(bika completion bash)"` in ~/.bashrc; zsh and fish alike (see --help).
"""

from __future__ import annotations

import click
from click.shell_completion import get_completion_class

from bika.cli.app import STATE, app

COMPLETE_VAR = "_BIKA_COMPLETE"
SHELLS = ("bash", "zsh", "fish", "powershell")


@app.command("completion")
@click.argument("shell", type=click.Choice(SHELLS))
def completion(shell: str) -> None:
    """Print the completion script for SHELL: add `eval "$(bika completion bash)"` to
    ~/.bashrc (zsh: ~/.zshrc; fish: `bika completion fish | source`)."""
    complete = get_completion_class(shell)
    assert complete is not None  # SHELLS are click's own
    STATE.out.file.write(complete(app, {}, "bika", COMPLETE_VAR).source() + "\n")
