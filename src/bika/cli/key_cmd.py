"""`bika key …`: age identities and a repository's recipients, one function per subcommand.

The private key never goes into the repository; only its recipients (public keys) do.
"""

from __future__ import annotations

import getpass
import os
import sys
from pathlib import Path

import click
from rich.text import Text

from bika.cli import json_shapes
from bika.cli.app import (
    STATE,
    BikaGroup,
    app,
    identity_option,
    json_option,
    logged,
    open_repository,
    repo_option,
)
from bika.cli.render import Column, print_json, print_table
from bika.crypto import PASSPHRASE_VARIABLE, fingerprint, generate_identity, load_identities
from bika.errors import ConfigError, IntegrityError
from bika.operations import keys
from bika.signing import generate_signing_key


@app.group("key", cls=BikaGroup)
def key_app() -> None:
    """Manage age keys: identities (private) and a repository's recipients (public)."""


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
@click.option(
    "--passphrase",
    is_flag=True,
    help=f"protect the file with a passphrase (age -p, scrypt), asked for twice or read from"
    f" {PASSPHRASE_VARIABLE}",
)
def key_generate(out: Path, signing: bool, passphrase: bool) -> None:
    """Create an age identity (private key) file and print its recipient (public key)."""
    if signing:
        if passphrase:
            raise click.UsageError(
                "--passphrase protects an age identity; a signing key file is kept 0600 instead"
            )
        _generate_signing_key(out)
        return
    recipient = generate_identity(out, _new_passphrase() if passphrase else None)
    locked = ", protected by a passphrase" if passphrase else ""
    STATE.say(
        f"wrote private key to {out}{locked} (keep it off backup hosts; it is needed to restore)"
    )
    STATE.out.print(recipient)


def _generate_signing_key(out: Path) -> None:
    """`bika key generate --signing`: the backup host's signing key (signing.py)."""
    public = generate_signing_key(out)
    STATE.say(
        f'wrote signing key to {out}: set signing_key = "{out}" on the backup host, and pin'
        " the public key below as trusted_signers on every host that verifies or restores"
    )
    STATE.out.print(public)


def _new_passphrase() -> str:
    given = os.environ.get(PASSPHRASE_VARIABLE)
    if given is not None:
        if not given:
            raise ConfigError(f"{PASSPHRASE_VARIABLE} is empty; give a passphrase")
        return given
    if not (sys.stdin.isatty() and sys.stderr.isatty()):
        raise ConfigError(
            f"--passphrase needs a terminal to ask for it, or {PASSPHRASE_VARIABLE} set"
        )
    first = getpass.getpass("passphrase for the new key: ")
    if not first:
        raise ConfigError("an empty passphrase protects nothing; leave out --passphrase instead")
    if getpass.getpass("the same passphrase again: ") != first:
        raise ConfigError("the two passphrases differ; run it again")
    return first


@key_app.command("add")
@repo_option
@click.argument("recipient", metavar="AGE1…")
@logged("key add")
def key_add(repo: str | None, recipient: str) -> None:
    """Encrypt future backups to one more recipient as well (e.g. an offline escrow key)."""
    repository = open_repository(STATE.settings(repo=repo))
    if keys.add_recipient(repository, recipient):
        STATE.say(
            f"added recipient {fingerprint(recipient)}: new backups are readable by it; run"
            " 'bika rekey --all' to make the existing ones readable too"
        )
    else:
        STATE.say(f"{fingerprint(recipient)} is a recipient already; nothing changed")


@key_app.command("remove")
@repo_option
@click.argument("recipient", metavar="AGE1…|FINGERPRINT")
@logged("key remove")
def key_remove(repo: str | None, recipient: str) -> None:
    """Stop encrypting future backups to a recipient (refuses the last one)."""
    repository = open_repository(STATE.settings(repo=repo))
    removed = keys.remove_recipient(repository, recipient)
    STATE.say(
        f"removed recipient {fingerprint(removed)}: new backups are not readable by it; existing"
        " ones still are until 'bika rekey --all'"
    )


@key_app.command("list")
@repo_option
@json_option
def key_list(repo: str | None, as_json: bool) -> None:
    """The repository's recipients, each with a short fingerprint."""
    repository = open_repository(STATE.settings(repo=repo))
    entries = keys.recipients(repository)
    if as_json:
        print_json(json_shapes.key_list_result(repository, entries))
        return
    print_table(
        STATE.out,
        [Column("fingerprint"), Column("recipient")],
        [[e.fingerprint, e.recipient] for e in entries],
        title=f"recipients of {repository.url}",
    )


@key_app.command("check")
@repo_option
@identity_option
@json_option
def key_check(repo: str | None, identity: Path | None, as_json: bool) -> None:
    """Which backups an identity can decrypt (reads only each artifact's age header)."""
    settings = STATE.settings(repo=repo, identity=identity)
    identities = load_identities(settings.require_identity())
    repository = open_repository(settings)
    checks = keys.check_identity(repository, identities)
    if as_json:
        print_json(json_shapes.key_check_result(repository, checks))
    else:
        for check in checks:
            if check.ok:
                STATE.out.print(Text(f"{check.backup_id}  opens"))
            else:
                why = [f"cannot open {name}" for name in check.fails] + check.problems
                STATE.out.print(Text(f"{check.backup_id}  NO: {'; '.join(why)}"))
    unreadable = [c.backup_id for c in checks if not c.ok]
    if unreadable:
        raise IntegrityError(
            f"{len(unreadable)} of {len(checks)} backups cannot be decrypted with"
            f" {settings.identity}: keep a key they were encrypted to, or 'bika rekey' them while"
            " a key still opens them"
        )
    STATE.say(f"the identity opens all {len(checks)} backups")
