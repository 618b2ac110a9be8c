"""`bika demo`: the whole job on an embedded default, for a first look and as a smoke test.

Exit 0 only if the backup verified, every restored table's rows match, and the drill passed.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import click
from rich.table import Table

from bika.cli.app import STATE, app
from bika.cli.list_cmd import print_backups
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
    result = run_demo(folder, lambda line: STATE.out.print(line))
    table = Table(title="restored rows vs the backup's manifest", title_justify="left")
    for column in ("table", "backup", "restored", ""):
        table.add_column(column, justify="right" if column in ("backup", "restored") else "left")
    for check in result.restored.checks:
        table.add_row(
            check.table,
            f"{check.expected:,}",
            f"{check.restored or 0:,}",
            "ok" if check.ok else "DIFFERS",
        )
    STATE.out.print(table)
    print_backups(result.repo)
    STATE.out.print(f"repository: {result.repo.url}")
    STATE.out.print(f"key:        {result.key}  (try: bika list --repo {result.repo.url})")
    if not result.passed:
        raise BikaError("demo failed: the backup did not verify, or the restore or drill differs")
    STATE.out.print(
        "demo passed: backed up, verified every byte, restored with all rows matching,"
        " drilled with every table's rows and content hash matching"
    )
