"""`bika demo`: the whole job on an embedded default, for a first look and as a smoke test.

Exit 0 only if the backup verified, every restored table's rows match, and the drill passed.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import click

from bika.cli.app import STATE, app
from bika.cli.list_cmd import print_backups
from bika.cli.restore_cmd import print_checks
from bika.errors import BikaError
from bika.operations.demo import run_demo


@app.command("demo")
@click.option(
    "--dir",
    "folder",
    type=click.Path(path_type=Path),
    metavar="DIR",
    help="where to keep the repository and key (default: a new temporary folder)",
)
def demo(folder: Path | None) -> None:
    """Throwaway PostgreSQL + sample data → backup → verify → restore → drill → list."""
    folder = folder or Path(tempfile.mkdtemp(prefix="bika-demo-"))
    result = run_demo(folder, STATE.say)  # progress on stderr, as every command's
    print_checks(result.restored.checks, "restored rows vs the backup's manifest")
    print_backups(result.repo)
    STATE.out.print(f"repository: {result.repo.url}")
    STATE.out.print(f"key:        {result.key}  (try: bika list --repo {result.repo.url})")
    if not result.passed:
        raise BikaError("demo failed: the backup did not verify, or the restore or drill differs")
    STATE.out.print(
        "demo passed: backed up, verified every byte, restored with all rows matching,"
        " drilled with every table's rows and content hash matching"
    )
