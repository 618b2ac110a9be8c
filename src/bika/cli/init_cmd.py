"""`bika init`: create a repository whose backups are encrypted to the given recipients.

The private key never goes into the repository; only its recipients (public keys) do.
"""

from __future__ import annotations

import click

from bika.cli import json_shapes
from bika.cli.app import STATE, app, json_option, open_repository_storage, repo_option
from bika.cli.render import print_json
from bika.crypto import parse_recipients, recipient_strings
from bika.errors import ConfigError
from bika.repository import Repository


@app.command("init")
@repo_option
@click.option(
    "--recipient",
    multiple=True,
    metavar="AGE1…|FILE",
    help="age public key (age1…) or a file of them; repeatable [env: BIKA_RECIPIENTS]",
)
@json_option
def init(repo: str | None, recipient: tuple[str, ...], as_json: bool) -> None:
    """Create a repository whose backups are encrypted to the given recipients."""
    settings = STATE.settings(repo=repo, recipients=list(recipient) or None)
    if not settings.recipients:
        raise ConfigError(
            "a repository needs at least one recipient: pass --recipient age1… (from"
            " 'bika key generate'), or set BIKA_RECIPIENTS"
        )
    recipients = recipient_strings(settings.recipients)
    parse_recipients(recipients)
    repository = Repository.init(open_repository_storage(settings), recipients)
    STATE.say(f"created repository {repository.url} (id {repository.id})")
    if as_json:
        print_json(json_shapes.init_result(repository))
