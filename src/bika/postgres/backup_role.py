"""The SQL that makes a dedicated, read-only role for bika's backups (`bika doctor
--print-sql`): pg_read_all_data on PostgreSQL 14+, explicit grants per schema before.
"""

from __future__ import annotations

from collections.abc import Sequence

from psycopg import sql

from bika.postgres.connection import ConnInfo

DEFAULT_ROLE = "bika_backup"
PG_READ_ALL_DATA = 140000  # server_version_num where the predefined role appeared


def _ident(name: str) -> str:
    plain = name.isidentifier() and name == name.lower()
    return name if plain else '"' + name.replace('"', '""') + '"'


def backup_role_sql(
    role: str, database: str, version_num: int | None, schemas: Sequence[str] = ("public",)
) -> str:
    """A psql script (run as a superuser, or on Supabase as postgres) creating `role`: it can
    log in, read every table and sequence, and change nothing. version_num None: for 14+."""
    r, db = _ident(role), _ident(database)
    lines = [
        f"-- a read-only role for bika backups of database {database}",
        f"CREATE ROLE {r} LOGIN;",
        f"-- then give it a password in psql (never on a command line): \\password {r}",
        f"GRANT CONNECT ON DATABASE {db} TO {r};",
    ]
    if version_num is None or version_num >= PG_READ_ALL_DATA:
        lines += [
            "-- PostgreSQL 14+: every table, view and sequence, now and later",
            f"GRANT pg_read_all_data TO {r};",
        ]
    else:
        lines.append("-- before PostgreSQL 14: explicit grants, schema by schema")
        for schema in schemas:
            s = _ident(schema)
            lines += [
                f"GRANT USAGE ON SCHEMA {s} TO {r};",
                f"GRANT SELECT ON ALL TABLES IN SCHEMA {s} TO {r};",
                f"GRANT SELECT ON ALL SEQUENCES IN SCHEMA {s} TO {r};",
                f"-- run as each role that creates tables in {schema}, so new tables are covered:",
                f"ALTER DEFAULT PRIVILEGES IN SCHEMA {s} GRANT SELECT ON TABLES TO {r};",
                f"ALTER DEFAULT PRIVILEGES IN SCHEMA {s} GRANT SELECT ON SEQUENCES TO {r};",
            ]
    lines += [
        "-- only if a table uses row-level security (pg_dump reads with row_security off):",
        f"-- ALTER ROLE {r} BYPASSRLS;",
        f"ALTER ROLE {r} SET default_transaction_read_only = on;",
    ]
    return "\n".join(lines) + "\n"


def user_schemas(conn: ConnInfo) -> list[str]:
    """Schemas outside the system ones, for the grants of servers before 14."""
    query = sql.SQL(
        "SELECT nspname FROM pg_namespace WHERE nspname NOT LIKE 'pg\\_%'"
        " AND nspname <> 'information_schema' ORDER BY nspname"
    )
    with conn.connect() as db:
        return [str(row[0]) for row in db.execute(query).fetchall()]
