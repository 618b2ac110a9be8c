"""`bika copy --to REPO2 [ID…]`: copy backups into a second repository, checking every hash.

Exit 0 when every backup asked for is in the destination, 1 when one could not be copied.
"""

from __future__ import annotations

import click

from bika.cli import json_shapes
from bika.cli.app import (
    STATE,
    app,
    json_option,
    logged,
    note_backups,
    open_other_storage,
    open_repository,
    repo_option,
)
from bika.cli.progress import stream_progress
from bika.cli.render import print_json
from bika.operations.copy import CopyResult, copy_backups, open_destination
from bika.units import size


@app.command("copy")
@click.argument("backup_ids", nargs=-1, metavar="[ID]...")
@click.option(
    "--to",
    metavar="URL",
    help="destination repository, a folder or s3:// gs:// az:// URL; its storage"
    " settings come from [copy.storage] in bika.toml, else [storage] [env: BIKA_COPY_TO]",
)
@repo_option
@click.option(
    "--init", is_flag=True, help="create the destination repository, with the same recipients"
)
@json_option
@logged("copy")
def copy(
    backup_ids: tuple[str, ...], to: str | None, repo: str | None, init: bool, as_json: bool
) -> None:
    """Copy backups (ids, unique prefixes or 'latest'; default: all) to a second repository;
    backups already there are skipped."""
    settings = STATE.settings(repo=repo, **{"copy.to": to})
    source = open_repository(settings)
    storage = open_other_storage(settings.require_copy_to(), settings.copy_storage)
    dest = open_destination(source, storage, init=init)
    ids = [source.resolve(ref) for ref in backup_ids] if backup_ids else source.backup_ids()
    classes = settings.copy_storage

    def said(result: CopyResult) -> None:
        if result.status == "copied":
            STATE.say(f"copied {result.backup_id} ({size(result.stored_bytes)})")
        elif result.status == "present":
            STATE.say(f"skipped {result.backup_id}: {result.detail}")
        else:
            STATE.fail(f"FAILED {result.backup_id}: {result.detail}", backup_id=result.backup_id)

    STATE.say(f"copying {len(ids)} backup(s) from {source.url} to {dest.url}")
    with stream_progress("read", "written") as progress:
        report = copy_backups(
            source,
            dest,
            ids,
            storage_class=classes.storage_class,
            progress=progress,
            on_result=said,
        )
    note_backups(
        *[r.backup_id for r in report.results if r.status == "copied"],
        destination=report.destination,
        failed=[r.backup_id for r in report.results if r.status == "failed"],
    )
    if as_json:
        print_json(json_shapes.copy_result(report))
    else:
        copied = [r for r in report.results if r.status == "copied"]
        STATE.out.print(
            f"{len(copied)} copied ({size(sum(r.stored_bytes for r in copied))}),"
            f" {report.count('present')} already there, {report.count('failed')} failed:"
            f" {report.source} → {report.destination}"
        )
    if not report.ok:
        raise click.exceptions.Exit(1)
