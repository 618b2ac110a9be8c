"""Questions asked of a live database: versions, sizes, emptiness, exact row counts, which
objects a restored catalog holds; and the databases a restore or a drill creates and drops.

Used before a backup (what is being dumped), after a restore (did the rows arrive) and by a
drill (is every object of the archive in the restored database).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg import sql

from bika.errors import BikaError
from bika.postgres.connection import ConnInfo
from bika.postgres.dump import DumpScope, name_regexes

SYSTEM_SCHEMAS = ("pg_catalog", "information_schema", "pg_toast")
# Settings that shape COPY's text and that pg_dump leaves as the session has them: a drill
# recomputes table hashes under the same values (timestamptz, bytea and money output).
OUTPUT_SETTINGS = ("TimeZone", "bytea_output", "lc_monetary")


@dataclass(frozen=True)
class ServerFacts:
    version: str
    version_num: int
    database_size: int
    estimated_rows: dict[tuple[str, str], int]
    output_settings: dict[str, str] = field(default_factory=dict)


_DATABASE_SIZE = "SELECT pg_database_size(current_database())"


def server_facts(conn: ConnInfo) -> ServerFacts:
    with conn.connect() as db:
        version = str(db.execute("SHOW server_version").fetchone()[0]).split()[0]  # type: ignore[index]
        num = int(db.execute("SHOW server_version_num").fetchone()[0])  # type: ignore[index]
        size = int(db.execute(_DATABASE_SIZE).fetchone()[0])  # type: ignore[index]
        rows = db.execute(
            "SELECT n.nspname, c.relname, c.reltuples::bigint FROM pg_class c"
            " JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE c.relkind IN ('r', 'p') AND n.nspname <> ALL(%s)",
            (list(SYSTEM_SCHEMAS),),
        ).fetchall()
        output = {
            name: str(db.execute("SELECT current_setting(%s)", (name,)).fetchone()[0])  # type: ignore[index]
            for name in OUTPUT_SETTINGS
        }
    return ServerFacts(version, num, size, {(s, t): int(r) for s, t, r in rows}, output)


def database_size(conn: ConnInfo) -> int:
    """Bytes the database takes on disk (tables, indexes, bloat): an upper bound of a dump."""
    with conn.connect() as db:
        return int(db.execute(_DATABASE_SIZE).fetchone()[0])  # type: ignore[index]


def user_relations(conn: ConnInfo) -> int:
    """How many tables, views, sequences and functions live outside the system schemas."""
    with conn.connect() as db:
        row = db.execute(
            "SELECT (SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
            "        WHERE c.relkind IN ('r','p','v','m','S','f') AND n.nspname <> ALL(%s)"
            "          AND n.nspname NOT LIKE 'pg_temp%%')"
            " + (SELECT count(*) FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace"
            "        WHERE n.nspname <> ALL(%s))",
            (list(SYSTEM_SCHEMAS), list(SYSTEM_SCHEMAS)),
        ).fetchone()
    return int(row[0]) if row else 0


def exact_rows(conn: ConnInfo, tables: list[tuple[str, str]]) -> dict[tuple[str, str], int | None]:
    """count(*) of each table; None where the table does not exist."""
    counts: dict[tuple[str, str], int | None] = {}
    with conn.connect(autocommit=True) as db:
        for schema, name in tables:
            exists = db.execute(
                "SELECT to_regclass(%s) IS NOT NULL",
                (sql.Identifier(schema, name).as_string(db),),
            ).fetchone()
            if not exists or not exists[0]:
                counts[(schema, name)] = None
                continue
            row = db.execute(
                sql.SQL("SELECT count(*) FROM ONLY {}").format(sql.Identifier(schema, name))
            ).fetchone()
            counts[(schema, name)] = int(row[0]) if row else 0
    return counts


def quote_name(schema: str, name: str) -> str:
    """A table's qualified name quoted for SQL text sent without a connection (psql)."""
    return ".".join('"' + part.replace('"', '""') + '"' for part in (schema, name))


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def tables_exist_sql(tables: list[tuple[str, str]], marker: str) -> str:
    """One statement printing a line: `marker` then whether each table exists ({t,f,…})."""
    items = ", ".join(
        f"pg_catalog.to_regclass({_literal(quote_name(s, n))}) IS NOT NULL" for s, n in tables
    )
    return f"SELECT {_literal(marker)} || ARRAY[{items}]::text;\n"


def count_rows_sql(tables: list[tuple[str, str]], marker: str) -> str:
    """One statement printing a line: `marker` then each table's count(*) ({12,0,…})."""
    items = ", ".join(f"(SELECT count(*) FROM ONLY {quote_name(s, n)})" for s, n in tables)
    return f"SELECT {_literal(marker)} || ARRAY[{items}]::bigint[]::text;\n"


def parse_array(text: str) -> list[str]:
    """The elements of a printed one-dimensional array of booleans or numbers, "{t,f}"."""
    inner = text.strip().removeprefix("{").removesuffix("}")
    return inner.split(",") if inner else []


def create_database(server: ConnInfo, name: str) -> None:
    """CREATE DATABASE name, on the server `server` connects to."""
    with server.connect(autocommit=True) as db:
        db.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))


def database_exists(server: ConnInfo, name: str) -> bool:
    with server.connect() as db:
        row = db.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
    return row is not None


def server_version(conn: ConnInfo) -> str:
    """The server's version, "18.1"."""
    with conn.connect() as db:
        return str(db.execute("SHOW server_version").fetchone()[0]).split()[0]  # type: ignore[index]


def available_extensions(conn: ConnInfo) -> set[str]:
    """The extensions the server could create (installed on its machine)."""
    with conn.connect() as db:
        rows = db.execute("SELECT name FROM pg_available_extensions").fetchall()
    return {str(r[0]) for r in rows}


def role_names(conn: ConnInfo) -> set[str]:
    with conn.connect() as db:
        return {str(r[0]) for r in db.execute("SELECT rolname FROM pg_roles").fetchall()}


def size_if_known(conn: ConnInfo) -> int | None:
    """database_size, or None when the database cannot be asked (gone, unreachable)."""
    with suppress(BikaError), conn.connect() as db:
        row = db.execute(_DATABASE_SIZE).fetchone()
        return int(row[0]) if row else None
    return None


# How each catalog kind (see bika.postgres.toc.CATALOG_KINDS) is found in a restored catalog:
# (schema, tag) pairs, with the tag built the way pg_dump builds it ("table constraint",
# "function(argument types)").
OBJECT_QUERIES: dict[str, str] = {
    "SCHEMA": "SELECT '', nspname FROM pg_namespace",
    "EXTENSION": "SELECT '', extname FROM pg_extension",
    "TYPE": "SELECT n.nspname, t.typname FROM pg_type t"
    " JOIN pg_namespace n ON n.oid = t.typnamespace",
    "FUNCTION": "SELECT n.nspname, p.proname || '(' || CASE WHEN p.prokind = 'a'"
    " AND p.pronargs = 0 THEN '*' ELSE pg_catalog.oidvectortypes(p.proargtypes) END || ')'"
    " FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace",
    "RELATION": "SELECT n.nspname, c.relname FROM pg_class c"
    " JOIN pg_namespace n ON n.oid = c.relnamespace",
    "CONSTRAINT": "SELECT n.nspname, coalesce(c.relname, t.typname) || ' ' || k.conname"
    " FROM pg_constraint k LEFT JOIN pg_class c ON c.oid = k.conrelid"
    " LEFT JOIN pg_type t ON t.oid = k.contypid"
    " JOIN pg_namespace n ON n.oid = k.connamespace",
    "TRIGGER": "SELECT n.nspname, c.relname || ' ' || g.tgname FROM pg_trigger g"
    " JOIN pg_class c ON c.oid = g.tgrelid JOIN pg_namespace n ON n.oid = c.relnamespace"
    " WHERE NOT g.tgisinternal",
    "POLICY": "SELECT n.nspname, c.relname || ' ' || p.polname FROM pg_policy p"
    " JOIN pg_class c ON c.oid = p.polrelid JOIN pg_namespace n ON n.oid = c.relnamespace",
    "ROW SECURITY": "SELECT n.nspname, c.relname FROM pg_class c"
    " JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.relrowsecurity",
    "RULE": "SELECT n.nspname, c.relname || ' ' || r.rulename FROM pg_rewrite r"
    " JOIN pg_class c ON c.oid = r.ev_class JOIN pg_namespace n ON n.oid = c.relnamespace"
    " WHERE r.rulename <> '_RETURN'",
    "MATERIALIZED VIEW DATA": "SELECT n.nspname, c.relname FROM pg_class c"
    " JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.relkind = 'm' AND c.relispopulated",
    "TABLE ATTACH": "SELECT n.nspname, c.relname FROM pg_class c"
    " JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.relispartition",
}


class CatalogSession:
    """One open session reading a (restored) database's catalog, kept across questions."""

    def __init__(self, db: psycopg.Connection[Any]) -> None:
        self._db = db

    def objects(self, kinds: Iterable[str] = OBJECT_QUERIES) -> dict[str, set[tuple[str, str]]]:
        """The (schema, tag) pairs present for each catalog kind of OBJECT_QUERIES."""
        return {
            kind: {(str(s), str(t)) for s, t in self._db.execute(OBJECT_QUERIES[kind]).fetchall()}
            for kind in kinds
        }

    def table_storage(self) -> list[tuple[str, str, int]]:
        """(schema, table, relfilenode) of every user table: new storage means a load that
        began with TRUNCATE has committed."""
        rows = self._db.execute(
            "SELECT n.nspname, c.relname, c.relfilenode FROM pg_class c"
            " JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.relkind = 'r'"
            " AND n.nspname NOT IN ('pg_catalog', 'information_schema')"
        ).fetchall()
        return [(str(s), str(n), int(f)) for s, n, f in rows]

    def sequence_state(self, qualified: str) -> tuple[int, bool] | None:
        """A sequence's (last_value, is_called); None when there is no such sequence."""
        row = self._db.execute(
            "SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid ="
            " c.relnamespace WHERE c.oid = pg_catalog.to_regclass(%s) AND c.relkind = 'S'",
            (qualified,),
        ).fetchone()
        if row is None:
            return None
        value = self._db.execute(
            sql.SQL("SELECT last_value, is_called FROM {}").format(sql.Identifier(row[0], row[1]))
        ).fetchone()
        return (int(value[0]), bool(value[1])) if value else None

    def large_objects(self) -> int:
        row = self._db.execute("SELECT count(*) FROM pg_largeobject_metadata").fetchone()
        return int(row[0]) if row else 0


@contextmanager
def catalog_session(conn: ConnInfo, *, as_dumped: bool = False) -> Iterator[CatalogSession]:
    """A CatalogSession on conn; as_dumped: names in signatures are qualified the way
    pg_dump's are (relative to an empty search_path)."""
    with conn.connect(autocommit=True) as db:
        if as_dumped:
            db.execute("SELECT pg_catalog.set_config('search_path', '', false)")
        yield CatalogSession(db)


def drop_database(server: ConnInfo, name: str) -> None:
    """DROP DATABASE IF EXISTS name, disconnecting its sessions where the server can (13+)."""
    with server.connect(autocommit=True) as db:
        force = " WITH (FORCE)" if db.info.server_version >= 130000 else ""
        db.execute(sql.SQL("DROP DATABASE IF EXISTS {}" + force).format(sql.Identifier(name)))


@dataclass(frozen=True)
class ScopedTable:
    """A table or sequence pg_dump would read for a scope, and whether this role can."""

    schema: str
    name: str
    kind: str  # pg_class.relkind: r table, p partitioned table, S sequence
    data_excluded: bool
    problem: str | None
    """Why pg_dump would fail on it with this role, or None."""

    @property
    def qualified(self) -> str:
        return f"{self.schema}.{self.name}"


@dataclass(frozen=True)
class ScopeAccess:
    """The tables a scope covers, for the role that connects."""

    role: str
    version_num: int
    tables: list[ScopedTable]

    @property
    def unreadable(self) -> list[ScopedTable]:
        return [t for t in self.tables if t.problem is not None]

    def problem(self) -> str | None:
        """One line saying which tables the role cannot dump and how to fix it, or None."""
        if not self.unreadable:
            return None
        return f"{self.describe()}; {self.fix()}"

    def describe(self) -> str:
        bad = self.unreadable
        named = ", ".join(f"{t.qualified} ({t.problem})" for t in bad[:5])
        more = f" and {len(bad) - 5} more" if len(bad) > 5 else ""
        return (
            f"role {self.role} cannot dump {len(bad)} of the {len(self.tables)} tables in scope:"
            f" {named}{more}"
        )

    def fix(self) -> str:
        role = _identifier(self.role)
        first = self.unreadable[0].qualified if self.unreadable else "TABLE"
        if self.version_num >= 140000:
            grant = f"as a superuser run GRANT pg_read_all_data TO {role}"
        else:
            grant = f"as their owner run GRANT SELECT ON {first} TO {role} (each table)"
        return f"{grant}, or leave them out with --exclude-table"


def _identifier(name: str) -> str:
    plain = name.isidentifier() and name == name.lower()
    return name if plain else '"' + name.replace('"', '""') + '"'


def scope_access(conn: ConnInfo, scope: DumpScope) -> ScopeAccess:
    """The tables and sequences a pg_dump with this scope locks and reads, selected the way
    pg_dump selects them (selectDumpableNamespace/selectDumpableTable in pg_dump.c), each with
    what keeps the connecting role from reading it: pg_dump takes an ACCESS SHARE lock on every
    table in scope (even those whose data it leaves out), which needs SELECT, and its COPY
    fails under row-level security it may not bypass."""
    with conn.connect() as db:
        role = str(db.execute("SELECT current_user").fetchone()[0])  # type: ignore[index]
        collate = sql.SQL(" COLLATE pg_catalog.default" if db.info.server_version >= 120000 else "")

        def matches(patterns: tuple[str, ...], *, tables: bool) -> sql.Composable:
            if not patterns:
                return sql.SQL("false")
            clauses = []
            for pattern in patterns:
                regexes = name_regexes(pattern, qualified=tables)
                if not tables:
                    clauses.append(sql.SQL("n.nspname ~ {}{}").format(regexes.name, collate))
                    continue
                where = (
                    sql.SQL("pg_catalog.pg_table_is_visible(c.oid)")
                    if regexes.schema is None
                    else sql.SQL("n.nspname ~ {}{}").format(regexes.schema, collate)
                )
                clauses.append(
                    sql.SQL("({} AND c.relname ~ {}{})").format(where, regexes.name, collate)
                )
            return sql.SQL("(") + sql.SQL(" OR ").join(clauses) + sql.SQL(")")

        if scope.tables:
            selected = matches(scope.tables, tables=True)
        else:
            selected = sql.SQL("({} AND NOT {})").format(
                matches(scope.schemas, tables=False) if scope.schemas else sql.SQL("true"),
                matches(scope.exclude_schemas, tables=False),
            )
        query = sql.SQL(
            "SELECT n.nspname, c.relname, c.relkind::text, {data_excluded},"
            " pg_catalog.has_schema_privilege(n.oid, 'USAGE'),"
            " CASE WHEN c.relkind = 'S'"
            "  THEN pg_catalog.has_sequence_privilege(c.oid, 'SELECT, USAGE')"
            "  ELSE pg_catalog.has_table_privilege(c.oid, 'SELECT') END,"
            " c.relrowsecurity AND NOT (r.rolsuper OR r.rolbypassrls"
            "  OR pg_catalog.pg_has_role(c.relowner, 'USAGE'))"
            " FROM pg_catalog.pg_class c"
            " JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace"
            " JOIN pg_catalog.pg_roles r ON r.rolname = current_user"
            " WHERE c.relkind IN ('r', 'p', 'S')"
            "  AND n.nspname !~ '^pg_' AND n.nspname <> 'information_schema'"
            # an extension's own tables are created by CREATE EXTENSION, not dumped
            "  AND NOT EXISTS (SELECT FROM pg_catalog.pg_depend d"
            "   WHERE d.classid = 'pg_catalog.pg_class'::regclass AND d.objid = c.oid"
            "    AND d.deptype = 'e')"
            "  AND {selected} AND NOT {excluded}"
            " ORDER BY 1, 2"
        ).format(
            data_excluded=matches(scope.exclude_table_data, tables=True),
            selected=selected,
            excluded=matches(scope.exclude_tables, tables=True),
        )
        rows = db.execute(query).fetchall()
        version = db.info.server_version
    found = []
    for schema, name, kind, data_excluded, usable, readable, row_security in rows:
        problem = None
        if not usable:
            problem = f"no USAGE on schema {schema}"
        elif not readable:
            problem = "no SELECT"
        elif row_security and not data_excluded:
            problem = "row-level security, which the role may not bypass"
        found.append(ScopedTable(str(schema), str(name), str(kind), bool(data_excluded), problem))
    return ScopeAccess(role, version, found)
