"""The SQL of the supabase profile: is this a Supabase database, what may the restoring role do
in a project, the catalog facts a restore is compared on, and the statements that put a
project's custom roles and the user's privileges back.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg import sql

from bika.errors import PostgresError
from bika.postgres.connection import ConnInfo
from bika.supabase import profile

Table = tuple[str, str]

# schemas no catalog fact is taken from
_SKIPPED = r"^(pg_.*|information_schema)$"


def looks_like_supabase(conn: ConnInfo) -> bool:
    """The platform's auth and storage schemas and its roles are all there."""
    with conn.connect() as db:
        row = db.execute(
            "SELECT (SELECT count(*) FROM pg_namespace WHERE nspname = ANY(%s)),"
            " (SELECT count(*) FROM pg_roles WHERE rolname = ANY(%s))",
            (list(profile.SIGNATURE_SCHEMAS), list(profile.SIGNATURE_ROLES)),
        ).fetchone()
    assert row is not None
    return int(row[0]) == len(profile.SIGNATURE_SCHEMAS) and int(row[1]) == len(
        profile.SIGNATURE_ROLES
    )


@dataclass(frozen=True)
class ProjectFacts:
    """What a restore into a project needs to know about it before it starts."""

    user: str
    server_version_num: int
    schemas: frozenset[str]
    relations: dict[Table, str]  # relkind
    triggers: frozenset[tuple[str, str, str]]  # schema, table, trigger
    policies: frozenset[tuple[str, str, str]]  # schema, table, policy
    may_trigger: frozenset[Table]  # TRIGGER privilege
    may_alter: frozenset[Table]  # owner or member of the owner (policies need it)
    may_insert: frozenset[Table]
    may_delete: frozenset[Table]
    may_set_sequence: frozenset[Table]
    foreign_keys: tuple[tuple[Table, Table], ...]  # (referencing, referenced)
    replica_allowed: bool
    extensions: frozenset[str]
    roles: frozenset[str] = field(default_factory=frozenset)


_RELATIONS = """
SELECT n.nspname, c.relname, c.relkind::text,
       has_table_privilege(c.oid, 'TRIGGER'),
       pg_has_role(c.relowner, 'USAGE'),
       c.relkind <> 'S' AND has_table_privilege(c.oid, 'INSERT'),
       c.relkind <> 'S' AND has_table_privilege(c.oid, 'DELETE'),
       c.relkind = 'S' AND has_sequence_privilege(c.oid, 'UPDATE')
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f', 'S') AND n.nspname !~ %s
"""

_TRIGGERS = """
SELECT n.nspname, c.relname, t.tgname FROM pg_trigger t
JOIN pg_class c ON c.oid = t.tgrelid JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE NOT t.tgisinternal
"""

_POLICIES = "SELECT schemaname, tablename, policyname FROM pg_policies"

_FOREIGN_KEYS = """
SELECT cn.nspname, c.relname, rn.nspname, r.relname FROM pg_constraint k
JOIN pg_class c ON c.oid = k.conrelid JOIN pg_namespace cn ON cn.oid = c.relnamespace
JOIN pg_class r ON r.oid = k.confrelid JOIN pg_namespace rn ON rn.oid = r.relnamespace
WHERE k.contype = 'f'
"""


def project_facts(conn: ConnInfo) -> ProjectFacts:
    with conn.connect() as db:
        user = str(_one(db, "SELECT current_user"))
        version = int(_one(db, "SELECT current_setting('server_version_num')"))
        schemas = frozenset(
            str(r[0]) for r in db.execute("SELECT nspname FROM pg_namespace").fetchall()
        )
        rows = db.execute(_RELATIONS, (_SKIPPED,)).fetchall()
        triggers = frozenset((str(a), str(b), str(c)) for a, b, c in db.execute(_TRIGGERS))
        policies = frozenset((str(a), str(b), str(c)) for a, b, c in db.execute(_POLICIES))
        fks = tuple(
            ((str(a), str(b)), (str(c), str(d))) for a, b, c, d in db.execute(_FOREIGN_KEYS)
        )
        extensions = frozenset(str(r[0]) for r in db.execute("SELECT extname FROM pg_extension"))
        roles = frozenset(str(r[0]) for r in db.execute("SELECT rolname FROM pg_roles"))
        replica = _may_set_replica(db)

    def having(column: int) -> frozenset[Table]:
        return frozenset((str(r[0]), str(r[1])) for r in rows if r[column])

    return ProjectFacts(
        user=user,
        server_version_num=version,
        schemas=schemas,
        relations={(str(r[0]), str(r[1])): str(r[2]) for r in rows},
        triggers=triggers,
        policies=policies,
        may_trigger=having(3),
        may_alter=having(4),
        may_insert=having(5),
        may_delete=having(6),
        may_set_sequence=having(7),
        foreign_keys=fks,
        replica_allowed=replica,
        extensions=extensions,
        roles=roles,
    )


def _one(db: psycopg.Connection[Any], statement: str) -> Any:
    row = db.execute(statement).fetchone()
    assert row is not None
    return row[0]


def _may_set_replica(db: psycopg.Connection[Any]) -> bool:
    """Whether this role may SET session_replication_role (a superuser, supautils on the
    platform, or GRANT SET ON PARAMETER): tried in a transaction that is rolled back."""
    try:
        with db.transaction(force_rollback=True):
            db.execute("SET LOCAL session_replication_role = replica")
    except psycopg.errors.InsufficientPrivilege:
        return False
    return True


REPLICA = "SET session_replication_role = replica;\n"


def platform_roles_sql() -> str:
    """Create the platform's roles that do not exist yet (NOLOGIN): for a throwaway server
    that restores a project's backup, whose objects they own or are granted to."""
    names = ", ".join(sql_literal(r) for r in profile.PLATFORM_ROLES)
    return (
        "DO $bika_roles$ DECLARE r text; BEGIN\n"
        f"  FOREACH r IN ARRAY ARRAY[{names}] LOOP\n"
        "    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = r) THEN\n"
        "      EXECUTE format('CREATE ROLE %I NOLOGIN', r);\n"
        "    END IF;\n"
        "  END LOOP;\n"
        "END $bika_roles$;\n"
    )


def acl_reset_sql(schemas: Iterable[str]) -> str:
    """Give every table, sequence, routine and type in `schemas`, and each schema, its
    built-in default privileges (acldefault), dropping what the project's default privileges
    granted on creation. pg_dump's ACL entries are written against those built-in defaults, so
    run after this they make each object's privileges the source's (a REVOKE in the source
    stays revoked)."""
    names = sorted(set(schemas))
    if not names:
        return ""
    array = "ARRAY[" + ", ".join(sql_literal(s) for s in names) + "]::text[]"
    return f"""DO $bika_acl$
DECLARE obj record; grantee oid;
BEGIN
  FOR obj IN
    SELECT CASE WHEN c.relkind = 'S' THEN 'SEQUENCE' ELSE 'TABLE' END AS kw,
           format('%I.%I', n.nspname, c.relname) AS name, c.relacl AS acl, c.relowner AS owner,
           '' AS public_privilege
      FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
     WHERE n.nspname = ANY({array}) AND c.relkind IN ('r', 'p', 'v', 'm', 'f', 'S')
       AND c.relacl IS NOT NULL
    UNION ALL
    SELECT 'ROUTINE', p.oid::regprocedure::text, p.proacl, p.proowner, 'EXECUTE'
      FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
     WHERE n.nspname = ANY({array}) AND p.proacl IS NOT NULL
    UNION ALL
    SELECT 'TYPE', t.oid::regtype::text, t.typacl, t.typowner, 'USAGE'
      FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
     WHERE n.nspname = ANY({array}) AND t.typacl IS NOT NULL AND t.typtype IN ('e', 'd', 'r')
    UNION ALL
    SELECT 'SCHEMA', quote_ident(n.nspname), n.nspacl, n.nspowner, ''
      FROM pg_namespace n
     WHERE n.nspname = ANY({array}) AND n.nspname <> 'public' AND n.nspacl IS NOT NULL
  LOOP
    FOR grantee IN SELECT DISTINCT e.grantee FROM aclexplode(obj.acl) e
                    WHERE e.grantee <> obj.owner LOOP
      EXECUTE format('REVOKE ALL ON %s %s FROM %s', obj.kw, obj.name,
                     CASE WHEN grantee = 0 THEN 'PUBLIC'
                          ELSE quote_ident(grantee::regrole::text) END);
    END LOOP;
    IF obj.public_privilege <> '' THEN
      EXECUTE format('GRANT %s ON %s %s TO PUBLIC', obj.public_privilege, obj.kw, obj.name);
    END IF;
  END LOOP;
END $bika_acl$;
"""


def sql_literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


@dataclass(frozen=True)
class StatementResult:
    statement: str
    error: str | None


def run_statements(conn: ConnInfo, statements: Iterable[str]) -> list[StatementResult]:
    """Run each statement on its own (autocommit); one that fails is reported, not fatal."""
    results: list[StatementResult] = []
    with conn.connect(autocommit=True) as db:
        for statement in statements:
            try:
                db.execute(statement)
            except psycopg.Error as exc:
                message = str(exc).strip().splitlines()
                results.append(StatementResult(statement, message[0] if message else "failed"))
            else:
                results.append(StatementResult(statement, None))
    return results


def delete_rows_sql(tables: Iterable[Table]) -> str:
    """DELETE every row of the tables, in the order given (children before parents)."""
    return "".join(
        sql.SQL("DELETE FROM {}.{};\n").format(sql.Identifier(s), sql.Identifier(t)).as_string()
        for s, t in tables
    )


# -- the facts a restore is compared on ----------------------------------------------------

Snapshot = dict[str, list[list[str]]]
"""category → [schema, name, value] rows: what `catalog_snapshot` saw, as plain JSON."""

_SNAPSHOT_QUERIES: dict[str, str] = {
    "owner": """
        SELECT n.nspname, 'schema', pg_get_userbyid(n.nspowner) FROM pg_namespace n
         WHERE n.nspname !~ %(skip)s
        UNION ALL
        SELECT n.nspname, c.relkind::text || ' ' || c.relname, pg_get_userbyid(c.relowner)
          FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE n.nspname !~ %(skip)s AND c.relkind IN ('r', 'p', 'v', 'm', 'f', 'S')
        UNION ALL
        SELECT n.nspname, 'function ' || p.oid::regprocedure::text, pg_get_userbyid(p.proowner)
          FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
         WHERE n.nspname !~ %(skip)s
        UNION ALL
        SELECT n.nspname, 'type ' || t.typname, pg_get_userbyid(t.typowner)
          FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
         WHERE n.nspname !~ %(skip)s AND t.typtype IN ('e', 'd', 'r')""",
    "acl": """
        SELECT n.nspname, 'schema', coalesce(array_to_string(ARRAY(
                 SELECT CASE WHEN e.grantee = 0 THEN 'PUBLIC' ELSE e.grantee::regrole::text END
                        || ':' || e.privilege_type || CASE WHEN e.is_grantable THEN '*' ELSE '' END
                   FROM aclexplode(coalesce(n.nspacl, acldefault('n', n.nspowner))) e
                  ORDER BY 1), ','), '')
          FROM pg_namespace n WHERE n.nspname !~ %(skip)s
        UNION ALL
        SELECT n.nspname, c.relkind::text || ' ' || c.relname, array_to_string(ARRAY(
                 SELECT CASE WHEN e.grantee = 0 THEN 'PUBLIC' ELSE e.grantee::regrole::text END
                        || ':' || e.privilege_type || CASE WHEN e.is_grantable THEN '*' ELSE '' END
                   FROM aclexplode(coalesce(c.relacl, acldefault(
                        CASE WHEN c.relkind = 'S' THEN 's' ELSE 'r' END::"char", c.relowner))) e
                  ORDER BY 1), ',')
          FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE n.nspname !~ %(skip)s AND c.relkind IN ('r', 'p', 'v', 'm', 'f', 'S')
        UNION ALL
        SELECT n.nspname, 'function ' || p.oid::regprocedure::text, array_to_string(ARRAY(
                 SELECT CASE WHEN e.grantee = 0 THEN 'PUBLIC' ELSE e.grantee::regrole::text END
                        || ':' || e.privilege_type || CASE WHEN e.is_grantable THEN '*' ELSE '' END
                   FROM aclexplode(coalesce(p.proacl, acldefault('f', p.proowner))) e
                  ORDER BY 1), ',')
          FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
         WHERE n.nspname !~ %(skip)s""",
    "trigger": """
        SELECT n.nspname, c.relname || ' ' || t.tgname,
               pg_get_triggerdef(t.oid) || ' [' || t.tgenabled::text || ']'
          FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid
          JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE NOT t.tgisinternal AND n.nspname !~ %(skip)s""",
    "policy": """
        SELECT schemaname, tablename || ' ' || policyname,
               permissive || ' ' || cmd || ' TO ' || array_to_string(roles, ',')
               || ' USING (' || coalesce(qual, '') || ') CHECK (' || coalesce(with_check, '') || ')'
          FROM pg_policies WHERE schemaname !~ %(skip)s""",
    "row_security": """
        SELECT n.nspname, c.relname, c.relrowsecurity::text || ' ' || c.relforcerowsecurity::text
          FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE n.nspname !~ %(skip)s AND c.relkind IN ('r', 'p')""",
    "function": """
        SELECT n.nspname, p.oid::regprocedure::text,
               md5(p.prosrc) || ' definer=' || p.prosecdef::text || ' config='
               || coalesce(array_to_string(p.proconfig, ','), '')
          FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
         WHERE n.nspname !~ %(skip)s
           AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_proc'::regclass
                           AND d.objid = p.oid AND d.deptype = 'e')""",
    "event_trigger": """
        SELECT '', evtname, evtevent || ' ' || evtfoid::regproc::text || ' owner='
               || pg_get_userbyid(evtowner) || ' [' || evtenabled::text || ']'
          FROM pg_event_trigger""",
}


def catalog_snapshot(conn: ConnInfo) -> Snapshot:
    """Owners, privileges, triggers, policies, row security, functions and event triggers of
    the database (outside pg_* and information_schema), as plain JSON values."""
    snapshot: Snapshot = {}
    try:
        with conn.connect() as db:
            for category, query in _SNAPSHOT_QUERIES.items():
                rows = db.execute(query, {"skip": _SKIPPED}).fetchall()
                snapshot[category] = sorted([str(a), str(b), str(c)] for a, b, c in rows)
    except psycopg.Error as exc:
        raise PostgresError(
            f"cannot read the catalog of {conn.redacted()}: {str(exc).strip().splitlines()[0]}"
        ) from None
    return snapshot


def table_digests(conn: ConnInfo, tables: Iterable[Table]) -> dict[Table, tuple[int, str]]:
    """Each table's exact row count and an md5 of its rows in a stable order (their text
    sorted), to compare two databases' rows whatever order they were loaded in."""
    out: dict[Table, tuple[int, str]] = {}
    with conn.connect() as db:
        for schema, name in tables:
            query = sql.SQL(
                "SELECT count(*), md5(coalesce(string_agg(r, E'\\n' ORDER BY r), ''))"
                " FROM (SELECT t::text AS r FROM {}.{} t) s"
            ).format(sql.Identifier(schema), sql.Identifier(name))
            row = db.execute(query).fetchone()
            assert row is not None
            out[(schema, name)] = (int(row[0]), str(row[1]))
    return out
