"""`bika runbook`: the disaster-recovery runbook, written from the repository's facts."""

from __future__ import annotations

from pathlib import Path

import click

from bika import runbook
from bika.cli.app import STATE, app, open_repository, repo_option
from bika.cli.check_cmd import report_for
from bika.config import Settings


@app.command("runbook")
@repo_option
@click.option("--markdown", "form", flag_value="markdown", default=True, help="Markdown (default)")
@click.option("--html", "form", flag_value="html", help="one self-contained HTML page")
@click.option(
    "--output",
    "-o",
    type=click.Path(path_type=Path, dir_okay=False),
    metavar="FILE",
    help="write it there instead of to stdout",
)
def runbook_command(repo: str | None, form: str, output: Path | None) -> None:
    """Write the disaster-recovery runbook: where the backups are, which keys decrypt them, the
    commands that restore the newest proven backup, RTO, RPO and what the backups leave out.
    Holds no secret: settings are named, never their values."""
    settings = STATE.settings(repo=repo)
    repository = open_repository(settings)
    report = report_for(settings, repository)
    facts = runbook.Facts(
        repository=report.repository,
        recipients=repository.recipients,
        history=report.history,
        configured=configured_storage(settings),
    )
    text = runbook.html(facts) if form == "html" else runbook.markdown(facts)
    if output is None:
        STATE.out.file.write(text)
    else:
        output.write_text(text)
        STATE.say(f"wrote {output}")


def configured_storage(settings: Settings) -> list[str]:
    """The variable names of the [storage] settings this configuration sets, without values."""
    return [f"BIKA_STORAGE__{name.upper()}" for name in sorted(settings.storage.model_fields_set)]
