"""The facts of the `supabase` profile, in one place: which schemas, roles and tables the
platform manages, and which of the managed tables hold the user's own data.

The schema lists are supabase/cli's (apps/cli-go/pkg/migration/dump.go, `InternalSchemas` for
schema dumps and the shorter `excludedSchemas` of `DumpData`); the reserved roles are its
`reservedRoles` (same file). Keep them in step with that file, not with guesses.
"""

from __future__ import annotations

import re
from fnmatch import fnmatchcase

PROFILE = "supabase"
PROFILES = ("postgres", PROFILE)

# supabase/cli apps/cli-go/pkg/migration/dump.go: InternalSchemas. The platform creates these
# itself (or extensions own them), so the schema of a backup leaves them out.
MANAGED_SCHEMAS: tuple[str, ...] = (
    "information_schema",
    "pg_*",
    # initialised by the supabase/postgres image
    "_analytics",
    "_realtime",
    "_supavisor",
    "auth",
    "etl",
    "extensions",
    "pgbouncer",
    "realtime",
    "storage",
    "supabase_functions",
    "supabase_migrations",
    # owned by extensions
    "cron",
    "dbdev",
    "graphql",
    "graphql_public",
    "net",
    "pgmq",
    "pgsodium",
    "pgsodium_masks",
    "pgtle",
    "repack",
    "tiger",
    "tiger_data",
    "timescaledb_*",
    "_timescaledb_*",
    "topology",
    "vault",
)

# Managed schemas whose tables hold the user's data (dump.go's DumpData leaves them in, "for
# migrating to new project"), plus supabase_migrations, the CLI's migration history, which
# the CLI dumps separately. vault/pgsodium are left out: their secrets are encrypted with the
# project's own root key and cannot be read in another project.
USER_DATA_SCHEMAS: tuple[str, ...] = (
    "auth",
    "storage",
    "cron",
    "net",
    "pgmq",
    "supabase_functions",
    "supabase_migrations",
)

# The platform's own bookkeeping in those schemas: a fresh project already has these rows, and
# their duplicates break a restore (dump.go DumpData's --exclude-table list).
BOOKKEEPING_TABLES: tuple[tuple[str, str], ...] = (
    ("auth", "schema_migrations"),
    ("storage", "migrations"),
    ("supabase_functions", "migrations"),
)

# Managed schemas a project does not have until the user creates them: restored whole.
USER_CREATED_SCHEMAS: tuple[str, ...] = ("supabase_migrations",)

# supabase/cli apps/cli-go/pkg/migration/dump.go: reservedRoles (regular expressions).
RESERVED_ROLES: tuple[str, ...] = (
    "anon",
    "authenticated",
    "authenticator",
    "cli_login_.*",
    "dashboard_user",
    "pgbouncer",
    "postgres",
    "service_role",
    "supabase_.*",
    "pgsodium_keyholder",
    "pgsodium_keymaker",
    "pgsodium_keyiduser",
    "pgtle_admin",
)

# The platform's roles by name (the reserved patterns above, spelled out as a project has them):
# a drill of a supabase-profile backup creates them in its throwaway server, since the backup's
# roles artifact holds only the custom ones and the objects refer to these.
PLATFORM_ROLES: tuple[str, ...] = (
    "anon",
    "authenticated",
    "service_role",
    "authenticator",
    "dashboard_user",
    "pgbouncer",
    "supabase_admin",
    "supabase_auth_admin",
    "supabase_storage_admin",
    "supabase_functions_admin",
    "supabase_realtime_admin",
    "supabase_replication_admin",
    "supabase_read_only_user",
    "pgsodium_keyholder",
    "pgsodium_keyiduser",
    "pgsodium_keymaker",
    "pgtle_admin",
)

# The role a project's user connects as; it owns the user's objects.
PROJECT_ROLE = "postgres"

# Roles whose presence (with the auth and storage schemas) says a database is a Supabase one.
SIGNATURE_ROLES: tuple[str, ...] = ("supabase_admin", "authenticator", "anon", "service_role")
SIGNATURE_SCHEMAS: tuple[str, ...] = ("auth", "storage")

_HOSTS = re.compile(r"(^|\.)(supabase\.co|supabase\.com)$", re.IGNORECASE)

# Realtime's publication is the platform's (dump.go comments it out of schema dumps).
PLATFORM_PUBLICATION_PREFIX = "supabase_realtime"


def is_managed_schema(name: str) -> bool:
    return any(fnmatchcase(name, pattern) for pattern in MANAGED_SCHEMAS)


def is_user_data_schema(name: str) -> bool:
    return name in USER_DATA_SCHEMAS


def is_bookkeeping(schema: str, table: str) -> bool:
    return (schema, table) in BOOKKEEPING_TABLES


def holds_user_data(schema: str, table: str) -> bool:
    """Whether a table's rows belong in a backup: the user's own schemas, and the managed
    tables that hold the user's data (auth users, storage metadata, …) but not bookkeeping."""
    if not is_managed_schema(schema):
        return True
    return is_user_data_schema(schema) and not is_bookkeeping(schema, table)


def is_reserved_role(name: str) -> bool:
    return any(re.fullmatch(pattern, name) for pattern in RESERVED_ROLES)


def is_platform_role(name: str | None) -> bool:
    """A reserved role other than the project's own: objects it owns are the platform's."""
    return name is not None and name != PROJECT_ROLE and is_reserved_role(name)


def is_supabase_host(host: str | None) -> bool:
    """db.<ref>.supabase.co, <region>.pooler.supabase.com and the like."""
    if not host:
        return False
    return any(_HOSTS.search(h.strip()) for h in host.split(",") if h.strip())


def excluded_schemas_for_dump() -> tuple[str, ...]:
    """pg_dump --exclude-schema patterns of a supabase-profile backup: the managed schemas
    that hold no user data. The user-data schemas stay in, definitions and all, so that a
    restore can tell the user's additions there (a trigger on auth.users, a policy on
    storage.objects) from what the platform has; only the platform's own is left out."""
    return tuple(s for s in MANAGED_SCHEMAS if s not in USER_DATA_SCHEMAS)


def bookkeeping_patterns() -> tuple[str, ...]:
    """pg_dump --exclude-table-data patterns for the platform's bookkeeping tables."""
    return tuple(f"{schema}.{table}" for schema, table in BOOKKEEPING_TABLES)
