"""The supabase profile's part of a backup: which profile a database has, the scope that leaves
the platform's own objects out, the custom roles alone, and the catalog facts a restore is
later compared on (owners, privileges, triggers, policies, functions, event triggers).
"""

from __future__ import annotations

import io
import json

from bika.errors import BikaError
from bika.postgres import supabase as pg_supabase
from bika.postgres.connection import ConnInfo
from bika.postgres.dump import DumpScope
from bika.supabase import profile, roles

CATALOG_ARTIFACT = "catalog.json.zst.age"
CATALOG_CONTENT = "supabase-catalog-json"


def resolve_profile(setting: str, conn: ConnInfo) -> str:
    """`postgres` or `supabase`: the setting when it says, else what the database looks like."""
    if setting in profile.PROFILES:
        return setting
    if profile.is_supabase_host(str(conn.params.get("host") or "")):
        return profile.PROFILE
    try:
        return profile.PROFILE if pg_supabase.looks_like_supabase(conn) else "postgres"
    except BikaError:
        return "postgres"  # the backup itself will say why it cannot connect


def scope(user: DumpScope) -> DumpScope:
    """The user's scope, with the platform's schemas and bookkeeping rows left out."""
    return DumpScope(
        schemas=user.schemas,
        exclude_schemas=(*user.exclude_schemas, *profile.excluded_schemas_for_dump()),
        tables=user.tables,
        exclude_tables=user.exclude_tables,
        exclude_table_data=(*user.exclude_table_data, *profile.bookkeeping_patterns()),
    )


def custom_roles(dump: bytes) -> io.BytesIO:
    """pg_dumpall's roles script reduced to the project's custom roles."""
    text = roles.custom_roles_sql(dump.decode("utf-8", "replace"))
    return io.BytesIO(text.encode())


def catalog_json(conn: ConnInfo) -> io.BytesIO:
    snapshot = pg_supabase.catalog_snapshot(conn)
    return io.BytesIO(json.dumps(snapshot, sort_keys=True).encode())
