"""`bika rekey`: re-encrypt existing backups to the repository's current recipients, so an
identity removed with `bika key remove` stops opening them.
"""

from __future__ import annotations

from pathlib import Path

import click
from rich.text import Text

from bika.cli import json_shapes
from bika.cli.app import (
    STATE,
    app,
    identity_option,
    json_option,
    logged,
    note_backups,
    open_repository,
    repo_option,
)
from bika.cli.render import print_json
from bika.crypto import load_identities
from bika.errors import ConfigError, IntegrityError
from bika.operations.rekey import RekeyOptions, rekey
from bika.units import size


@app.command("rekey")
@click.argument("backup_ids", nargs=-1, metavar="[ID…]")
@click.option("--all", "every", is_flag=True, help="every backup of the repository")
@click.option(
    "--force", is_flag=True, help="also backups already encrypted to the current recipients"
)
@repo_option
@identity_option
@click.option(
    "--break-lock", is_flag=True, help="remove other processes' locks first (their host is gone)"
)
@json_option
@logged("rekey")
def rekey_backups(
    backup_ids: tuple[str, ...],
    every: bool,
    force: bool,
    repo: str | None,
    identity: Path | None,
    break_lock: bool,
    as_json: bool,
) -> None:
    """Re-encrypt backups to the current recipients (bika key list): streamed, verified, the
    old objects deleted only once the new ones are in place."""
    if every == bool(backup_ids):
        raise ConfigError("give backup ids to rekey, or --all (not both)")
    settings = STATE.settings(repo=repo, identity=identity)
    identities = load_identities(settings.require_identity())
    repository = open_repository(settings)
    ids = None if every else [repository.resolve(ref) for ref in backup_ids]
    options = RekeyOptions(
        backup_ids=ids,
        force=force,
        level=settings.compression_level,
        storage_classes=settings.storage.classes,
        break_lock=break_lock,
    )
    results = rekey(repository, identities, options, on_note=lambda n: STATE.say(f"note: {n}"))
    note_backups(*[r.backup_id for r in results if r.status == "rekeyed"])
    if as_json:
        print_json(json_shapes.rekey_result(repository, results))
    else:
        for result in results:
            extra = f" ({size(result.stored_bytes)})" if result.status == "rekeyed" else ""
            STATE.out.print(Text(f"{result.backup_id}  {result.status}{extra}  {result.detail}"))
    failed = [r.backup_id for r in results if r.status == "failed"]
    if failed:
        raise IntegrityError(
            f"{len(failed)} of {len(results)} backups were not rekeyed (they are as they were):"
            f" {', '.join(failed[:5])}{' …' if len(failed) > 5 else ''}"
        )
