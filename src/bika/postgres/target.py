"""The restore target's facts: what a restore learns of the server and database it is about to
write into before it touches anything (versions, privileges, roles, what already exists, space).
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg

from bika.errors import PostgresError
from bika.postgres import catalog
from bika.postgres.archive import ArchiveToc
from bika.postgres.connection import ConnInfo
from bika.postgres.toc import RELATIONS

_FUNCTION = (
    "SELECT count(*) FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace"
    " WHERE n.nspname = %(ns)s"
    " AND format('%%s(%%s)', p.proname, oidvectortypes(p.proargtypes)) = %(tag)s"
)
# Where pg_dump keeps the catalog row of each kind: lets inspect_target ask whether it exists.
_LOOKUPS = {
    "SCHEMA": "SELECT count(*) FROM pg_namespace WHERE nspname = %(tag)s",
    "EXTENSION": "SELECT count(*) FROM pg_extension WHERE extname = %(tag)s",
    "TYPE": "SELECT count(*) FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace"
    " WHERE n.nspname = %(ns)s AND t.typname = %(tag)s",
    "DOMAIN": "SELECT count(*) FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace"
    " WHERE n.nspname = %(ns)s AND t.typname = %(tag)s",
    # a function's tag is its signature with format_type's names: "f(integer, text)"
    "FUNCTION": _FUNCTION,
    "PROCEDURE": _FUNCTION,
}


@dataclass
class TargetFacts:
    """The target server and database as a restore preflight sees them."""

    database: str
    database_exists: bool
    server_version: str
    server_major: int
    role: str
    superuser: bool
    create_database: bool  # rolcreatedb
    create_in_database: bool  # CREATE on the target database (to create schemas)
    user_objects: int
    present: set[int] = field(default_factory=set)  # dump ids of entries the target already has
    create_in_schema: dict[str, bool] = field(default_factory=dict)
    roles: set[str] = field(default_factory=set)  # owners of the archive that exist
    member_of: set[str] = field(default_factory=set)  # owners this role may act as
    extensions: dict[str, bool] = field(default_factory=dict)  # available → trusted
    data_directory: str | None = None
    free_bytes: int | None = None
    free_unknown: str = ""  # why free_bytes is None
    host_hash: str = ""  # as a manifest's source.host_hash: the same server has the same


def inspect_target(target: ConnInfo, toc: ArchiveToc) -> TargetFacts:
    """Ask the target (read-only) what a restore of this archive would meet there."""
    name = target.database
    try:
        db = target.connect(autocommit=True)
        exists = True
    except PostgresError as exc:
        if "does not exist" not in str(exc):
            raise
        db = target.with_database("postgres").connect(autocommit=True)
        exists = False
    with db:
        facts = _server_facts(db, name, exists)
        facts.host_hash = target.host_hash()
        owners = sorted({e.owner for e in toc.entries if e.owner})
        for role, found, member in db.execute(
            "SELECT o, r.oid IS NOT NULL, r.oid IS NOT NULL AND pg_has_role(r.oid, 'MEMBER')"
            " FROM unnest(%s::text[]) AS o LEFT JOIN pg_roles r ON r.rolname = o",
            (owners,),
        ).fetchall():
            if found:
                facts.roles.add(str(role))
            if member:
                facts.member_of.add(str(role))
        for ext, trusted in db.execute(
            "SELECT name, bool_or(trusted) FROM pg_available_extension_versions GROUP BY name"
        ).fetchall():
            facts.extensions[str(ext)] = bool(trusted)
        if exists:
            facts.user_objects = catalog.user_relations(target)
            _present(db, toc, facts)
            facts.create_in_schema = {
                str(s): bool(c)
                for s, c in db.execute(
                    "SELECT nspname, has_schema_privilege(oid, 'CREATE') FROM pg_namespace"
                ).fetchall()
            }
        else:
            # a database created by the restore starts as a copy of template1, owned by us
            facts.create_in_schema = {"public": True}
        _free_space(db, target, facts)
    return facts


def _one(db: psycopg.Connection[Any], query: str, params: Any = None) -> Any:
    row = db.execute(query, params).fetchone()
    return row[0] if row else None


def _server_facts(db: psycopg.Connection[Any], name: str, exists: bool) -> TargetFacts:
    version = str(_one(db, "SHOW server_version")).split()[0]
    number = int(_one(db, "SHOW server_version_num"))
    row = db.execute(
        "SELECT current_user, rolsuper, rolcreatedb FROM pg_roles WHERE rolname = current_user"
    ).fetchone()
    role, superuser, createdb = row if row else ("?", False, False)
    create_here = bool(_one(db, "SELECT has_database_privilege(current_database(), 'CREATE')"))
    return TargetFacts(
        database=name,
        database_exists=exists,
        server_version=version,
        server_major=number // 10000,
        role=str(role),
        superuser=bool(superuser),
        create_database=bool(createdb) or bool(superuser),
        # a database the restore creates is owned by the connecting role
        create_in_database=create_here if exists else True,
        user_objects=0,
    )


def _present(db: psycopg.Connection[Any], toc: ArchiveToc, facts: TargetFacts) -> None:
    """Mark the archive's relations, schemas, types, functions and extensions already there."""
    relations = {
        (str(s), str(n))
        for s, n in db.execute(
            "SELECT n.nspname, c.relname FROM pg_class c"
            " JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f', 'S')"
        ).fetchall()
    }
    for entry in toc.entries:
        if entry.desc in RELATIONS:
            if (entry.namespace or "", entry.tag) in relations:
                facts.present.add(entry.dump_id)
        elif entry.desc in _LOOKUPS:
            params = {"ns": entry.namespace or "", "tag": entry.tag}
            if _one(db, _LOOKUPS[entry.desc], params):
                facts.present.add(entry.dump_id)


def _is_local(target: ConnInfo) -> bool:
    hosts = str(target.params.get("host") or "").split(",")
    return all(h in ("", "localhost", "127.0.0.1", "::1") or h.startswith("/") for h in hosts)


def _free_space(db: psycopg.Connection[Any], target: ConnInfo, facts: TargetFacts) -> None:
    """Free bytes on the server's data volume, when the server runs on this machine."""
    if not _is_local(target):
        facts.free_unknown = "the server is not on this machine"
        return
    try:
        directory = str(_one(db, "SHOW data_directory"))
    except psycopg.Error:
        facts.free_unknown = (
            f"role {facts.role} may not read data_directory (needs pg_read_all_settings)"
        )
        return
    facts.data_directory = directory
    path = Path(directory)
    try:
        free = shutil.disk_usage(path).free
    except OSError as exc:
        facts.free_unknown = f"{directory} is not reachable here ({exc.strerror})"
        return
    try:
        # the same path on this machine could belong to another server (a container's volume)
        same = (path / "PG_VERSION").read_text().strip() == str(facts.server_major)
    except PermissionError:
        same = True  # a data directory is private to its server's OS user: that is expected
    except OSError:
        same = False
    if not same:
        facts.free_unknown = f"{directory} on this machine is not the target's data directory"
        return
    facts.free_bytes = free


def disk_free(path: Path) -> int | None:
    """Free bytes on the volume holding path (or its nearest existing parent)."""
    for folder in (path, *path.parents):
        if folder.exists():
            try:
                return shutil.disk_usage(folder).free
            except OSError:
                return None
    return None


def writable_folder(path: Path) -> bool:
    return path.is_dir() and os.access(path, os.W_OK | os.X_OK)
