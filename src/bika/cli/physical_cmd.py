"""`bika backup --physical` and `bika restore --physical`: the command-line side of physical
backups and point-in-time recovery (operations/physical.py, operations/pitr.py do the work)."""

from __future__ import annotations

import functools
import shlex
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from bika.cli import json_shapes
from bika.cli.app import STATE, logged, note_backups, open_repository
from bika.cli.progress import stream_progress
from bika.cli.render import print_json, text
from bika.crypto import load_identities
from bika.operations.physical import PhysicalOptions, take_physical_backup
from bika.operations.physical_drill import drill_physical
from bika.operations.pitr import plan_recovery, restore_physical
from bika.postgres.connection import ConnInfo
from bika.postgres.recovery import Target
from bika.repository import Repository
from bika.repository.physical import PhysicalManifest
from bika.units import size

F = TypeVar("F", bound=Callable[..., Any])


def physical_backup(
    repo: str | None,
    db: str | None,
    label: str | None,
    incremental: bool = False,
    **_ignored: Any,
) -> tuple[Repository, PhysicalManifest]:
    settings = STATE.settings(repo=repo, database_url=db)
    repository = open_repository(settings)
    conn = ConnInfo.parse(settings.require_database_url())
    # the parent's backup_manifest is read with the key only when this host has no copy of it
    identity = settings.identity
    options = PhysicalOptions(
        label=label,
        compression_threads=settings.compression_threads,
        storage_class=settings.storage.storage_class("manual"),
        incremental=incremental,
        identities=load_identities(identity) if incremental and identity else None,
    )
    what = "incremental physical" if incremental else "physical"
    STATE.say(f"{what} backup of {conn.redacted()} into {repository.url}")
    with stream_progress("read", "stored") as progress:
        manifest = take_physical_backup(repository, conn, options, progress)
    base = manifest.artifacts["base"]
    note_backups(manifest.id, kind="physical", stored_bytes=base.stored_size)
    seconds = (manifest.finished_at - manifest.started_at).total_seconds()
    STATE.say(
        f"{manifest.kind} backup {manifest.id}"
        + (f" (of {manifest.parent})" if manifest.parent else "")
        + f": PostgreSQL {manifest.source.server_version},"
        f" {manifest.files} files, {size(base.plain_size)} → {size(base.stored_size)} stored"
        f" in {seconds:.1f}s; WAL {manifest.wal.start_segment}..{manifest.wal.stop_segment}",
        backup_id=manifest.id,
    )
    return repository, manifest


def physical_restore_options(func: F) -> F:
    """`bika restore`'s point-in-time options; with --physical the command restores a base
    backup plus WAL instead of a logical backup (the decorated body is not run)."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        mine = {name: kwargs.pop(name) for name in _PHYSICAL_OPTIONS}
        if not mine["physical"]:
            given = [n for n in _PHYSICAL_OPTIONS if n != "physical" and mine[n]]
            if given:
                flag = given[0].removeprefix("target_").replace("_", "-")
                raise click.UsageError(f"--{flag} needs --physical")
            return func(*args, **kwargs)
        # --to-dir is restore's own option (also --artifact functions): the data directory here
        mine["to_dir"] = kwargs.pop("to_dir")
        return logged("restore")(physical_restore)(**mine, **kwargs)

    for option in reversed(
        [
            click.option(
                "--physical",
                is_flag=True,
                help="restore a physical backup and replay archived WAL (point-in-time)",
            ),
            click.option("--time", "target_time", metavar="TIME", help="recover to this time"),
            click.option("--lsn", "target_lsn", metavar="LSN", help="recover to this WAL LSN"),
            click.option("--xid", "target_xid", metavar="XID", help="recover to this txid"),
            click.option(
                "--timeline",
                type=click.IntRange(min=1),
                metavar="N",
                help="the timeline to recover along (asked for when the history forks)",
            ),
            click.option("--start", is_flag=True, help="run the server until it has promoted"),
            click.option(
                "--restore-command",
                metavar="CMD",
                help="the command the server runs per WAL file (default: bika wal fetch …)",
            ),
        ]
    ):
        wrapper = option(wrapper)
    return wrapper  # type: ignore[return-value]


_PHYSICAL_OPTIONS = (
    "physical",
    "target_time",
    "target_lsn",
    "target_xid",
    "timeline",
    "start",
    "restore_command",
)


def physical_restore(
    *,
    physical: bool,
    target_time: str | None,
    target_lsn: str | None,
    target_xid: str | None,
    to_dir: Path | None,
    timeline: int | None,
    start: bool,
    restore_command: str | None,
    backup_id: str | None,
    latest: bool,
    repo: str | None,
    identity: Path | None,
    pg_bin_dir: str | None,
    as_json: bool,
    **logical: Any,
) -> None:
    targets = sum(x is not None for x in (target_time, target_lsn, target_xid)) + latest
    if targets != 1:
        raise click.UsageError("give one recovery target: --time, --lsn, --xid or --latest")
    if to_dir is None:
        raise click.UsageError("--physical needs --to-dir DIR, the new data directory")
    used = [name for name, value in logical.items() if value and name not in ("jobs",)]
    if used:
        raise click.UsageError(f"--{used[0].replace('_', '-')} is for logical restores")
    settings = STATE.settings(repo=repo, identity=identity, pg_bin_dir=pg_bin_dir)
    repository = open_repository(settings)
    key = settings.require_identity().expanduser().absolute()
    identities = load_identities(key)
    target = Target(time=target_time, lsn=target_lsn, xid=target_xid)
    plan = plan_recovery(repository, identities, target, timeline=timeline, backup_id=backup_id)
    note_backups(plan.backup.id)
    command = restore_command or (
        f"bika wal fetch --repo {shlex.quote(repository.url)} --identity {shlex.quote(str(key))}"
        " %f %p"
    )
    STATE.say(
        f"restoring physical backup {plan.backup.id} (PostgreSQL"
        f" {plan.backup.source.server_version}) into {to_dir}, then WAL on timeline"
        f" {plan.timeline} to {_target_text(target)}"
    )
    done = restore_physical(
        repository,
        identities,
        plan,
        to_dir.absolute(),
        restore_command=command,
        start=start,
        pg_bin_dir=settings.pg_bin_dir,
    )
    recovered = done.recovered
    if recovered is not None:
        STATE.say(
            f"recovered to {recovered.last_transaction or 'the backup'} (last transaction) and"
            f" promoted to timeline {recovered.timeline}; {to_dir} is ready to start"
            " (archive_mode is off in its postgresql.auto.conf: archive into a new repository)"
        )
    else:
        STATE.say(
            f"{to_dir} is ready: start PostgreSQL {plan.backup.source.server_version} on it and"
            " it recovers (restore_command, recovery target and timeline are in"
            " postgresql.auto.conf)"
        )
    if as_json:
        print_json(json_shapes.physical_restore_result(done))
    else:
        STATE.out.print(str(to_dir))


def _target_text(target: Target) -> str:
    if target.time:
        return target.time
    if target.lsn:
        return f"LSN {target.lsn}"
    if target.xid:
        return f"transaction {target.xid}"
    return "the end of the archived WAL"


def physical_drill_option(func: F) -> F:
    """`bika drill --physical [ID]`: drill a physical backup (base + WAL) instead."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if not kwargs.pop("physical"):
            return func(*args, **kwargs)
        return logged("drill")(physical_drill)(**kwargs)

    return click.option(
        "--physical",
        is_flag=True,
        help="drill a physical backup: base backup + all archived WAL, pg_amcheck, exact counts",
    )(wrapper)  # type: ignore[return-value]


def physical_drill(
    backup_id: str | None,
    latest: bool,
    target: str | None,
    keep: bool,
    repo: str | None,
    identity: Path | None,
    pg_bin_dir: str | None,
    as_json: bool,
    **_: Any,
) -> None:
    if target or keep:
        raise click.UsageError("--physical drills run in a throwaway cluster: no --target/--keep")
    settings = STATE.settings(repo=repo, identity=identity, pg_bin_dir=pg_bin_dir)
    repository = open_repository(settings)
    identities = load_identities(settings.require_identity())
    STATE.say(f"drilling physical backup {backup_id or '(newest)'} of {repository.url}")
    record = drill_physical(
        repository, identities, None if latest else backup_id, pg_bin_dir=settings.pg_bin_dir
    )
    note_backups(record.backup_id, passed=record.passed, rto_seconds=record.rto_seconds)
    if as_json:
        print_json(json_shapes.physical_drill_result(record))
    else:
        rpo = f"{record.rpo_seconds:.0f} s" if record.rpo_seconds is not None else "unknown"
        STATE.out.print(
            f"physical drill of {record.backup_id}: {'passed' if record.passed else 'FAILED'};"
            f" recovered to {record.recovered_to} on timeline {record.timeline}; RTO"
            f" {record.rto_seconds:.1f} s (restore {record.restore_seconds:.1f} s, replay"
            f" {record.recovery_seconds:.1f} s), measured RPO {rpo}; {record.databases}"
            f" databases, {record.tables} tables, {record.rows} rows counted; pg_amcheck"
            f" {record.amcheck}"
        )
        for problem in record.problems:
            STATE.out.print(text(f"problem: {problem}"))
    if not record.passed:
        raise click.exceptions.Exit(1)
