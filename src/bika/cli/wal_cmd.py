"""`bika wal`: continuous WAL archiving. `push`/`fetch` are PostgreSQL's archive_command and
restore_command (the launcher runs them without importing this CLI); `status` says what the
archive holds, how far each base backup recovers, and names every gap."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from bika.cli import json_shapes
from bika.cli.app import STATE, app, db_option, json_option, open_repository, repo_option
from bika.cli.render import Column, print_json, print_table, text
from bika.clock import now
from bika.findings import exit_code
from bika.monitor import History, damaged, wal_gaps
from bika.operations.wal_status import wal_state
from bika.units import timestamp


@app.group("wal")
def wal() -> None:
    """Continuous WAL archiving for point-in-time recovery (archive_command = 'bika wal push
    %p'; restore_command = 'bika wal fetch %f %p')."""


_RAW = {"ignore_unknown_options": True, "allow_extra_args": True, "help_option_names": []}


@wal.command("push", context_settings=_RAW, add_help_option=False)
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def push(args: tuple[str, ...]) -> None:
    """archive_command: store one WAL file (and the next .ready ones); exit 0 only once
    stored. Usage: bika wal push [--repo REPO] [--no-look-ahead] %p"""
    from bika.wal.command import main

    raise click.exceptions.Exit(main(["push", *args]))


@wal.command("fetch", context_settings=_RAW, add_help_option=False)
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def fetch(args: tuple[str, ...]) -> None:
    """restore_command: write one archived WAL file; exit 1 only if the repository has none,
    126 on any other failure; prefetches the next segments into a spool. Usage: bika wal
    fetch [--repo R] [--identity F] [--spool DIR] [--no-prefetch] %f %p"""
    from bika.wal.fetch import main

    raise click.exceptions.Exit(main(list(args)))


@wal.command("receive")
@repo_option
@db_option
@click.option(
    "--slot",
    default="bika",
    show_default=True,
    metavar="NAME",
    help="physical replication slot to stream from (created if missing)",
)
@click.option(
    "--synchronous",
    is_flag=True,
    help="fsync the segment being received on every write and report it flushed at once"
    " (pg_receivewal --synchronous): RPO ≤ 1 s for the staged .partial file",
)
@click.option(
    "--staging",
    type=click.Path(path_type=Path, file_okay=False),
    metavar="DIR",
    help="local folder pg_receivewal writes into [default: $XDG_STATE_HOME/bika/wal-receive/…]",
)
def receive(
    repo: str | None,
    db: str | None,
    slot: str,
    synchronous: bool,
    staging: Path | None,
    **_: Any,
) -> None:
    """Stream WAL over a replication slot with the bundled pg_receivewal (for servers where
    archive_command cannot be set) and store each finished segment as `wal push` does; runs
    until SIGTERM or Ctrl-C."""
    from bika.operations.wal_receive import ReceiveOptions
    from bika.operations.wal_receive import receive as run_receive
    from bika.postgres.connection import ConnInfo
    from bika.wal import settings as wal_settings
    from bika.wal.archive import Archive
    from bika.wal.store import open_store

    STATE.start("wal receive")  # its progress lines (the wal group's commands log nothing else)
    full = STATE.settings(repo=repo, database_url=db)
    conn = ConnInfo.parse(full.require_database_url())
    config = str(STATE.config) if STATE.config else None
    lean = wal_settings.load(config=config, repo=repo)
    archive = Archive(open_store(lean.require_repo(), lean.storage))
    run_receive(
        archive,
        conn,
        ReceiveOptions(slot=slot, synchronous=synchronous, staging=staging),
        say=STATE.say,
    )


@wal.command("status")
@repo_option
@json_option
def status(repo: str | None, as_json: bool, **_: Any) -> None:
    """Newest archived segment, contiguous ranges per timeline, how far each physical backup
    recovers, and missing segments (critical). Exit codes as bika check's."""
    repository = open_repository(STATE.settings(repo=repo))
    state = wal_state(repository)
    history = History(now=now(), manifests=[], wal=state, damaged=state.refused if state else [])
    findings = damaged(history) + wal_gaps(history)
    if as_json:
        print_json(json_shapes.wal_status_result(repository, state, findings, now()))
    elif state is None:
        STATE.out.print("no WAL archived and no physical backup in this repository")
    else:
        line = f"newest segment {state.newest_segment or '-: no WAL archived'}"
        if state.newest_at is not None:
            age = (now() - state.newest_at).total_seconds()
            line += f", archived {timestamp(state.newest_at)} ({age:.0f} s ago)"
        STATE.out.print(line)
        for tli, runs in state.timelines.items():
            spans = ", ".join(f"{first[8:]}..{last[8:]}" for first, last, _ in runs)
            STATE.out.print(f"timeline {tli}: {spans}")
        rows = [
            [
                reach.backup_id,
                str(reach.timeline),
                timestamp(reach.finished_at),
                timestamp(reach.reach.last_archived_at) if reach.reach.last_archived_at else "-",
                reach.gap or ("" if reach.consistent else reach.stop_segment),
            ]
            for reach in state.backups
        ]
        if rows:
            print_table(
                STATE.out,
                [
                    Column("physical backup"),
                    Column("timeline"),
                    Column("recoverable from"),
                    Column("to"),
                    Column("missing segment"),
                ],
                rows,
            )
        for finding in findings:
            if finding.level != "ok":
                STATE.out.print(text(f"{finding.level}: {finding.message}"))
    code = exit_code(findings)
    if code:
        raise click.exceptions.Exit(code)
