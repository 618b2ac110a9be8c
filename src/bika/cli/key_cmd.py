"""`bika key generate` and `bika init`: keys and repositories.

The private key never goes into the repository; only its recipient (public key) does.
"""

from __future__ import annotations

from pathlib import Path

import click

from bika.cli import json_shapes
from bika.cli.app import (
    STATE,
    BikaGroup,
    app,
    json_option,
    open_repository_storage,
    repo_option,
)
from bika.cli.render import print_json
from bika.crypto import generate_identity, parse_recipients, recipient_strings
from bika.errors import ConfigError
from bika.repository import Repository
from bika.signing import generate_signing_key


@app.group("key", cls=BikaGroup)
def key_app() -> None:
    """Manage age keys."""


@key_app.command("generate")
@click.option(
    "--out",
    "-o",
    type=click.Path(path_type=Path),
    required=True,
    metavar="FILE",
    help="where to write the private key (never overwritten)",
)
@click.option(
    "--signing",
    is_flag=True,
    help="an ed25519 signing key for the backup host (signing_key) instead of an age identity;"
    " prints the public key to pin as trusted_signers on restoring hosts",
)
def key_generate(out: Path, signing: bool) -> None:
    """Create an age identity (private key) file and print its recipient (public key)."""
    if signing:
        _generate_signing_key(out)
        return
    recipient = generate_identity(out)
    STATE.say(f"wrote private key to {out} (keep it off backup hosts; it is needed to restore)")
    STATE.out.print(recipient)


def _generate_signing_key(out: Path) -> None:
    """`bika key generate --signing`: the backup host's signing key (signing.py)."""
    public = generate_signing_key(out)
    STATE.say(
        f'wrote signing key to {out}: set signing_key = "{out}" on the backup host, and pin'
        " the public key below as trusted_signers on every host that verifies or restores"
    )
    STATE.out.print(public)


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
