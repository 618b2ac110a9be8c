"""Which entries of a supabase-profile archive a restore into a project applies, in what order,
and why each other one is left out. Pure: archive entries and the project's facts in, a plan out.

The project already has the platform's schemas, tables, functions, grants and event triggers;
a restore adds the user's objects (their own schemas, and their triggers and policies on the
platform's tables) and the user's rows (their tables, and auth/storage/… rows), nothing else.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from bika.supabase import profile

if TYPE_CHECKING:
    from bika.postgres.archive import TocEntry
    from bika.postgres.supabase import ProjectFacts

Table = tuple[str, str]

# pseudo-entries pg_restore turns into session settings
_SESSION = {"ENCODING", "STDSTRINGS", "SEARCHPATH"}
_DATA = {"TABLE DATA", "SEQUENCE SET", "BLOBS", "BLOB DATA", "LARGE OBJECT"}
_ACL = {"ACL", "DEFAULT ACL"}
_TRIGGER_FUNCTION = re.compile(r"EXECUTE (?:FUNCTION|PROCEDURE) (.+?)\(")
# Policies the platform puts on pg_cron's table (dump.go comments them out of schema dumps).
_PLATFORM_POLICY = re.compile(r"^cron_job_")


@dataclass(frozen=True)
class Skipped:
    what: str  # "TRIGGER auth.users on_auth_user_created"
    why: str


@dataclass
class Selection:
    main: list[TocEntry] = field(default_factory=list)
    """Session settings, the user's objects, then the rows: restored first, in this order."""
    acl: list[TocEntry] = field(default_factory=list)
    """The user's privileges, restored after every object has its built-in defaults again."""
    skipped: list[Skipped] = field(default_factory=list)
    """Entries of the user's that were left out, each with the reason."""
    platform: int = 0
    """Entries left out because they are the platform's and the project has its own."""
    managed_data: list[Table] = field(default_factory=list)
    """Managed tables (auth.users, storage.objects, …) whose rows are restored, parents first."""
    data: list[Table] = field(default_factory=list)
    """Every table whose rows are restored, parents first (by the project's foreign keys)."""
    user_schemas: set[str] = field(default_factory=set)
    """The user's own schemas the archive holds objects of."""


def label(entry: TocEntry) -> str:
    where = f"{entry.namespace}." if entry.namespace else ""
    return f"{entry.desc} {where}{entry.tag}"


def select(entries: Sequence[TocEntry], project: ProjectFacts, *, clean: bool) -> Selection:
    chosen = Selection()
    data: list[TocEntry] = []
    kept = _kept_trigger_functions(entries, project, clean=clean)
    for entry in entries:
        verdict = _judge(entry, project, clean=clean)
        function = f"{entry.namespace}.{entry.tag.split('(')[0]}"
        if verdict is None and entry.desc == "FUNCTION" and function in kept:
            verdict = (
                f"kept as the project has it: trigger {kept[function]}, which {project.user}"
                " may not replace, calls it"
            )
        if verdict is None:
            if entry.desc in _ACL:
                chosen.acl.append(entry)
            elif entry.desc in _DATA:
                data.append(entry)
            else:
                chosen.main.append(entry)
            if entry.namespace and not profile.is_managed_schema(entry.namespace):
                chosen.user_schemas.add(entry.namespace)
            if entry.desc == "SCHEMA" and not profile.is_managed_schema(entry.tag):
                chosen.user_schemas.add(entry.tag)
        elif verdict == _PLATFORM:
            chosen.platform += 1
        else:
            chosen.skipped.append(Skipped(label(entry), verdict))
    ordered = parents_first(data, project.foreign_keys)
    # the rows go after the definitions (pre-data) and before indexes, constraints, triggers
    # (post-data), as pg_restore would put them
    post = [e for e in chosen.main if e.section == _POST_DATA]
    chosen.main = [e for e in chosen.main if e.section != _POST_DATA] + ordered + post
    chosen.data = [(e.namespace or "", e.tag) for e in ordered if e.desc == "TABLE DATA"]
    chosen.managed_data = [t for t in chosen.data if profile.is_managed_schema(t[0])]
    return chosen


def _kept_trigger_functions(
    entries: Sequence[TocEntry], project: ProjectFacts, *, clean: bool
) -> dict[str, str]:
    """schema.function → the trigger on a managed table that --clean cannot replace (so it
    stays, and the function it calls cannot be dropped and made again either)."""
    kept: dict[str, str] = {}
    if not clean:
        return kept
    for entry in entries:
        schema = entry.namespace or ""
        if entry.desc != "TRIGGER" or not profile.is_managed_schema(schema):
            continue
        table, _, name = entry.tag.partition(" ")
        present = (schema, table, name) in project.triggers
        if present and (schema, table) not in project.may_alter:
            function = _TRIGGER_FUNCTION.search(entry.defn or "")
            if function:
                called = function.group(1).replace('"', "")
                kept[called] = f"{name} on {schema}.{table}"
    return kept


# pg_dump's sections (pg_backup_archiver.h teSection): 1 none, 2 pre-data, 3 data, 4 post-data
_POST_DATA = 4
_PLATFORM = "\0platform"


def _judge(entry: TocEntry, project: ProjectFacts, *, clean: bool) -> str | None:
    """None to restore the entry, _PLATFORM to leave it to the project, else why it is not."""
    desc, schema = entry.desc, entry.namespace or ""
    if desc in _SESSION:
        return None
    if desc == "EVENT TRIGGER":
        if profile.is_platform_role(entry.owner):
            return _PLATFORM
        return "event triggers need a superuser, which a project does not give: create it again"
    if desc.startswith("PUBLICATION") and entry.tag.startswith(profile.PLATFORM_PUBLICATION_PREFIX):
        return _PLATFORM
    if desc == "EXTENSION":
        if entry.tag in project.extensions:
            return _PLATFORM
        return (
            f"extension {entry.tag} is not enabled in the project: enable it (Database →"
            " Extensions) and restore again"
        )
    if desc == "DEFAULT ACL" and (entry.owner or "") != project.user:
        return _PLATFORM
    if desc == "SCHEMA":
        return _judge_schema(entry.tag, project, clean=clean)
    if desc == "COMMENT" and entry.tag.startswith("SCHEMA ") and not schema:
        name = entry.tag.removeprefix("SCHEMA ").strip('"')
        return _judge_schema(name, project, clean=clean)
    if desc == "ACL" and entry.tag.startswith("SCHEMA ") and not schema:
        name = entry.tag.removeprefix("SCHEMA ").strip('"')
        return _judge_schema(name, project, clean=clean)
    if not schema or not profile.is_managed_schema(schema):
        if profile.is_platform_role(entry.owner):
            return _PLATFORM
        return None
    return _judge_managed(entry, schema, project, clean=clean)


def _judge_schema(name: str, project: ProjectFacts, *, clean: bool) -> str | None:
    if name == "public" or (
        profile.is_managed_schema(name) and not _new_user_schema(name, project)
    ):
        return _PLATFORM
    if name in project.schemas and not clean:
        return _PLATFORM  # the preflight refused a project that has the user's objects
    return None


def _new_user_schema(schema: str, project: ProjectFacts) -> bool:
    """A managed schema the user makes (supabase_migrations) that the project lacks yet."""
    return schema in profile.USER_CREATED_SCHEMAS and schema not in project.schemas


def _judge_managed(
    entry: TocEntry, schema: str, project: ProjectFacts, *, clean: bool
) -> str | None:
    desc = entry.desc
    if _new_user_schema(schema, project):
        return None
    if desc == "TABLE DATA":
        table = (schema, entry.tag)
        if not profile.holds_user_data(schema, entry.tag):
            return _PLATFORM
        if table not in project.relations:
            return (
                f"the project has no table {schema}.{entry.tag}: enable the feature or"
                " extension that makes it, then restore again"
            )
        if table not in project.may_insert:
            return f"{project.user} may not insert into {schema}.{entry.tag} in the project"
        if clean and table not in project.may_delete:
            return f"{project.user} may not delete the rows of {schema}.{entry.tag} (--clean)"
        return None
    if desc == "SEQUENCE SET":
        sequence = (schema, entry.tag)
        if not profile.is_user_data_schema(schema) or sequence not in project.relations:
            return _PLATFORM
        if sequence not in project.may_set_sequence:
            return f"{project.user} may not set sequence {schema}.{entry.tag} in the project"
        return None
    if desc == "TRIGGER":
        return _judge_trigger(entry, schema, project, clean=clean)
    if desc == "POLICY":
        on, _, name = entry.tag.partition(" ")
        table_name: Table = (schema, on)
        if _PLATFORM_POLICY.match(name):
            return _PLATFORM
        if (schema, on, name) in project.policies and not clean:
            return _PLATFORM
        if table_name not in project.relations:
            return f"the project has no table {schema}.{on}"
        if table_name not in project.may_alter:
            return (
                f"{project.user} may not add a policy to {schema}.{on} (only its owner"
                " may): run this CREATE POLICY as the table's owner"
            )
        return None
    if desc in ("FUNCTION", "PROCEDURE", "AGGREGATE") and not profile.is_platform_role(entry.owner):
        return None
    return _PLATFORM


def _judge_trigger(
    entry: TocEntry, schema: str, project: ProjectFacts, *, clean: bool
) -> str | None:
    table, _, name = entry.tag.partition(" ")
    function = _TRIGGER_FUNCTION.search(entry.defn or "")
    function_schema = function.group(1).split(".")[0].strip('"') if function else schema
    if profile.is_managed_schema(function_schema):
        return _PLATFORM  # the platform's trigger, calling the platform's function
    if (schema, table, name) in project.triggers:
        if not clean:
            return _PLATFORM
        if (schema, table) not in project.may_alter:
            return (
                f"the project has trigger {name} already and {project.user} may not replace it"
                f" (dropping a trigger needs the owner of {schema}.{table}): left as it is"
            )
    if (schema, table) not in project.relations:
        return f"the project has no table {schema}.{table}"
    if (schema, table) not in project.may_trigger:
        return f"{project.user} may not create triggers on {schema}.{table} in the project"
    return None


def parents_first(
    data: Iterable[TocEntry], foreign_keys: Iterable[tuple[Table, Table]]
) -> list[TocEntry]:
    """Data entries ordered so that a referenced table's rows load before its referencing
    table's (otherwise as given): without session_replication_role the project's foreign
    keys are checked row by row."""
    entries = list(data)
    tables = {(e.namespace or "", e.tag): e for e in entries if e.desc == "TABLE DATA"}
    parents: dict[Table, set[Table]] = {t: set() for t in tables}
    for child, parent in foreign_keys:
        if child in tables and parent in tables and child != parent:
            parents[child].add(parent)
    placed: list[TocEntry] = []
    done: set[Table] = set()

    def place(table: Table, path: frozenset[Table]) -> None:
        if table in done or table in path:
            return
        for parent in sorted(parents[table]):
            place(parent, path | {table})
        done.add(table)
        placed.append(tables[table])

    for entry in entries:
        key = (entry.namespace or "", entry.tag)
        if entry.desc == "TABLE DATA":
            place(key, frozenset())
        else:
            placed.append(entry)
    return placed


def reverse_tables(tables: Sequence[Table]) -> list[Table]:
    """Children before parents: the order to delete rows in."""
    return list(reversed(tables))
