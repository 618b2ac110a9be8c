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
from bika.diagnosis import diagnose, failed, signing_check, status
from bika.errors import BikaError
from bika.findings import Finding
from bika.operations.doctor import database_facts, storage_facts
from bika.postgres import catalog
from bika.postgres.backup_role import (
    DEFAULT_ROLE,
    PG_READ_ALL_DATA,
    backup_role_sql,
    user_schemas,
)
from bika.postgres.connection import ConnInfo
from bika.repository import Repository
from bika.signing import load_signing_key
from bika.storage import Storage
from bika.storage.policies import BACKENDS, policies

_STYLE = {"ok": "green", "warn": "yellow", "fail": "red", "info": "blue", "unknown": "dim"}


@app.command("doctor")
@repo_option
@db_option
@pg_bin_option
@click.option(
    "--print-sql",
    is_flag=True,
    help="print the SQL creating a read-only backup role (for --db's server version, else 14+)",
)
@click.option("--role", default=DEFAULT_ROLE, show_default=True, metavar="NAME", help="its name")
@click.option(
    "--print-policy",
    type=click.Choice(BACKENDS),
    help="print bucket/IAM policies for the backup writer, the pruner and restore",
)
@json_option
def doctor(
    repo: str | None,
    db: str | None,
    pg_bin_dir: str | None,
    print_sql: bool,
    role: str,
    print_policy: str | None,
    as_json: bool,
) -> None:
    """Check the repository's storage and bucket settings, the copy destination and the database."""
    settings = STATE.settings(repo=repo, database_url=db, pg_bin_dir=pg_bin_dir)
    if print_sql:
        STATE.out.file.write(_backup_role_sql(settings, role))
        return
    if print_policy is not None:
        _print_policies(settings, print_policy)
        return
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


def _backup_role_sql(settings: Settings, role: str) -> str:
    if settings.database_url is None:
        return backup_role_sql(role, "your_database", None)
    conn = ConnInfo.parse(settings.database_url.get_secret_value())
    version = catalog.server_facts(conn).version_num
    schemas = user_schemas(conn) if version < PG_READ_ALL_DATA else ()
    return backup_role_sql(role, conn.database, version, schemas)


def _print_policies(settings: Settings, backend: str) -> None:
    bucket, prefix = _bucket_of(settings.repo, backend)
    texts = policies(backend, bucket, prefix)
    STATE.out.file.write("\n".join(f"# {job}\n{text}\n" for job, text in texts.items()))


_SCHEMES = {"s3": ("s3",), "gcs": ("gs",), "azure": ("az", "azure")}


def _bucket_of(repo: str | None, backend: str) -> tuple[str, str]:
    """The bucket (container) and prefix of --repo when it is on that backend, else a
    placeholder to fill in."""
    if repo and "://" in repo:
        scheme, rest = repo.split("://", 1)
        if scheme.lower() in _SCHEMES[backend]:
            parts = rest.split("/")
            if scheme.lower() == "azure":
                parts = parts[1:]  # azure://account/container/prefix
            if parts and parts[0]:
                return parts[0], "/".join(parts[1:])
    return ("CONTAINER" if backend == "azure" else "BUCKET"), ""


def _repository_checks(settings: Settings) -> list[Finding]:
    # a setting naming an unset ${VAR} raises when read: a failed check, not a failed doctor
    try:
        if not settings.repo:
            return [
                Finding("warn", "repository", "none configured", "pass --repo or set BIKA_REPO")
            ]
        storage = open_repository_storage(settings)
        classes = settings.storage.classes
    except BikaError as exc:
        return [Finding("error", "settings", str(exc))]
    return [*diagnose(storage_facts(storage, classes), None), _signatures(settings, storage)]


def _signatures(settings: Settings, storage: Storage) -> Finding:
    """Is this repository's data signed, and does this host pin the keys that sign it?"""
    try:
        recorded = Repository.open(storage).signers
    except BikaError:
        recorded = []  # no repository (yet): the repository check says so
    try:
        signs_as = load_signing_key(settings.signing_key).public if settings.signing_key else None
    except BikaError as exc:
        return Finding("error", "signatures", str(exc))
    return signing_check(signs_as, settings.trusted_signers, recorded)


def _copy_configured(settings: Settings) -> bool:
    try:
        return bool(settings.copy_.to)
    except BikaError:
        return True  # its checks say what is wrong


def _copy_checks(settings: Settings) -> list[Finding]:
    try:
        config = settings.copy_storage
        storage = open_other_storage(settings.require_copy_to(), config)
        classes = config.classes
    except BikaError as exc:
        return [Finding("error", "settings", str(exc))]
    return diagnose(storage_facts(storage, classes), None)


def _database_checks(settings: Settings) -> list[Finding]:
    try:
        url = settings.database_url
        if url is None:
            return [
                Finding(
                    "info",
                    "database",
                    "none configured; give --db or set BIKA_DATABASE_URL to check it",
                )
            ]
        facts = database_facts(
            url.get_secret_value(), settings.pg_bin_dir, settings.backup.scope(), settings.profile
        )
    except BikaError as exc:
        return [Finding("error", "database", str(exc))]
    return diagnose(None, facts)


def _print(sections: list[tuple[str, list[Finding]]]) -> None:
    rows: list[list[Cell]] = []
    fixes: list[str] = []
    for scope, checks in sections:
        rows.append([cell(scope, "bold"), "", ""])
        for check in checks:
            mark = ""
            if check.fix:
                fixes.append(check.fix)
                mark = f" [{len(fixes)}]"
            word = status(check)
            rows.append([f"  {check.what}", cell(word, _STYLE[word]), check.message + mark])
    print_table(
        STATE.out, [Column("check"), Column("status"), Column("detail")], rows, title="bika doctor"
    )
    if fixes:
        STATE.out.print("fixes:")
        for number, fix in enumerate(fixes, 1):
            # soft_wrap: a command must stay one line to be copied whole
            STATE.out.print(f"  [{number}] {fix}", soft_wrap=True)
