"""`bika prune`: apply the retention policy — a table of every backup, kept or dropped and
why — then delete the dropped backups and what failed runs left, and say what that freed.
"""

from __future__ import annotations

from datetime import timedelta

import click
from rich.text import Text

from bika.cli import json_shapes
from bika.cli.app import STATE, app, json_option, logged, note_backups, open_repository, repo_option
from bika.cli.render import Column, print_json, print_table
from bika.operations.prune import PruneOptions, PruneReport, prune
from bika.retention import span
from bika.units import parse_duration, size


def _duration(ctx: click.Context, param: click.Parameter, value: str | None) -> timedelta | None:
    return parse_duration(value) if value is not None else None


@app.command("prune")
@repo_option
@click.option("--dry-run", is_flag=True, help="print what would be deleted; delete nothing")
@click.option(
    "--keep-daily", type=click.IntRange(0), metavar="N", help="keep the newest N daily backups"
)
@click.option(
    "--keep-weekly", type=click.IntRange(0), metavar="N", help="keep the weeklies of N weeks"
)
@click.option(
    "--keep-monthly", type=click.IntRange(0), metavar="N", help="keep the monthlies of N months"
)
@click.option(
    "--keep-within",
    metavar="DURATION",
    callback=_duration,
    help="also keep every backup younger than this: 30d, 4w, 12h",
)
@click.option(
    "--break-lock", is_flag=True, help="remove other processes' locks first (their host is gone)"
)
@json_option
@logged("prune")
def prune_backups(
    repo: str | None,
    dry_run: bool,
    keep_daily: int | None,
    keep_weekly: int | None,
    keep_monthly: int | None,
    keep_within: timedelta | None,
    break_lock: bool,
    as_json: bool,
) -> None:
    """Apply the retention policy ([retention] in bika.toml, or the --keep flags) and delete
    the backups it drops, with the leftovers of failed runs."""
    settings = STATE.settings(repo=repo)
    repository = open_repository(settings)
    policy = settings.retention.policy().overridden(
        {"daily": keep_daily, "weekly": keep_weekly, "monthly": keep_monthly}, keep_within
    )
    options = PruneOptions(
        policy=policy,
        dry_run=dry_run,
        break_lock=break_lock,
        storage_classes=settings.storage.classes,
        pitr_window=parse_duration(settings.retention.pitr_window),
    )
    STATE.say(
        "policy: "
        + "; ".join(f"{name} {rule.describe()}" for name, rule in policy.rules.items())
        + (f"; everything younger than {span(policy.keep_within)}" if policy.keep_within else "")
    )
    report = prune(repository, options, on_note=lambda note: STATE.say(f"note: {note}"))
    if dry_run:
        note_backups(dry_run=True)
    else:
        note_backups(
            *[b.id for b in report.dropped],
            dry_run=False,
            deleted_objects=report.deleted_objects,
            freed_bytes=report.freed_bytes,
            leftovers=len(report.leftovers),
        )
    if as_json:
        print_json(json_shapes.prune_result(report))
        return
    _print(report)


def _age(delta: timedelta) -> str:
    days = delta.total_seconds() / 86400
    return f"{days:.0f}d" if abs(days) >= 1 else f"{delta.total_seconds() / 3600:.0f}h"


def _print(report: PruneReport) -> None:
    if report.backups:
        columns = [Column(c, right=c == "age") for c in ("id", "kind", "age", "verdict", "reason")]
        rows = [
            [
                b.id,
                b.kind,
                _age(b.age),
                "keep" if b.keep else Text("drop", style="bold"),
                b.reason,
            ]
            for b in report.backups
        ]
        print_table(STATE.out, columns, rows, title=f"retention in {report.repository}")
    for leftover in report.leftovers:
        STATE.out.print(Text(f"leftover {leftover.key} ({size(leftover.size)}): {leftover.why}"))
    for note in report.notes:
        STATE.say(f"note: {note}")
    dropped = report.dropped
    freed = sum(b.stored_size for b in dropped) + sum(item.size for item in report.leftovers)
    if report.dry_run:
        STATE.out.print(
            f"would delete {len(dropped)} of {len(report.backups)} backups and"
            f" {len(report.leftovers)} leftovers, freeing {size(freed)} (dry run: nothing deleted)"
        )
    else:
        STATE.out.print(
            f"deleted {len(dropped)} of {len(report.backups)} backups and"
            f" {len(report.leftovers)} leftovers ({report.deleted_objects} objects),"
            f" freed {size(report.freed_bytes)}"
        )
