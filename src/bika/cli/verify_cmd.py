"""`bika verify`: are the backups whole? Exit 0 when every check passes, 1 otherwise.

Without --read-data it checks presence and sizes (no key); with it, every byte; with
--read-data-subset, every byte of a rotating share of the artifacts.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import click

from bika.cli import json_shapes
from bika.cli.app import (
    STATE,
    app,
    identity_option,
    json_option,
    logged,
    note_backups,
    open_repository,
    pg_bin_option,
    repo_option,
)
from bika.cli.progress import stream_progress
from bika.cli.render import print_json
from bika.crypto import load_identities
from bika.errors import RepositoryError
from bika.operations.verify import (
    VerifyResult,
    bytes_to_read,
    open_manifest,
    parse_subset,
    verify_backup,
)
from bika.units import size


@app.command("verify")
@click.argument("backup_id", required=False, metavar="[ID]")
@repo_option
@click.option("--read-data", is_flag=True, help="download, decrypt and check every byte")
@click.option(
    "--read-data-subset",
    metavar="n/t|P%",
    help="like --read-data, for a deterministic share of the artifacts: n/t reads the"
    " n-th of t groups (run 1/7 … 7/7 to read everything once); P% reads a share that"
    " moves on by P% every UTC day, so a daily run reads every artifact within"
    " 100/P days (15% covers a week). An artifact's group depends only on its key",
)
@identity_option
@pg_bin_option
@json_option
@logged("verify")
def verify(
    backup_id: str | None,
    repo: str | None,
    read_data: bool,
    read_data_subset: str | None,
    identity: Path | None,
    pg_bin_dir: str | None,
    as_json: bool,
) -> None:
    """Check that backups (one ID, a prefix or 'latest'; default: all) are complete and, with
    --read-data, readable and unaltered."""
    subset = parse_subset(read_data_subset, datetime.now(UTC).date()) if read_data_subset else None
    read_data = read_data or subset is not None
    settings = STATE.settings(repo=repo, identity=identity, pg_bin_dir=pg_bin_dir)
    repository = open_repository(settings)
    identities = load_identities(settings.require_identity()) if read_data else None
    ids = [repository.resolve(backup_id)] if backup_id else repository.backup_ids()
    if not ids:
        # a verify job that passes on an empty repository would hide that backups never ran
        raise RepositoryError(f"{repository.url} holds no backups: nothing was verified")
    note_backups(*ids, read_data=read_data, subset=subset.text if subset else None)
    results = []
    for one in ids:
        STATE.say(f"verifying {one}{' (reading data)' if read_data else ''}", backup_id=one)
        opened = open_manifest(repository, one, read_data=read_data)
        if isinstance(opened, VerifyResult):
            result = opened  # its manifest cannot be used: a failed backup
        else:
            expected = bytes_to_read(opened, subset) if read_data else None
            with stream_progress(
                "checked", "read", expected_stored=expected, estimate=False
            ) as progress:
                result = verify_backup(
                    repository,
                    opened,
                    identities=identities,
                    pg_bin_dir=settings.pg_bin_dir,
                    subset=subset,
                    progress=progress if read_data else None,
                )
        results.append(result)
        for problem in result.problems:
            STATE.fail(f"FAILED {one} {problem.what}: {problem.message}", backup_id=one)
    failed = [r for r in results if not r.ok]
    note_backups(failed=[r.backup_id for r in failed])
    if as_json:
        print_json(json_shapes.verify_result(repository, read_data, subset, results))
    else:
        how = ""
        if subset is not None:
            read = sum(len(r.read) for r in results)
            stored = sum(r.read_bytes for r in results)
            how = f" with --read-data-subset {subset.text} ({read} artifacts read, {size(stored)})"
        elif read_data:
            how = " with --read-data"
        STATE.out.print(
            f"{len(results) - len(failed)} of {len(results)} backups verified{how}"
            + (f"; failed: {', '.join(r.backup_id for r in failed)}" if failed else "")
        )
    if failed:
        raise click.exceptions.Exit(1)
