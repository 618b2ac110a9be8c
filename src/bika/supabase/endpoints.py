"""A Supabase project's database addresses, as the Supabase CLI handles them: which hosts are
Supabase's, the project ref in them, TLS by default, the session pooler as the fallback of the
IPv6-only direct host, and never the transaction pooler. Pure: no socket is opened here."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from bika.errors import ConfigError

DIRECT_PORT = 5432
TRANSACTION_PORT = 6543
_DIRECT = re.compile(r"db\.([a-z0-9]+)\.supabase\.co")
_POOLER = re.compile(r"[a-z0-9-]+\.pooler\.supabase\.com")
_POOLER_USER = re.compile(r"[^.]+\.([a-z0-9]+)")


@dataclass(frozen=True)
class Endpoint:
    kind: str
    """`direct` (db.<ref>.supabase.co) or `pooler` (Supavisor)."""
    project_ref: str | None


def endpoint(params: Mapping[str, Any]) -> Endpoint | None:
    """What kind of Supabase address a connection's parameters name; None for other hosts."""
    host = str(params.get("host") or "").lower().rstrip(".")
    if match := _DIRECT.fullmatch(host):
        return Endpoint("direct", match.group(1))
    if _POOLER.fullmatch(host):
        user = _POOLER_USER.fullmatch(str(params.get("user") or ""))
        return Endpoint("pooler", user.group(1) if user else None)
    return None


def with_supabase_defaults(url: str) -> str:
    """The URL as bika uses it: for a Supabase host `sslmode=require` unless one is given;
    the transaction pooler (port 6543) refused. Other hosts' URLs come back unchanged."""
    from psycopg.conninfo import conninfo_to_dict, make_conninfo  # slow to import: here

    params = conninfo_to_dict(url)
    where = endpoint(params)
    if where is None:
        return url
    port = str(params.get("port") or DIRECT_PORT)
    if port == str(TRANSACTION_PORT):
        what = "Supavisor's" if where.kind == "pooler" else "the dedicated PgBouncer's"
        raise ConfigError(
            f"port {TRANSACTION_PORT} is {what} transaction mode, which hands each statement to"
            " any server connection: pg_dump and a restore need one session throughout (SET,"
            f" snapshots, COPY); use port {DIRECT_PORT} (the session pooler, or the direct host)"
        )
    if "sslmode" in params:
        return url
    return make_conninfo(url, sslmode="require") if "://" not in url else _add_query(url)


def _add_query(url: str) -> str:
    """sslmode=require added to a postgresql:// URL, keeping it a URL (so messages show it as
    the user wrote it)."""
    base, hash_sign, fragment = url.partition("#")
    joiner = "&" if "?" in base else "?"
    return f"{base}{joiner}sslmode=require{hash_sign}{fragment}"


def session_pooler(url: str, host: str, project_ref: str, user: str | None = None) -> str:
    """The URL moved from the direct host to the session pooler: its host, port 5432 and the
    user `postgres.<ref>` (the pooler tells projects apart by the user name)."""
    from psycopg.conninfo import conninfo_to_dict, make_conninfo  # slow to import: here

    params = conninfo_to_dict(url)
    name = user or f"{params.get('user') or 'postgres'}.{project_ref}"
    return make_conninfo(url, host=host, port=str(DIRECT_PORT), user=name)


def gssapi_hint(message: str) -> str:
    """What to add to a connection error that is a GSSAPI negotiation failure (older libpq
    with Kerberos credentials against the pooler), else ""."""
    if "gssapi" in message.lower() or "gssencmode" in message.lower():
        return "; add gssencmode=disable to the database URL"
    return ""
