"""`bika restore --profile supabase`: run the restore into a project and print what it did,
what it left out and why, and how the result compares with the source."""

from __future__ import annotations

from rich.text import Text

from bika.cli import json_shapes
from bika.cli.app import STATE
from bika.cli.render import cell, print_json
from bika.errors import ConfigError, RestoreError
from bika.operations.supabase_restore import restore_into_project
from bika.postgres.connection import ConnInfo
from bika.repository import Manifest, Repository

_LEVEL_STYLE = {"error": "red", "warn": "yellow"}


def refuse_options(**given: object) -> None:
    """The plain restore's options that a restore into a project does not take."""
    used = [f"--{name.replace('_', '-')}" for name, value in given.items() if value]
    if used:
        raise ConfigError(
            f"{', '.join(used)} cannot be used with --profile supabase, which restores the"
            " user's objects and rows into a project's database; leave them out"
        )


def restore_supabase(
    repository: Repository,
    manifest: Manifest,
    target: ConnInfo,
    identities: list[object],
    *,
    clean: bool,
    pg_bin_dir: str | None,
    as_json: bool,
) -> None:
    STATE.say(f"restoring {manifest.id} into the Supabase project at {target.redacted()}")
    report = restore_into_project(
        repository, manifest, target, identities, clean=clean, pg_bin_dir=pg_bin_dir
    )
    if as_json:
        print_json(json_shapes.supabase_restore_result(report))
    elif not STATE.quiet:
        out = STATE.out
        failed_roles = [r for r in report.roles if r.error]
        out.print(
            f"roles: {len(report.roles) - len(failed_roles)} statements applied,"
            f" {len(failed_roles)} skipped"
        )
        for result in failed_roles:
            out.print(Text.assemble("  skipped ", cell(result.statement), ": ", cell(result.error)))
        if not report.replica:
            out.print(
                "note: this role may not set session_replication_role, so the project's"
                " triggers ran while rows loaded (parents first); the user's triggers were"
                " created after the rows"
            )
        out.print(f"left to the project: {report.platform} platform objects it has its own of")
        for skipped in report.skipped:
            out.print(Text.assemble("  skipped ", cell(skipped.what), ": ", cell(skipped.why)))
        for finding in report.findings:
            style = _LEVEL_STYLE.get(finding.level, "")
            out.print(Text.assemble("  ", cell(finding.level, style), " ", cell(finding.message)))
    if not report.ok:
        errors = sum(1 for f in report.findings if f.level == "error")
        raise RestoreError(
            f"restored {manifest.id}, but {errors} object(s) differ from the source (listed"
            " above): fix them in the project, or restore into a new one"
        )
    if as_json:
        return
    STATE.out.print(
        f"restored {manifest.id}: {report.tables} tables, {report.rows} rows, the user's"
        f" objects as in the source, {len(report.skipped)} entries skipped"
    )
