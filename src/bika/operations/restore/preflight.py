"""The checks before a restore or an export: each a finding that says what was checked and, for
a warning or an error, what to do. Pure: they read a plan and the target's facts, change nothing.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from bika.findings import Finding
from bika.operations.restore.plan import RestoreOptions, RestorePlan
from bika.operations.stored_archive import DISK_MARGIN
from bika.postgres import binaries
from bika.postgres.archive import TocEntry
from bika.postgres.target import TargetFacts, disk_free, writable_folder
from bika.postgres.toc import ATTACHED_KINDS, RELATIONS
from bika.repository import Manifest
from bika.units import size


def preflight(manifest: Manifest, plan: RestorePlan, options: RestoreOptions) -> list[Finding]:
    """Every check before a restore into a database, each with a way forward."""
    facts = plan.facts
    assert facts is not None
    findings = [_tool_finding(manifest, plan.tool_version), *_selection_findings(plan)]
    findings.append(_version_finding(manifest, facts, options))
    findings += _target_findings(plan, facts, options)
    findings += _source_findings(manifest, facts, options)
    findings.append(_space_finding(manifest, plan, facts, options))
    findings += _privilege_findings(plan, facts, options)
    if plan.adapts_sql and options.jobs == 1:
        findings.append(
            Finding(
                "ok",
                "compatibility",
                f"pg_restore {plan.tool_version} writes SQL that PostgreSQL"
                f" {facts.server_major} rejects: bika loads it through psql, adapted",
            )
        )
    return findings


def preflight_file(
    manifest: Manifest, plan: RestorePlan, options: RestoreOptions, path: Path
) -> list[Finding]:
    """Every check before writing the backup to a file, each with a way forward."""
    findings = [_tool_finding(manifest, plan.tool_version), *_selection_findings(plan)]
    if path.suffix not in (".sql", ".dump"):
        findings.append(
            Finding(
                "error",
                "file",
                f"--to-file {path}: name it *.sql for plain SQL or *.dump for the custom-format"
                " archive",
            )
        )
        return findings
    exists = path.exists() or path.is_symlink()
    writable = exists or writable_folder(path.parent)
    need = manifest.artifacts["database"].plain_size
    return findings + _file_findings(path, options, exists, writable, disk_free(path.parent), need)


def _file_findings(
    path: Path, options: RestoreOptions, exists: bool, writable: bool, free: int | None, need: int
) -> list[Finding]:
    findings = []
    if path.suffix == ".dump" and (
        options.selective
        or options.schema_only
        or options.data_only
        or options.clean
        or options.create
        or options.no_owner
    ):
        findings.append(
            Finding(
                "error",
                "file",
                "a .dump file is the whole archive as it was backed up; give --table, --schema,"
                " --clean… to pg_restore when you restore it, or write a .sql file instead",
            )
        )
    if exists:
        findings.append(
            Finding(
                "error",
                "file",
                f"{path} already exists; bika never overwrites a file:"
                " remove it or choose another name",
            )
        )
    elif not writable:
        findings.append(
            Finding(
                "error",
                "file",
                f"cannot write {path}: folder {path.parent} does not exist or is not writable",
            )
        )
    if free is not None and free < need + DISK_MARGIN:
        said = f"{path.parent} has {size(free)} free but the file needs about {size(need)}"
        findings.append(_unless_forced(options, "space", said, "free space, or write elsewhere"))
    elif free is not None:
        findings.append(
            Finding("ok", "space", f"{path.parent}: {size(free)} free for about {size(need)}")
        )
    return findings


def _tool_finding(manifest: Manifest, tool_version: str) -> Finding:
    have = binaries.major(tool_version)
    need = binaries.major(manifest.source.pg_dump_version)
    if have < need:
        return Finding(
            "error",
            "tools",
            f"this backup was made by pg_dump {manifest.source.pg_dump_version}; pg_restore"
            f" {tool_version} cannot read it: use pg_restore {need} or newer (pg_bin_dir)",
        )
    return Finding(
        "ok",
        "tools",
        f"pg_restore {tool_version} reads archives of pg_dump {manifest.source.pg_dump_version}",
    )


def _selection_findings(plan: RestorePlan) -> list[Finding]:
    selection = plan.selection
    findings = []
    for what in selection.unmatched:
        findings.append(
            Finding(
                "error",
                "selection",
                f"{what} matches nothing in backup {plan.backup_id}; 'bika restore"
                f" {plan.backup_id} --dry-run --to URL' lists what it holds",
            )
        )
    if not selection.unmatched and not selection.work:
        if selection.whole:
            # a backup of an empty database: restoring it is restoring nothing, and succeeds
            findings.append(Finding("ok", "selection", "the backup holds no objects to restore"))
        else:
            findings.append(
                Finding("error", "selection", "the selection leaves nothing to restore")
            )
    if selection.dependents:
        names = ", ".join(e.qualified for e in selection.dependents[:4])
        more = f" and {len(selection.dependents) - 4} more" if len(selection.dependents) > 4 else ""
        findings.append(
            Finding(
                "warn",
                "selection",
                f"--clean also drops and recreates {names}{more}: they depend on what is restored",
                facts=_ids(selection.dependents),
            )
        )
    if selection.prerequisites:
        needed = selection.prerequisites
        names = ", ".join(e.name for e in needed[:4])
        more = f" and {len(needed) - 4} more" if len(needed) > 4 else ""
        findings.append(
            Finding(
                "warn",
                "selection",
                f"also restores {names}{more}: the selection needs them and the target lacks them",
                facts=_ids(needed),
            )
        )
    if selection.left_out:
        shown = ", ".join(f"{e.name} ({why})" for e, why in selection.left_out[:3])
        more = f" and {len(selection.left_out) - 3} more" if len(selection.left_out) > 3 else ""
        findings.append(
            Finding(
                "warn",
                "selection",
                f"left out because what they need is not restored: {shown}{more}",
            )
        )
    if selection.missing:
        needs = sorted({dep.name for _, dep in selection.missing})
        first_entry, first_dep = selection.missing[0]
        findings.append(
            Finding(
                "error",
                "prerequisites",
                f"the selection needs {', '.join(needs[:4])}"
                f"{f' and {len(needs) - 4} more' if len(needs) > 4 else ''}, neither restored"
                f" nor in the target (e.g. {first_entry.name} needs {first_dep.name}): add"
                " them with --schema/--table, or restore them first",
                facts=_ids(e for e, _ in selection.missing),
            )
        )
    return findings


def _version_finding(manifest: Manifest, facts: TargetFacts, options: RestoreOptions) -> Finding:
    source = manifest.source.server_version
    source_major = binaries.major(source)
    if facts.server_major >= source_major:
        return Finding(
            "ok",
            "version",
            f"target runs PostgreSQL {facts.server_version}, the backup's source ran {source}",
        )
    said = f"the backup comes from PostgreSQL {source} and the target runs {facts.server_version}"
    return _unless_forced(
        options,
        "version",
        said,
        f"features of {source_major} may not restore; use a PostgreSQL {source_major}+ server",
    )


def _unless_forced(options: RestoreOptions, check: str, said: str, fix: str) -> Finding:
    """A refusal that --force overrides: an error saying the fix, or with --force a warning."""
    if options.force:
        return Finding("warn", check, f"{said}; trying anyway (--force)")
    return Finding("error", check, f"{said}: {fix}, or pass --force to try")


def _target_findings(
    plan: RestorePlan, facts: TargetFacts, options: RestoreOptions
) -> list[Finding]:
    name = facts.database
    if options.create:
        if facts.database_exists:
            return [
                Finding(
                    "error",
                    "target",
                    f"database {name!r} already exists; drop --create to restore into it"
                    " (with --clean if it is not empty), or choose a new name",
                )
            ]
        if not facts.create_database:
            return [
                Finding(
                    "error",
                    "privileges",
                    f"role {facts.role} may not create databases: ask for CREATEDB, or create"
                    f" {name!r} first and restore into it without --create",
                )
            ]
        return [Finding("ok", "target", f"database {name!r} will be created")]
    if not facts.database_exists:
        return [
            Finding(
                "error", "target", f"database {name!r} does not exist; pass --create to create it"
            )
        ]
    if options.data_only:
        return _data_only_findings(plan, facts)
    if not (options.schemas or options.tables):
        if facts.user_objects and not options.clean:
            return [
                Finding(
                    "error",
                    "target",
                    f"database {name!r} is not empty ({facts.user_objects} tables, views,"
                    " sequences or functions); pass --clean to drop and recreate the backup's"
                    " objects, or restore into a new database with --create",
                )
            ]
        if facts.user_objects:
            return [
                Finding(
                    "ok",
                    "target",
                    f"database {name!r} is not empty: --clean drops and"
                    " recreates the backup's objects first",
                )
            ]
        return [Finding("ok", "target", f"database {name!r} is empty")]
    clashes = [
        e for e in plan.selection.entries if e.desc in RELATIONS and e.dump_id in facts.present
    ]
    if clashes and not options.clean:
        names = ", ".join(e.qualified for e in clashes[:4])
        more = f" and {len(clashes) - 4} more" if len(clashes) > 4 else ""
        return [
            Finding(
                "error",
                "target",
                f"{names}{more} already exist in {name!r}; pass --clean to drop and recreate"
                " them, --exclude-table to keep them, or restore into a new database"
                " with --create",
                facts=_ids(clashes),
            )
        ]
    return [
        Finding(
            "ok",
            "target",
            f"none of the selected objects exist in {name!r} yet"
            if not clashes
            else f"--clean drops and recreates {len(clashes)} of them",
        )
    ]


def _source_findings(
    manifest: Manifest, facts: TargetFacts, options: RestoreOptions
) -> list[Finding]:
    """--clean into the very database the backup was taken of replaces what it holds now."""
    source = manifest.source
    same = (
        facts.database_exists
        and facts.database == source.database
        and facts.host_hash == source.host_hash
    )
    if not (options.clean and same):
        return []
    said = (
        f"{facts.database!r} is the database this backup was taken of: --clean puts back its"
        f" state of {manifest.started_at:%Y-%m-%d %H:%M} UTC, and the rows written since"
        " then are lost"
    )
    return [
        _unless_forced(
            options, "source", said, "restore into a new database with --create to compare first"
        )
    ]


def _data_only_findings(plan: RestorePlan, facts: TargetFacts) -> list[Finding]:
    by_id = plan.toc.by_id()
    absent: list[str] = []
    lacking: list[TocEntry] = []
    for entry in plan.selection.entries:
        if entry.desc != "TABLE DATA":
            continue
        tables = [by_id[d] for d in entry.dependencies if d in by_id and by_id[d].desc == "TABLE"]
        if tables and tables[0].dump_id not in facts.present:
            absent.append(tables[0].qualified)
            lacking.append(entry)
    if absent:
        return [
            Finding(
                "error",
                "target",
                f"--data-only needs the tables in the target, which lacks {', '.join(absent[:4])}"
                f"{f' and {len(absent) - 4} more' if len(absent) > 4 else ''}: restore the"
                " schema first (--schema-only), or restore without --data-only",
                facts=_ids(lacking),
            )
        ]
    findings = [Finding("ok", "target", "every table to load exists in the target")]
    filled = [f"{s}.{n}" for (s, n), rows in plan.rows_before.items() if rows]
    if filled:
        findings.append(
            Finding(
                "warn",
                "target",
                f"{', '.join(filled[:4])}{' …' if len(filled) > 4 else ''} already hold rows:"
                " the restore adds the backup's rows to them (duplicates fail the restore)",
            )
        )
    if not facts.superuser:
        findings.append(
            Finding(
                "warn",
                "privileges",
                f"role {facts.role} is not a superuser, so triggers and foreign keys stay"
                " active during the load (a trigger may add rows, a foreign key may reject"
                " them); a superuser restore disables them",
            )
        )
    return findings


def _space_finding(
    manifest: Manifest, plan: RestorePlan, facts: TargetFacts, options: RestoreOptions
) -> Finding:
    if options.schema_only:
        return Finding("ok", "space", "schema only: next to no space needed")
    if plan.selection.whole:
        need = manifest.source.database_size or sum(t.bytes for t in manifest.tables)
        what = "the source database's size"
    else:
        need = sum(t.bytes for t in plan.tables)
        what = "the selected tables' data"
    if facts.free_bytes is None:
        return Finding(
            "warn",
            "space",
            f"cannot measure free space on the target ({facts.free_unknown}); make sure it has"
            f" about {size(need)} free ({what})",
        )
    if facts.free_bytes < need + DISK_MARGIN:
        said = (
            f"the target's data volume ({facts.data_directory}) has {size(facts.free_bytes)}"
            f" free but the restore needs about {size(need)} ({what})"
        )
        return _unless_forced(options, "space", said, "free space")
    return Finding(
        "ok",
        "space",
        f"{size(facts.free_bytes)} free on {facts.data_directory}, the restore needs about"
        f" {size(need)}",
    )


def _privilege_findings(
    plan: RestorePlan, facts: TargetFacts, options: RestoreOptions
) -> list[Finding]:
    findings = _owner_findings(plan, facts, options)
    if facts.superuser:
        return [Finding("ok", "privileges", f"role {facts.role} is a superuser"), *findings]
    creates = plan.creates if not options.data_only else []
    schemas = [e for e in creates if e.desc == "SCHEMA"]
    new_schemas = [e.tag for e in schemas]
    if new_schemas and not facts.create_in_database:
        findings.append(
            Finding(
                "error",
                "privileges",
                f"role {facts.role} may not create schemas in {facts.database!r} (needs CREATE"
                f" on the database) but the backup creates {', '.join(new_schemas[:4])}:"
                f" GRANT CREATE ON DATABASE, or connect as the database owner",
                facts=_ids(schemas),
            )
        )
    placed = [
        e
        for e in creates
        if e.namespace and e.namespace not in new_schemas and e.desc not in ATTACHED_KINDS
    ]
    used = sorted({e.namespace for e in placed if e.namespace})
    denied = [s for s in used if s in facts.create_in_schema and not facts.create_in_schema[s]]
    if denied:
        findings.append(
            Finding(
                "error",
                "privileges",
                f"role {facts.role} may not create objects in schema(s) {', '.join(denied)}:"
                " GRANT CREATE ON SCHEMA, or connect as their owner",
                facts=_ids(e for e in placed if e.namespace in denied),
            )
        )
    for entry in creates:
        if entry.desc != "EXTENSION" or entry.dump_id in facts.present:
            continue
        trusted = facts.extensions.get(entry.tag)
        if trusted is None:
            findings.append(
                Finding(
                    "error",
                    "extensions",
                    f"extension {entry.tag} is not installed on the target server: install"
                    " its package there, or --exclude it by restoring selected schemas",
                    facts=_ids([entry]),
                )
            )
        elif not trusted:
            findings.append(
                Finding(
                    "error",
                    "extensions",
                    f"extension {entry.tag} needs a superuser to create and role"
                    f" {facts.role} is not one: create it first as a superuser, or connect as"
                    " one",
                    facts=_ids([entry]),
                )
            )
    if not any(f.level == "error" for f in findings):
        findings.append(
            Finding("ok", "privileges", f"role {facts.role} may create what the backup holds")
        )
    return findings


def _owner_findings(
    plan: RestorePlan, facts: TargetFacts, options: RestoreOptions
) -> list[Finding]:
    """Restoring ownership needs the owners to exist and the role to be able to act as them."""
    if options.no_owner or options.data_only:
        return []
    work = plan.selection.work
    owners = sorted({e.owner for e in work if e.owner})
    absent = [o for o in owners if o not in facts.roles]
    foreign = [o for o in owners if o in facts.roles and o not in facts.member_of]
    findings = []
    if absent:
        findings.append(
            Finding(
                "error",
                "owners",
                f"the backup's objects belong to role(s) {', '.join(absent[:4])}, missing"
                " from the target: create them first (the backup's globals artifact has"
                " them), or pass --no-owner",
                facts=_ids(e for e in work if e.owner in absent),
            )
        )
    if foreign and not facts.superuser:
        findings.append(
            Finding(
                "error",
                "owners",
                f"role {facts.role} may not give objects to {', '.join(foreign[:4])}:"
                " connect as a member of those roles or a superuser, or pass --no-owner",
                facts=_ids(e for e in work if e.owner in foreign),
            )
        )
    return findings


def _ids(entries: Iterable[TocEntry]) -> dict[str, Any]:
    """A finding's facts: the dump ids of the entries that raise it (see plan.entries_of)."""
    return {"entries": sorted({e.dump_id for e in entries})}
