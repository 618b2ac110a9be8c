"""`bika audit list` and `bika audit verify`: the run log as the audit trail.

list shows who ran what on which backups and when; verify checks the hash chain and the
signatures, and exits 1 naming every event removed or edited.
"""

from __future__ import annotations

import click

from bika import clock
from bika.cli import json_shapes
from bika.cli.app import STATE, BikaGroup, app, json_option, open_repository, repo_option
from bika.cli.render import Column, print_json, print_table
from bika.repository.audit import read_log, verify_log
from bika.units import parse_duration

_SIGNATURE = {"signed": "✓", "unsigned": "-", "untrusted": "? untrusted", "invalid": "✗ EDITED"}


@app.group("audit", cls=BikaGroup)
def audit_app() -> None:
    """The audit trail: every run that touched the repository."""


@audit_app.command("list")
@repo_option
@click.option("--since", metavar="DURATION", help="only events of the last DURATION: 7d, 24h")
@json_option
def audit_list(repo: str | None, since: str | None, as_json: bool) -> None:
    """Show who ran what (backup, restore, drill, verify, prune, copy…) on which backups,
    when, from which host, and how it ended; oldest first."""
    start = clock.now() - parse_duration(since) if since else None
    repository = open_repository(STATE.settings(repo=repo))
    entries = read_log(repository, since=start)
    if as_json:
        print_json(json_shapes.audit_list_result(repository, start, entries))
        return
    if not entries:
        STATE.say(f"{repository.url} holds no events{' in that time' if since else ''}")
        return
    columns = [
        Column("started (UTC)"),
        Column("user@host"),
        Column("command"),
        Column("outcome"),
        Column("backups"),
        Column("signed"),
        Column("error"),
    ]
    rows = []
    for entry in entries:
        event = entry.event
        if event is None:
            rows.append(["?", "?", "?", "?", "", _SIGNATURE[entry.signature], entry.key])
            continue
        rows.append(
            [
                f"{event.started_at:%Y-%m-%d %H:%M:%S}",
                f"{event.user}@{event.host}",
                event.command,
                event.outcome,
                ", ".join(event.backup_ids),
                _SIGNATURE[entry.signature],
                event.error or "",
            ]
        )
    print_table(STATE.out, columns, rows, title=f"events in {repository.url}")


@audit_app.command("verify")
@repo_option
@json_option
def audit_verify(repo: str | None, as_json: bool) -> None:
    """Check that no event was removed or edited: the hash chain and the signatures. Exit 1
    naming each event concerned."""
    repository = open_repository(STATE.settings(repo=repo))
    report = verify_log(repository)
    for problem in report.problems:
        STATE.fail(f"FAILED {problem.key}: {problem.message}")
    for note in report.notes:
        STATE.say(f"note: {note}")
    if as_json:
        print_json(json_shapes.audit_verify_result(repository, report))
    else:
        n = len(report.problems)
        verdict = "ok" if report.ok else f"{n} problem{'s' if n > 1 else ''}"
        STATE.out.print(
            f"{len(report.entries)} events checked ({report.count('signed')} signed,"
            f" {report.count('unsigned')} unsigned): {verdict}"
        )
    if not report.ok:
        raise click.exceptions.Exit(1)
