"""`bika supabase backups` (the platform's own backups of a project and its PITR state) and
`bika supabase diff ID` (the live configuration against a backup's snapshot); and the pieces
`bika backup` and `bika restore --artifact` use for a project's Edge Functions, secrets and
configuration snapshot."""

from __future__ import annotations

from pathlib import Path

import click

from bika.cli import json_shapes
from bika.cli.app import STATE, app, identity_option, json_option, open_repository, repo_option
from bika.cli.render import Column, print_json, print_table
from bika.config import Settings
from bika.crypto import load_identities
from bika.errors import ConfigError
from bika.operations.backup import Extra
from bika.operations.supabase_api import ManagementApi, api_for, project_ref_of
from bika.operations.supabase_artifacts import Unpacked, restore_env, restore_functions
from bika.operations.supabase_connection import reachable
from bika.operations.supabase_functions import prepare_functions
from bika.operations.supabase_project import live_diff, prepare_project
from bika.operations.supabase_secrets import prepare_secrets
from bika.postgres.connection import ConnInfo
from bika.repository import Manifest, Repository
from bika.supabase.api import PlatformBackups
from bika.units import timestamp


@app.group("supabase")
def supabase() -> None:
    """A Supabase project around its database: the platform's backups, the configuration."""


@supabase.command("backups")
@click.option("--project-ref", metavar="REF", help="the project [default: [supabase] project_ref]")
@json_option
def backups(project_ref: str | None, as_json: bool) -> None:
    """List the platform's backups of the project and its point-in-time recovery state
    (Management API, token from SUPABASE_ACCESS_TOKEN)."""
    settings = STATE.settings(**{"supabase.project_ref": project_ref})
    found = platform_backups(settings)
    if as_json:
        print_json(json_shapes.supabase_backups_result(found))
        return
    _print_backups(found)


@supabase.command("diff")
@click.argument("backup_id", metavar="ID")
@repo_option
@identity_option
@json_option
def diff(backup_id: str, repo: str | None, identity: Path | None, as_json: bool) -> None:
    """What changed in the live project's configuration since backup ID took its snapshot:
    settings, API keys, functions, secrets, by name (never a value). Applying it back is up
    to you: each line says what to set, where."""
    settings = STATE.settings(repo=repo, identity=identity)
    repository = open_repository(settings)
    manifest = repository.manifest(repository.resolve(backup_id))
    identities = load_identities(settings.require_identity())
    config = settings.supabase
    token = config.access_token.get_secret_value() if config.access_token else None
    stored, live, found = live_diff(
        repository, manifest, identities, api_for(token, config.api_url)
    )
    if as_json:
        print_json(json_shapes.supabase_diff_result(manifest.id, stored, live, found))
        return
    for part, error in {**stored["errors"], **live["errors"]}.items():
        STATE.say(f"note: {part} not compared: {error}")
    if not found:
        STATE.out.print(f"project {stored['project_ref']}: no change since {manifest.id}")
        return
    print_table(
        STATE.out,
        [Column("PART"), Column("ITEM"), Column("CHANGE")],
        [[d.part, d.item, d.change] for d in found],
        title=f"project {stored['project_ref']}: {len(found)} changes since {manifest.id}",
    )


def platform_backups(settings: Settings) -> PlatformBackups:
    config = settings.supabase
    token = config.access_token.get_secret_value() if config.access_token else None
    return api_for(token, config.api_url).backups(project_ref_of(config.project_ref))


def _when(moment: object) -> str:
    return timestamp(moment) if moment is not None else "-"  # type: ignore[arg-type]


def _print_backups(found: PlatformBackups) -> None:
    out = STATE.out
    newest = found.newest_completed()
    out.print(
        f"project {found.project_ref} ({found.region or 'region unknown'}):"
        f" PITR {'on' if found.pitr_enabled else 'off'},"
        f" WAL-G {'on' if found.walg_enabled else 'off'},"
        f" newest completed backup {_when(newest) if newest else 'none'}",
        soft_wrap=True,
    )
    if found.pitr_enabled or found.latest_physical:
        out.print(
            f"physical backups from {_when(found.earliest_physical)}"
            f" to {_when(found.latest_physical)}",
            soft_wrap=True,
        )
    if not found.backups:
        out.print("no daily backups listed (the free plan has none; with PITR there are none)")
        return
    print_table(
        out,
        [Column("ID", right=True), Column("TYPE"), Column("STATUS"), Column("TAKEN")],
        [
            [
                str(b.id),
                "physical" if b.physical else "logical",
                b.status,
                _when(b.inserted_at),
            ]
            for b in sorted(found.backups, key=lambda b: str(b.inserted_at))
        ],
    )


def project_extras(settings: Settings) -> list[Extra]:
    """The artifacts [supabase] and [secrets] add to a backup, read before pg_dump runs; their
    warnings (uncommitted functions, unset variables) are said at once."""
    extras: list[Extra] = []
    if settings.supabase.functions_dir is not None:
        functions = prepare_functions(settings.supabase.functions_dir)
        for warning in functions.warnings:
            STATE.say(f"warning: {warning}")
        extras.append(functions)
    project = settings.supabase
    if project.project_config and project.access_token and project.project_ref:
        api = ManagementApi(project.access_token.get_secret_value(), project.api_url)
        snapshot = prepare_project(api, project.project_ref)
        for warning in snapshot.warnings:
            STATE.say(f"warning: {warning}")
        extras.append(snapshot)
    config = settings.secrets
    if config.wanted:
        key = config.inventory_key.get_secret_value() if config.inventory_key else None
        env = prepare_secrets(config.env_files, config.env, key)
        for warning in env.warnings:
            STATE.say(f"warning: {warning}")
        extras.append(env)
    return extras


def restore_artifact(
    repository: Repository,
    manifest: Manifest,
    identities: list[object],
    artifact: str,
    to_dir: Path | None,
    to_file: Path | None,
) -> Unpacked:
    """`bika restore ID --artifact functions --to-dir D` / `--artifact env --to-file F`."""
    if artifact == "functions":
        if to_dir is None or to_file is not None:
            raise ConfigError("--artifact functions unpacks into a folder: give --to-dir DIR")
        unpacked = restore_functions(repository, manifest, identities, to_dir)
        STATE.say(f"unpacked {unpacked.files} files of {manifest.id} into {to_dir}")
        return unpacked
    if to_file is None or to_dir is not None:
        raise ConfigError("--artifact env writes a file: give --to-file FILE (never overwritten)")
    unpacked = restore_env(repository, manifest, identities, to_file)
    STATE.say(f"wrote {unpacked.files} variables of {manifest.id} to {to_file} (mode 0600)")
    return unpacked


def reachable_database(settings: Settings, conn: ConnInfo) -> ConnInfo:
    """The database to dump: a direct Supabase host this machine cannot reach is replaced by
    the project's session pooler (found with the Management API token, when there is one)."""
    config = settings.supabase
    token = config.access_token.get_secret_value() if config.access_token else None
    api = ManagementApi(token, config.api_url) if token else None
    return reachable(conn, api, say=STATE.say)
