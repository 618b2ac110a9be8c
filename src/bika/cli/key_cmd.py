"""`bika key generate` and `bika init`: keys and repositories.

The private key never goes into the repository; only its recipient (public key) does.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from bika.cli.app import STATE, RepoOption, app, open_repository_storage
from bika.crypto import generate_identity, parse_recipients, recipient_strings
from bika.errors import ConfigError
from bika.repository import Repository

key_app = typer.Typer(help="Manage age keys.", no_args_is_help=True)
app.add_typer(key_app, name="key")


@key_app.command("generate")
def key_generate(
    out: Annotated[Path, typer.Option("--out", "-o", help="where to write the private key")],
) -> None:
    """Create an age identity (private key) file and print its recipient (public key)."""
    recipient = generate_identity(out)
    STATE.say(f"wrote private key to {out} (keep it off backup hosts; it is needed to restore)")
    STATE.out.print(recipient)


@app.command("init")
def init(
    repo: RepoOption = None,
    recipient: Annotated[
        list[str] | None,
        typer.Option("--recipient", help="age public key (age1…) or file of them; repeatable"),
    ] = None,
) -> None:
    """Create a repository whose backups are encrypted to the given recipients."""
    settings = STATE.settings(repo=repo, recipients=recipient)
    if not settings.recipients:
        raise ConfigError(
            "a repository needs at least one recipient: pass --recipient age1… (from"
            " 'bika key generate'), or set BIKA_RECIPIENTS"
        )
    recipients = recipient_strings(settings.recipients)
    parse_recipients(recipients)
    repository = Repository.init(open_repository_storage(settings), recipients)
    STATE.say(f"created repository {repository.url} (id {repository.id})")
