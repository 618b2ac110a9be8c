"""Which archive entries a restore runs: --schema/--table/--exclude-table grown to what the
chosen objects need and bring, and the drop statements --clean runs for them.
"""

from __future__ import annotations

from collections.abc import Sequence

from bika.operations.restore_plan import (
    ATTACHED_KINDS,
    CHECKED_KINDS,
    DATA_KINDS,
    LARGE_OBJECT_KINDS,
    PULLED_KINDS,
    SETUP_KINDS,
    RestoreOptions,
    RestorePlan,
    Selection,
)
from bika.postgres.preflight import RELATIONS, ArchiveToc, TocEntry


def select(toc: ArchiveToc, options: RestoreOptions, present: set[int] | None) -> Selection:
    """Which entries to restore for --schema/--table/--exclude-table/--schema-only/--data-only.

    present holds the dump ids the target already has (None when writing a file): a
    dependency found there is satisfied, and a schema found there is used, not re-created."""
    by_id = toc.by_id()
    unmatched: list[str] = []
    dependents: set[int] = set()
    prerequisites: set[int] = set()
    if options.schemas or options.tables:
        chosen: set[int] = set()
        for schema in options.schemas:
            hits = {
                e.dump_id
                for e in toc.entries
                if e.namespace == schema or (e.desc == "SCHEMA" and e.tag == schema)
            }
            if not hits:
                unmatched.append(f"--schema {schema}")
            chosen |= hits
        for pattern in options.tables:
            hits = _match_relations(toc, pattern)
            if not hits:
                unmatched.append(f"--table {pattern}")
            chosen |= hits
        named = set(chosen)
        _grow(toc, chosen)
        if options.clean and present is not None:
            dependents = _grow_dependents(toc, chosen, present)
            named |= dependents
        if present is not None:
            prerequisites = _pull_prerequisites(toc, by_id, chosen, present)
    else:
        chosen = {e.dump_id for e in toc.entries}
        named = set(chosen)
    excluded: set[int] = set()
    for pattern in options.exclude_tables:
        hits = _match_relations(toc, pattern)
        if not hits:
            unmatched.append(f"--exclude-table {pattern}")
        excluded |= hits
    _grow(toc, excluded)
    chosen -= excluded
    if options.schemas or options.tables:
        # large objects belong to no schema: a selection by name leaves them out
        chosen -= {e.dump_id for e in toc.entries if e.desc in LARGE_OBJECT_KINDS}
    whole = not options.selective
    use_list = not whole
    if present is not None and (use_list or options.clean):
        # a schema the target has is used as it is: dropping it would take along objects
        # that are not the backup's, and creating it again would fail
        kept = {e.dump_id for e in toc.entries if e.desc == "SCHEMA" and e.dump_id in present}
        chosen -= kept
        use_list = use_list or bool(kept)
    _skip_attached_copies(toc, by_id, chosen, present)
    left_out = _drop_unmet(toc, by_id, chosen, named, excluded, present)
    missing = _prerequisites(toc, by_id, chosen, named, present)
    if options.schema_only:
        chosen -= {e.dump_id for e in toc.entries if e.desc in DATA_KINDS}
    elif options.data_only:
        chosen &= {e.dump_id for e in toc.entries if e.desc in DATA_KINDS}
    chosen |= {e.dump_id for e in toc.entries if e.desc in SETUP_KINDS}
    entries = [e for e in toc.entries if e.dump_id in chosen]
    pulled = [e for e in entries if e.dump_id in dependents and e.desc in RELATIONS]
    needed = [e for e in entries if e.dump_id in prerequisites]
    return Selection(entries, whole, use_list, left_out, missing, unmatched, pulled, needed)


def _match_relations(toc: ArchiveToc, pattern: str) -> set[int]:
    """Relations named by pattern: "name" (any schema), "schema.name" or '"Sch"."Name"'."""
    candidates = _name_candidates(pattern)
    return {
        e.dump_id
        for e in toc.entries
        if e.desc in RELATIONS
        and any(e.tag == name and schema in (None, e.namespace) for schema, name in candidates)
    }


def _name_candidates(pattern: str) -> list[tuple[str | None, str]]:
    if '"' in pattern:
        parts: list[str] = []
        current, quoted, i = "", False, 0
        while i < len(pattern):
            ch = pattern[i]
            if ch == '"':
                if quoted and pattern[i + 1 : i + 2] == '"':
                    current += '"'
                    i += 1
                else:
                    quoted = not quoted
            elif ch == "." and not quoted:
                parts.append(current)
                current = ""
            else:
                current += ch
            i += 1
        parts.append(current)
        if len(parts) == 1:
            return [(None, parts[0])]
        return [(".".join(parts[:-1]), parts[-1])]
    # unquoted: the dot could be the separator or part of a name; try every reading
    out: list[tuple[str | None, str]] = [(None, pattern)]
    out += [(pattern[:i], pattern[i + 1 :]) for i, ch in enumerate(pattern) if ch == "."]
    return out


def _grow(toc: ArchiveToc, chosen: set[int]) -> None:
    """Add what belongs to chosen relations: data, owned and identity sequences, defaults,
    constraints, indexes, triggers, policies, comments, grants, and partitions/children."""
    by_id = toc.by_id()
    changed = True
    while changed:
        changed = False
        for entry in toc.entries:
            if entry.dump_id in chosen:
                continue
            owners = [by_id[d] for d in entry.dependencies if d in chosen and d in by_id]
            if not owners:
                continue
            if entry.desc in ATTACHED_KINDS or (
                entry.desc in ("TABLE", "SEQUENCE") and any(o.desc == "TABLE" for o in owners)
            ):
                chosen.add(entry.dump_id)
                changed = True


# Entries that come along with a pulled prerequisite once all they depend on is restored.
_COMPANIONS = frozenset({"COMMENT", "ACL", "SECURITY LABEL", "SEQUENCE SET"})


def _pull_prerequisites(
    toc: ArchiveToc, by_id: dict[int, TocEntry], chosen: set[int], present: set[int]
) -> set[int]:
    """Add what chosen entries need and the target lacks, and what that needs in turn: the
    schemas, types, domains, functions, extensions and sequences of PULLED_KINDS (an enum
    column's type, a default's function or sequence). Their comments, grants and sequence
    values come along; entries of other objects that use them do not."""
    pulled: set[int] = set()
    todo = [by_id[i] for i in chosen if i in by_id]
    while todo:
        entry = todo.pop()
        for dep_id in entry.dependencies:
            dep = by_id.get(dep_id)
            if dep is None or dep_id in chosen or dep_id in present:
                continue
            if dep.desc in PULLED_KINDS:
                chosen.add(dep_id)
                pulled.add(dep_id)
                todo.append(dep)
    if pulled:
        for entry in toc.entries:
            needs = set(entry.dependencies)
            if entry.desc in _COMPANIONS and needs and needs <= chosen and needs & pulled:
                chosen.add(entry.dump_id)
    return pulled


def _grow_dependents(toc: ArchiveToc, chosen: set[int], present: set[int]) -> set[int]:
    """With --clean, the backup's views that the target has over a restored relation: a
    table cannot be dropped under them, so they are dropped and recreated with it."""
    added: set[int] = set()
    changed = True
    while changed:
        changed = False
        for entry in toc.entries:
            if (
                entry.desc in ("VIEW", "MATERIALIZED VIEW")
                and entry.dump_id not in chosen
                and entry.dump_id in present
                and any(d in chosen for d in entry.dependencies)
            ):
                chosen.add(entry.dump_id)
                added.add(entry.dump_id)
                changed = True
        if changed:
            _grow(toc, chosen)
    return added


def _skip_attached_copies(
    toc: ArchiveToc, by_id: dict[int, TocEntry], chosen: set[int], present: set[int] | None
) -> None:
    """A partition restored under a parent that stays in the target gets its copies of the
    parent's indexes from ATTACH PARTITION itself; creating the archive's as well would fail
    ("multiple primary keys"), so those and their INDEX ATTACH entries are skipped."""
    for entry in toc.entries:
        if entry.desc != "INDEX ATTACH" or entry.dump_id not in chosen:
            continue
        indexes = [
            by_id[d]
            for d in entry.dependencies
            if d in by_id and by_id[d].desc in ("INDEX", "CONSTRAINT")
        ]
        parents = [i for i in indexes if i.dump_id not in chosen]
        if not parents:
            continue
        table = _relation_of(parents[0], by_id)
        if present is None or (table is not None and table.dump_id in present):
            chosen.discard(entry.dump_id)
            chosen.difference_update(i.dump_id for i in indexes)


def _relation_of(entry: TocEntry, by_id: dict[int, TocEntry]) -> TocEntry | None:
    """The relation an entry is or belongs to (a constraint's table); None for other kinds."""
    if entry.desc in RELATIONS:
        return entry
    if entry.desc in ATTACHED_KINDS:
        for dep in entry.dependencies:
            owner = by_id.get(dep)
            if owner is not None and owner.desc in RELATIONS:
                return owner
    return None


def _drop_unmet(
    toc: ArchiveToc,
    by_id: dict[int, TocEntry],
    chosen: set[int],
    named: set[int],
    excluded: set[int],
    present: set[int] | None,
) -> list[tuple[TocEntry, str]]:
    """Leave out entries that need a relation which is neither restored nor in the target
    (a foreign key to an unselected table, a view over an excluded one)."""
    left_out: list[tuple[TocEntry, str]] = []
    changed = True
    while changed:
        changed = False
        for entry in toc.entries:
            if entry.dump_id not in chosen:
                continue
            for dep_id in entry.dependencies:
                dep = by_id.get(dep_id)
                if dep is None or dep_id in chosen:
                    continue
                relation = _relation_of(dep, by_id)
                if relation is None:
                    continue
                if entry.desc == "TABLE" and dep.desc == "TABLE":
                    continue  # a partition is created on its own; TABLE ATTACH links it
                in_target = present is None or (
                    relation.dump_id in present and relation.dump_id not in chosen
                )
                if in_target and dep_id not in excluded:
                    continue
                is_named_object = entry.dump_id in named and entry.desc not in ATTACHED_KINDS
                if is_named_object and relation.dump_id not in excluded:
                    continue  # reported as a missing prerequisite instead
                why = "excluded" if relation.dump_id in excluded else "not restored"
                left_out.append((entry, f"needs {relation.qualified} ({why})"))
                chosen.discard(entry.dump_id)
                changed = True
                break
    return left_out


def _prerequisites(
    toc: ArchiveToc,
    by_id: dict[int, TocEntry],
    chosen: set[int],
    named: set[int],
    present: set[int] | None,
) -> list[tuple[TocEntry, TocEntry]]:
    """(entry, what it needs) for schemas, types, functions, extensions and relations that
    are neither restored nor in the target."""
    if present is None:
        return []
    missing = []
    for entry in toc.entries:
        if entry.dump_id not in chosen:
            continue
        for dep_id in entry.dependencies:
            dep = by_id.get(dep_id)
            if dep is None or dep_id in chosen or dep_id in present:
                continue
            if dep.desc in CHECKED_KINDS or (
                entry.dump_id in named
                and dep.desc in RELATIONS
                and not (entry.desc == "TABLE" and dep.desc == "TABLE")
            ):
                missing.append((entry, dep))
    return missing


def clean_sql(plan: RestorePlan) -> str:
    """What --clean runs before loading: the archive's own drop statements for the selection,
    made IF EXISTS, in reverse archive order, without those that dropping their table does.

    pg_restore --clean also drops each constraint and index of a table it then drops; on a
    partition that fails ("cannot drop inherited constraint"), so bika leaves those out."""
    return drop_sql(plan.toc, plan.selection.entries)


def drop_sql(toc: ArchiveToc, entries: Sequence[TocEntry]) -> str:
    """clean_sql for any choice of the archive's entries (in archive order)."""
    chosen = {e.dump_id for e in entries}
    by_id = toc.by_id()
    lines = [
        "-- bika restore --clean: the backup's objects, dropped if the target has them",
        "SET client_min_messages = warning;",
    ]
    for entry in reversed(entries):
        if entry.desc in SETUP_KINDS:
            continue
        if entry.desc == "BLOB METADATA" or entry.desc == "BLOB":
            oids = entry.large_objects or ((int(entry.tag),) if entry.tag.isdigit() else ())
            lines += [
                "SELECT pg_catalog.lo_unlink(oid) FROM pg_catalog.pg_largeobject_metadata"
                f" WHERE oid = '{oid}';"
                for oid in oids
            ]
            continue
        if not entry.drop or entry.drop.startswith("--"):
            continue
        # foreign keys go first so tables can go; defaults so their sequences can
        if entry.desc in ATTACHED_KINDS and entry.desc not in ("FK CONSTRAINT", "DEFAULT"):
            owner = _relation_of(entry, by_id)
            if owner is not None and owner.dump_id in chosen and owner.desc != "SEQUENCE":
                continue
        lines.append(_if_exists(entry).strip())
    return "\n".join(lines) + "\n"


def _if_exists(entry: TocEntry) -> str:
    """The drop statement with IF EXISTS where pg_restore --if-exists would put it."""
    statement = entry.drop or ""
    prefix = ""
    if statement.startswith("ALTER TABLE"):
        prefix = "ALTER TABLE IF EXISTS"
        statement = statement[len("ALTER TABLE") :]
    if entry.desc in ("DEFAULT", "DATABASE PROPERTIES") or statement.startswith(
        "CREATE OR REPLACE VIEW"
    ):
        return prefix + statement
    if entry.desc in ("CONSTRAINT", "CHECK CONSTRAINT", "FK CONSTRAINT"):
        keyword = "DROP CONSTRAINT"
    else:
        keyword = f"DROP {entry.desc}"
    at = statement.find(keyword)
    if at < 0:
        return prefix + statement
    end = at + len(keyword)
    return f"{prefix}{statement[:at]}{keyword} IF EXISTS{statement[end:]}"
