"""`bika drill`: restore a backup into a scratch database and prove it matches, exactly.

Exit 0 when the drill passed, 1 when it failed; the result is stored in the repository.
"""

from __future__ import annotations

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
from bika.cli.physical_cmd import physical_drill_option
from bika.cli.progress import stream_progress
from bika.cli.render import print_json
from bika.crypto import load_identities
from bika.errors import ConfigError
from bika.operations.drill import DrillOptions, run_drill
from bika.repository.drills import DrillRecord
from bika.units import count, size

SHOWN_PROBLEMS = 10


@app.command("drill")
@click.argument("backup_id", required=False, metavar="[ID]")
@physical_drill_option
@click.option("--latest", is_flag=True, help="drill the newest backup (the default)")
@click.option(
    "--target",
    metavar="URL",
    help="postgresql:// URL of a server to drill on: bika creates a new database there"
    " and drops it afterwards (default: a throwaway embedded PostgreSQL)",
)
@click.option(
    "--keep", is_flag=True, help="keep the scratch database (embedded: its stopped cluster)"
)
@click.option(
    "--jobs",
    "-j",
    type=int,
    default=0,
    metavar="N",
    help="parallel pg_restore jobs (default: one per core, at most 4)",
)
@repo_option
@identity_option
@pg_bin_option
@json_option
@logged("drill")
def drill(
    backup_id: str | None,
    latest: bool,
    target: str | None,
    keep: bool,
    jobs: int,
    repo: str | None,
    identity: Path | None,
    pg_bin_dir: str | None,
    as_json: bool,
) -> None:
    """Restore a backup (default: the latest) into a scratch database and compare every table's
    exact rows and content hash, and the schema, with the backup; record the result and the
    restore time."""
    if backup_id and latest:
        raise ConfigError("give a backup id or --latest, not both")
    if jobs < 0:
        raise ConfigError("--jobs must be 1 or more (0: one per core)")
    settings = STATE.settings(repo=repo, identity=identity, pg_bin_dir=pg_bin_dir)
    repository = open_repository(settings)
    manifest = repository.manifest(repository.resolve(backup_id or "latest"))
    note_backups(manifest.id, target="server" if target else "embedded")
    identities = load_identities(settings.require_identity())
    options = DrillOptions(target=target, keep=keep, jobs=jobs, pg_bin_dir=settings.pg_bin_dir)
    with stream_progress("restored", "read") as progress:
        outcome = run_drill(repository, manifest, identities, options, STATE.say, progress)
    record = outcome.record
    note_backups(passed=record.passed, rto_seconds=round(record.restore_seconds, 3))
    if as_json:
        print_json(json_shapes.drill_result(record))
    else:
        _print(record)
    if outcome.kept:
        STATE.say(outcome.kept)
    if not record.passed:
        raise click.exceptions.Exit(1)


def _print(record: DrillRecord) -> None:
    out = STATE.out
    for note in record.notes:
        STATE.say(f"note: {note}")
    for problem in record.problems[:SHOWN_PROBLEMS]:
        STATE.fail(f"FAILED {problem}")
    if len(record.problems) > SHOWN_PROBLEMS:
        STATE.fail(f"… and {len(record.problems) - SHOWN_PROBLEMS} more (see --json)")
    skipped = [t for t in record.tables if t.status == "skipped"]
    verdict = "passed" if record.passed else "FAILED"
    out.print(
        f"drill of {record.backup_id} {verdict}: {count(record.tables_checked)} tables"
        f" ({count(record.rows_checked)} rows, {size(record.bytes_hashed)}) and"
        f" {count(record.objects_checked)} schema objects compared"
        + (f", {len(skipped)} tables skipped" if skipped else "")
    )
    out.print(
        f"restore {record.restore_seconds:.1f}s (RTO), verify {record.verify_seconds:.1f}s,"
        f" setup {record.setup_seconds:.1f}s; restored size {size(record.restored_size or 0)}"
        f" on {record.target.kind} PostgreSQL {record.target.server_version}"
    )
