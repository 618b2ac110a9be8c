"""Questions asked of a live database: versions, sizes, emptiness, exact row counts; and
the databases a restore or a drill creates and drops.

Used before a backup (what is being dumped) and after a restore (did the rows arrive).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from psycopg import sql

from bika.postgres.connection import ConnInfo

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


def drop_database(server: ConnInfo, name: str) -> None:
    """DROP DATABASE IF EXISTS name, disconnecting its sessions where the server can (13+)."""
    with server.connect(autocommit=True) as db:
        force = " WITH (FORCE)" if db.info.server_version >= 130000 else ""
        db.execute(sql.SQL("DROP DATABASE IF EXISTS {}" + force).format(sql.Identifier(name)))
