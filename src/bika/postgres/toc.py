"""pg_dump's table of contents as a vocabulary and a graph: the entry kinds bika treats alike,
what depends on what, and what an entry's definition says (encoding, sequence values).

Pure: reads TocEntry values (bika.postgres.archive parses them), no I/O.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from bika.postgres.archive import TocEntry

RELATIONS = frozenset({"TABLE", "VIEW", "MATERIALIZED VIEW", "FOREIGN TABLE", "SEQUENCE"})
# Entries pg_restore handles itself whatever the selection (session settings, the database).
SETUP_KINDS = frozenset({"ENCODING", "STDSTRINGS", "SEARCHPATH", "DATABASE", "DATABASE PROPERTIES"})
DATA_KINDS = frozenset(
    {"TABLE DATA", "SEQUENCE SET", "BLOB", "BLOBS", "BLOB METADATA", "MATERIALIZED VIEW DATA"}
)
LARGE_OBJECT_KINDS = frozenset({"BLOB", "BLOBS", "BLOB METADATA"})
# Entries that exist only for the object they depend on: a selected table brings its own.
ATTACHED_KINDS = frozenset(
    {
        "TABLE DATA",
        "SEQUENCE OWNED BY",
        "SEQUENCE SET",
        "DEFAULT",
        "CONSTRAINT",
        "CHECK CONSTRAINT",
        "FK CONSTRAINT",
        "INDEX",
        "INDEX ATTACH",
        "TABLE ATTACH",
        "TRIGGER",
        "POLICY",
        "ROW SECURITY",
        "RULE",
        "COMMENT",
        "SECURITY LABEL",
        "ACL",
        "STATISTICS DATA",
        "MATERIALIZED VIEW DATA",
        "PUBLICATION TABLE",
    }
)
# Prerequisites whose presence in the target inspect_target can tell.
CHECKED_KINDS = frozenset({"SCHEMA", "EXTENSION", "TYPE", "DOMAIN", "FUNCTION", "PROCEDURE"})
# What a selective restore adds when a selected object needs it and the target lacks it.
PULLED_KINDS = CHECKED_KINDS | {"SEQUENCE"}
# Post-data steps that lock their table against readers (ACCESS EXCLUSIVE): a drill reads a
# table during the restore only once they are done, so that pg_restore never waits for it.
# Index builds, foreign keys and triggers take weaker locks that reading does not block.
BLOCKING_KINDS = frozenset({"CONSTRAINT", "CHECK CONSTRAINT", "RULE", "POLICY", "ROW SECURITY"})
# Where each kind of entry is found in a restored catalog: the key of
# bika.postgres.catalog.OBJECT_QUERIES that lists its (schema, tag) pairs.
CATALOG_KINDS: dict[str, str] = {
    "SCHEMA": "SCHEMA",
    "EXTENSION": "EXTENSION",
    "TYPE": "TYPE",
    "DOMAIN": "TYPE",
    "FUNCTION": "FUNCTION",
    "PROCEDURE": "FUNCTION",
    "AGGREGATE": "FUNCTION",
    "TABLE": "RELATION",
    "FOREIGN TABLE": "RELATION",
    "VIEW": "RELATION",
    "MATERIALIZED VIEW": "RELATION",
    "SEQUENCE": "RELATION",
    "INDEX": "RELATION",
    "CONSTRAINT": "CONSTRAINT",
    "FK CONSTRAINT": "CONSTRAINT",
    "CHECK CONSTRAINT": "CONSTRAINT",
    "TRIGGER": "TRIGGER",
    "POLICY": "POLICY",
    "ROW SECURITY": "ROW SECURITY",
    "RULE": "RULE",
    "MATERIALIZED VIEW DATA": "MATERIALIZED VIEW DATA",
    "TABLE ATTACH": "TABLE ATTACH",
}
# Compared by other means than the catalog (rows and hashes, large object count, sequence
# values) or settings of pg_restore's session rather than objects.
NOT_CATALOGED_KINDS = frozenset(
    {
        "SEQUENCE SET",
        "TABLE DATA",
        "BLOB",
        "BLOBS",
        "BLOB METADATA",
        "ENCODING",
        "STDSTRINGS",
        "SEARCHPATH",
        "DATABASE",
        "DATABASE PROPERTIES",
    }
)

_SETVAL = re.compile(r"setval\('((?:[^']|'')+)',\s*(-?\d+),\s*(true|false)\)")


def dump_encoding(entries: Sequence[TocEntry]) -> str | None:
    """The client encoding pg_dump wrote the data in, from the archive's ENCODING entry."""
    for entry in entries:
        if entry.desc == "ENCODING" and entry.defn:
            match = re.search(r"client_encoding\s*=\s*'([^']+)'", entry.defn)
            if match:
                return match.group(1)
    return None


def dependents(entries: Sequence[TocEntry], extensions: list[str]) -> dict[int, str]:
    """Entries that need one of `extensions` (directly or through others), with which one."""
    needs: dict[int, str] = {
        e.dump_id: e.tag for e in entries if e.desc == "EXTENSION" and e.tag in extensions
    }
    users: dict[int, list[int]] = {}
    for entry in entries:
        for dependency in entry.dependencies:
            users.setdefault(dependency, []).append(entry.dump_id)
    todo = list(needs)
    while todo:
        current = todo.pop()
        for user in users.get(current, []):
            if user not in needs:
                needs[user] = needs[current]
                todo.append(user)
    return needs


def relation_of(entry: TocEntry, by_id: dict[int, TocEntry]) -> TocEntry | None:
    """The relation an entry is or belongs to (a constraint's table); None for other kinds."""
    if entry.desc in RELATIONS:
        return entry
    if entry.desc in ATTACHED_KINDS:
        for dep in entry.dependencies:
            owner = by_id.get(dep)
            if owner is not None and owner.desc in RELATIONS:
                return owner
    return None


def sequence_set(entry: TocEntry) -> tuple[str, int, bool] | None:
    """What a SEQUENCE SET entry sets: (qualified sequence name, value, is_called); None when
    its definition is not a setval bika can read."""
    match = _SETVAL.search(entry.defn or "")
    if match is None:
        return None
    return match.group(1).replace("''", "'"), int(match.group(2)), match.group(3) == "true"
