"""`bika doctor`: can bika reach and write its repository, is the bucket protected, can it dump.

Prints one line per check and the command that fixes each warning; exit 1 only on a failure.
"""

from __future__ import annotations

import click

from bika.cli import json_shapes
from bika.cli.app import (
    STATE,
    app,
    db_option,
    json_option,
    open_other_storage,
    open_repository_storage,
    pg_bin_option,
    repo_option,
)
from bika.cli.render import Cell, Column, cell, print_json, print_table
from bika.config import Settings
from bika.diagnosis import Check, diagnose, failed
from bika.errors import BikaError
from bika.operations.doctor import database_facts, storage_facts

_STYLE = {"ok": "green", "warn": "yellow", "fail": "red", "info": "blue", "unknown": "dim"}


@app.command("doctor")
@repo_option
@db_option
@pg_bin_option
@json_option
def doctor(repo: str | None, db: str | None, pg_bin_dir: str | None, as_json: bool) -> None:
    """Check the repository's storage and bucket settings, the copy destination and the database."""
    settings = STATE.settings(repo=repo, database_url=db, pg_bin_dir=pg_bin_dir)
    sections = [("repository", _repository_checks(settings))]
    if _copy_configured(settings):
        sections.append(("copy destination", _copy_checks(settings)))
    sections.append(("database", _database_checks(settings)))
    every = [check for _, checks in sections for check in checks]
    if as_json:
        print_json(json_shapes.doctor_result(sections, ok=not failed(every)))
    else:
        _print(sections)
    if failed(every):
        raise click.exceptions.Exit(1)


def _repository_checks(settings: Settings) -> list[Check]:
    # a setting naming an unset ${VAR} raises when read: a failed check, not a failed doctor
    try:
        if not settings.repo:
            return [Check("repository", "warn", "none configured", "pass --repo or set BIKA_REPO")]
        storage = open_repository_storage(settings)
        classes = settings.storage.classes
    except BikaError as exc:
        return [Check("settings", "fail", str(exc))]
    return diagnose(storage_facts(storage, classes), None)


def _copy_configured(settings: Settings) -> bool:
    try:
        return bool(settings.copy_.to)
    except BikaError:
        return True  # its checks say what is wrong


def _copy_checks(settings: Settings) -> list[Check]:
    try:
        config = settings.copy_storage
        storage = open_other_storage(settings.require_copy_to(), config)
        classes = config.classes
    except BikaError as exc:
        return [Check("settings", "fail", str(exc))]
    return diagnose(storage_facts(storage, classes), None)


def _database_checks(settings: Settings) -> list[Check]:
    try:
        url = settings.database_url
        if url is None:
            return [
                Check(
                    "database",
                    "info",
                    "none configured; give --db or set BIKA_DATABASE_URL to check it",
                )
            ]
        facts = database_facts(
            url.get_secret_value(), settings.pg_bin_dir, settings.backup.scope(), settings.profile
        )
    except BikaError as exc:
        return [Check("database", "fail", str(exc))]
    return diagnose(None, facts)


def _print(sections: list[tuple[str, list[Check]]]) -> None:
    rows: list[list[Cell]] = []
    fixes: list[str] = []
    for scope, checks in sections:
        rows.append([cell(scope, "bold"), "", ""])
        for check in checks:
            mark = ""
            if check.fix:
                fixes.append(check.fix)
                mark = f" [{len(fixes)}]"
            rows.append(
                [f"  {check.name}", cell(check.status, _STYLE[check.status]), check.detail + mark]
            )
    print_table(
        STATE.out, [Column("check"), Column("status"), Column("detail")], rows, title="bika doctor"
    )
    if fixes:
        STATE.out.print("fixes:")
        for number, fix in enumerate(fixes, 1):
            # soft_wrap: a command must stay one line to be copied whole
            STATE.out.print(f"  [{number}] {fix}", soft_wrap=True)
