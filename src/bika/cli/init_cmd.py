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
from bika.repository.repository import ObjectLock
from bika.storage.object_lock import MODES


@app.command("init")
@repo_option
@click.option(
    "--recipient",
    multiple=True,
    metavar="AGE1…|FILE",
    help="age public key (age1…) or a file of them; repeatable [env: BIKA_RECIPIENTS]",
)
@click.option(
    "--object-lock",
    "lock_days",
    type=click.IntRange(1),
    metavar="DAYS",
    help="lock every backup's objects for DAYS days from its start (S3 Object Lock, GCS object"
    " retention, Azure blob immutability; the bucket must support it): nobody can delete or"
    " overwrite them meanwhile",
)
@click.option(
    "--lock-mode",
    type=click.Choice(MODES),
    default="compliance",
    show_default=True,
    help="compliance: nobody can remove the lock; governance: a separate right can"
    " (s3:BypassGovernanceRetention, storage.objects.overrideUnlockedRetention, SAS i)",
)
@json_option
def init(
    repo: str | None,
    recipient: tuple[str, ...],
    lock_days: int | None,
    lock_mode: str,
    as_json: bool,
) -> None:
    """Create a repository whose backups are encrypted to the given recipients."""
    settings = STATE.settings(repo=repo, recipients=list(recipient) or None)
    if not settings.recipients:
        raise ConfigError(
            "a repository needs at least one recipient: pass --recipient age1… (from"
            " 'bika key generate'), or set BIKA_RECIPIENTS"
        )
    recipients = recipient_strings(settings.recipients)
    parse_recipients(recipients)
    lock = ObjectLock(lock_days, lock_mode) if lock_days is not None else None
    repository = Repository.init(open_repository_storage(settings), recipients, lock)
    STATE.say(f"created repository {repository.url} (id {repository.id})")
    if lock is not None:
        STATE.say(
            f"every backup is locked ({lock.mode}) for {lock.days} days from its start: keep"
            " retention at least that long, or prune keeps what it would drop"
        )
    if as_json:
        print_json(json_shapes.init_result(repository))
