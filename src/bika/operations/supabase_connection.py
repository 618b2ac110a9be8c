"""Reaching a Supabase project's database as the Supabase CLI does: the direct host
db.<ref>.supabase.co is IPv6-only without the IPv4 add-on, so it is tried briefly, then the
Supavisor session pooler (its address from the Management API) is used instead."""

from __future__ import annotations

import socket
from collections.abc import Callable
from typing import Any

from bika.errors import PostgresError
from bika.operations.supabase_api import ManagementApi
from bika.postgres.connection import ConnInfo
from bika.supabase.endpoints import DIRECT_PORT, endpoint, session_pooler

PROBE_SECONDS = 5.0


def tcp_reachable(host: str, port: int, timeout: float = PROBE_SECONDS) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def reachable(
    conn: ConnInfo,
    api: ManagementApi | None,
    *,
    probe: Callable[[str, int], bool] = tcp_reachable,
    say: Callable[[str], None] = lambda _: None,
) -> ConnInfo:
    """conn itself unless it names a direct Supabase host this machine cannot reach; then the
    project's session pooler, found through the API (or a message saying how to give it)."""
    params = conn.params
    where = endpoint(params)
    if where is None or where.kind != "direct" or where.project_ref is None:
        return conn
    host = str(params["host"])
    port = int(str(params.get("port") or DIRECT_PORT))
    if probe(host, port):
        return conn
    ref = where.project_ref
    if api is None:
        raise PostgresError(
            f"cannot reach {host}:{port} (IPv6 only, unless the project has the IPv4 add-on);"
            " set SUPABASE_ACCESS_TOKEN so bika finds the session pooler, or use the session"
            f" pooler URL from the dashboard (Connect → Session pooler: port 5432, user"
            f" postgres.{ref})"
        )
    pooler_host, _, user = api.session_pooler(ref)
    say(f"{host} is not reachable from here; using the session pooler {pooler_host}:5432")
    return ConnInfo(session_pooler(conn.url, pooler_host, ref, _pooler_user(params, user, ref)))


def _pooler_user(params: dict[str, Any], api_user: str, ref: str) -> str:
    """The pooler's user for the URL's user: `<user>.<ref>` (the API's `postgres.<ref>` names
    only the postgres role)."""
    user = str(params.get("user") or "postgres")
    return api_user if user == "postgres" else f"{user}.{ref}"
