"""`bika verify`: are the backups whole? Exit 0 when every check passes, 1 otherwise.

Without --read-data it checks presence and sizes (no key); with it, every byte.
"""

from __future__ import annotations

import json
from typing import Annotated

import typer

from bika.cli.app import STATE, IdentityOption, JsonOption, PgBinOption, RepoOption, app
from bika.crypto import load_identities
from bika.operations.verify import verify_backup
from bika.repository import Repository
from bika.storage import open_storage


@app.command("verify")
def verify(
    backup_id: Annotated[
        str | None, typer.Argument(help="one backup (id, prefix or 'latest'); default: all")
    ] = None,
    repo: RepoOption = None,
    read_data: Annotated[
        bool, typer.Option("--read-data", help="download, decrypt and check every byte")
    ] = False,
    identity: IdentityOption = None,
    pg_bin_dir: PgBinOption = None,
    as_json: JsonOption = False,
) -> None:
    """Check that backups are complete and, with --read-data, readable and unaltered."""
    settings = STATE.settings(repo=repo, identity=identity, pg_bin_dir=pg_bin_dir)
    repository = Repository.open(open_storage(settings.require_repo()))
    identities = load_identities(settings.require_identity()) if read_data else None
    ids = [repository.resolve(backup_id)] if backup_id else repository.backup_ids()
    results = []
    for one in ids:
        STATE.say(f"verifying {one}{' (reading data)' if read_data else ''}")
        result = verify_backup(
            repository,
            repository.manifest(one),
            identities=identities,
            pg_bin_dir=settings.pg_bin_dir,
        )
        results.append(result)
        for problem in result.problems:
            STATE.err.print(f"FAILED {one} {problem.artifact}: {problem.message}")
    failed = [r for r in results if not r.ok]
    if as_json:
        STATE.out.print_json(
            json.dumps(
                {
                    "repository": repository.url,
                    "read_data": read_data,
                    "backups": [
                        {
                            "id": r.backup_id,
                            "ok": r.ok,
                            "problems": [
                                {"artifact": p.artifact, "message": p.message} for p in r.problems
                            ],
                        }
                        for r in results
                    ],
                }
            )
        )
    else:
        STATE.out.print(
            f"{len(results) - len(failed)} of {len(results)} backups verified"
            f"{' with --read-data' if read_data else ''}"
            + (f"; failed: {', '.join(r.backup_id for r in failed)}" if failed else "")
        )
    if failed:
        raise typer.Exit(1)
