"""`bika check`: is the backup routine healthy? Findings from the repository itself, with the
exit codes monitoring systems expect: 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN (Nagios/Icinga).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import click
from rich.text import Text

from bika.checklist import checklist
from bika.checklist import html as render_html
from bika.checklist import markdown as render_markdown
from bika.cli import json_shapes
from bika.cli.app import STATE, app, json_option, open_other_storage, open_repository, repo_option
from bika.cli.render import Cell, Column, cell, print_json, print_table
from bika.config import Settings
from bika.errors import BikaError, ConfigError
from bika.findings import NAGIOS_NAMES, exit_code, worst
from bika.notify import send, transition
from bika.operations.check import CheckReport, check_repository, remember_status, unreachable
from bika.report import page
from bika.repository import Repository
from bika.supabase.api import PlatformBackups

_STYLE = {"ok": "green", "info": "blue", "warn": "yellow", "error": "red", "unknown": "magenta"}


@app.command("check")
@repo_option
@click.option(
    "--textfile",
    type=click.Path(path_type=Path, file_okay=False),
    metavar="DIR",
    help="also write the metrics to DIR/bika.prom for node_exporter's textfile collector",
)
@json_option
def check(repo: str | None, textfile: Path | None, as_json: bool) -> None:
    """Judge the backups: newest age, failed runs, size and row anomalies, drills, the second
    copy. Exit 0 OK, 1 warning, 2 critical, 3 unknown (the repository could not be read)."""
    settings = STATE.settings(repo=repo)
    try:
        repository = open_repository(settings)
    except ConfigError:
        raise
    except BikaError as exc:
        _unknown(settings.repo or "", str(exc), as_json)
        return

    report = report_for(settings, repository)
    status = NAGIOS_NAMES[worst(report.findings)]
    previous = remember_status(repository, report, status)
    summary = "; ".join(f.message for f in report.findings if f.level in ("warn", "error"))
    message = transition(previous, status, report.repository, summary)  # type: ignore[arg-type]
    if message is not None:
        send([url.get_secret_value() for url in settings.notify], message)
    if textfile is not None:
        from bika.metrics import write_textfile  # prometheus_client: only with --textfile

        write_textfile(textfile, report.repository, report.history, report.findings)
    if as_json:
        print_json(json_shapes.check_result(report))
    else:
        _print(report)
    code = exit_code(report.findings)
    if code:
        raise click.exceptions.Exit(code)


def report_for(settings: Settings, repository: Repository | None = None) -> CheckReport:
    """`bika check` of the settings' repository, with their thresholds, retention policy and
    second repository."""
    return check_repository(
        repository or open_repository(settings),
        thresholds=settings.check.thresholds(),
        copy=_second(settings),
        policy=settings.retention.policy(),
        escrow_recipient=settings.escrow_recipient,
        platform=_platform(settings),
    )


def _platform(settings: Settings) -> Callable[[], PlatformBackups] | None:
    """The Supabase platform's own backups, read when a token and a project are configured."""
    config = settings.supabase
    if config.access_token is None or config.project_ref is None:
        return None
    from bika.cli.supabase_cmd import platform_backups

    return lambda: platform_backups(settings)


def _second(settings: Settings) -> Callable[[], Repository] | None:
    """Opens the second repository ([copy] to), when one is configured."""
    if not settings.copy_.to:
        return None
    return lambda: Repository.open(
        open_other_storage(settings.require_copy_to(), settings.copy_storage)
    )


def _print(report: CheckReport) -> None:
    level = worst(report.findings)
    rows: list[list[Cell]] = [
        [
            cell(NAGIOS_NAMES[f.level], _STYLE[f.level]),
            f.what,
            f.message + (f" → {f.fix}" if f.fix and f.level != "ok" else ""),
        ]
        for f in report.findings
    ]
    columns = [Column("status"), Column("check"), Column("finding")]
    print_table(STATE.out, columns, rows, title=f"bika check {report.repository}")
    STATE.out.print(Text(f"status: {NAGIOS_NAMES[level]}", style=_STYLE[level]))


def _unknown(where: str, why: str, as_json: bool) -> None:
    findings = unreachable(where, why)
    if as_json:
        print_json(json_shapes.check_unreachable(where, findings))
    STATE.err.print(f"bika: error: {findings[0].message}")
    for finding in findings[1:]:
        STATE.err.print(f"bika: {NAGIOS_NAMES[finding.level]}: {finding.message}")
    raise click.exceptions.Exit(exit_code(findings))


@app.command("checklist")
@repo_option
@click.option("--markdown", is_flag=True, help="Markdown, to paste into a compliance record")
@click.option("--html", "as_html", is_flag=True, help="an HTML page, with size and duration plots")
def checklist_command(repo: str | None, markdown: bool, as_html: bool) -> None:
    """The backup procedure's weekly checklist, each box ticked from facts, with the evidence.
    Exit 0 when every box is ticked, 1 otherwise."""
    settings = STATE.settings(repo=repo)
    repository = open_repository(settings)

    report = report_for(settings, repository)
    items = checklist(report.history, report.findings)
    if as_html:
        STATE.out.file.write(render_html(items, report.repository, report.history))
    elif markdown:
        STATE.out.file.write(render_markdown(items, report.repository, report.checked_at))
    else:
        for item in items:
            STATE.out.print(f"[{'x' if item.ticked else ' '}] {item.text}")
            STATE.out.print(f"    {item.evidence}")
    if not all(item.ticked for item in items):
        raise click.exceptions.Exit(1)


@app.command("report")
@repo_option
@click.option(
    "--html",
    "html_file",
    type=click.Path(path_type=Path, dir_okay=False),
    required=True,
    metavar="FILE",
    help="write the status page there",
)
def report_command(repo: str | None, html_file: Path) -> None:
    """Write the status page (backups, findings, drills, charts) as one HTML file: no data
    values, no key needed; the same page `bika daemon --listen` serves at /."""
    settings = STATE.settings(repo=repo)
    report = report_for(settings)
    html_file.write_text(page([(report.repository, report.history, report.findings)]))
    STATE.say(f"wrote {html_file}")
