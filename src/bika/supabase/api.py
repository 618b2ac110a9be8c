"""The Supabase Management API as bika reads it: response shapes, and one line per failure.
Pure: operations/supabase_api.py does the HTTP."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from bika.errors import BikaError

DEFAULT_URL = "https://api.supabase.com"
TOKEN_VARIABLE = "SUPABASE_ACCESS_TOKEN"


class SupabaseApiError(BikaError):
    """The Management API refused or could not be reached."""


@dataclass(frozen=True)
class PlatformBackup:
    id: int | str
    physical: bool
    status: str
    inserted_at: datetime | None


@dataclass(frozen=True)
class PlatformBackups:
    """GET /v1/projects/{ref}/database/backups."""

    project_ref: str
    region: str
    walg_enabled: bool
    pitr_enabled: bool
    backups: tuple[PlatformBackup, ...]
    earliest_physical: datetime | None
    latest_physical: datetime | None

    def newest_completed(self) -> datetime | None:
        """The newest restorable point: the newest COMPLETED backup, or with PITR the latest
        physical backup."""
        times = [b.inserted_at for b in self.backups if b.status == "COMPLETED" and b.inserted_at]
        if self.pitr_enabled and self.latest_physical is not None:
            times.append(self.latest_physical)
        return max(times) if times else None


def _time(value: Any) -> datetime | None:
    if value in (None, "", 0):
        return None
    if isinstance(value, int | float):
        return datetime.fromtimestamp(value, UTC)
    text = str(value).replace("Z", "+00:00")
    moment = datetime.fromisoformat(text)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def parse_backups(project_ref: str, body: Any) -> PlatformBackups:
    """The list response; a SupabaseApiError when it does not have the documented shape."""
    try:
        physical = body.get("physical_backup_data") or {}
        return PlatformBackups(
            project_ref=project_ref,
            region=str(body.get("region") or ""),
            walg_enabled=bool(body.get("walg_enabled")),
            pitr_enabled=bool(body.get("pitr_enabled")),
            backups=tuple(
                PlatformBackup(
                    id=item["id"],
                    physical=bool(item.get("is_physical_backup")),
                    status=str(item.get("status") or ""),
                    inserted_at=_time(item.get("inserted_at")),
                )
                for item in body.get("backups") or []
            ),
            earliest_physical=_time(physical.get("earliest_physical_backup_date_unix")),
            latest_physical=_time(physical.get("latest_physical_backup_date_unix")),
        )
    except (AttributeError, KeyError, TypeError, ValueError) as exc:
        raise SupabaseApiError(
            f"the Supabase API's list of backups of {project_ref} has an unexpected shape"
            f" ({type(exc).__name__}: {exc}); is api_url the Management API?"
        ) from None


def pooler_address(project_ref: str, body: Any) -> tuple[str, int, str]:
    """(host, port, user) of the session pooler from GET …/config/database/pooler (a list of
    pooler configs, or one); the PRIMARY database's entry is preferred."""
    entries = body if isinstance(body, list) else [body]
    entries = [e for e in entries if isinstance(e, dict)]
    entries.sort(key=lambda e: e.get("database_type") != "PRIMARY")
    for entry in entries:
        host = entry.get("db_host")
        if host:
            user = str(entry.get("db_user") or f"postgres.{project_ref}")
            return str(host), 5432, user
    raise SupabaseApiError(
        f"the Supabase API gave no pooler address for {project_ref}; copy the session pooler"
        " URL from the dashboard (Connect → Session pooler) into database_url"
    )


def http_failure(status: int, path: str, project_ref: str, retry_after: str | None) -> str:
    """The one line for an HTTP error of the Management API."""
    if status == 401:
        return (
            f"the Supabase API refused the access token (401) on {path}; set {TOKEN_VARIABLE}"
            " to a valid personal access token (dashboard → Account → Access Tokens)"
        )
    if status == 403:
        return (
            f"the access token may not read project {project_ref} (403) on {path}; use a token"
            " with access to this project (scope database:read / backups_read)"
        )
    if status == 404:
        return (
            f"the Supabase API knows no project {project_ref!r} (404) on {path}; check"
            " [supabase] project_ref (Project Settings → General → Reference ID)"
        )
    if status == 429:
        wait = f"in {retry_after} s" if retry_after else "in a minute"
        return (
            f"the Supabase API is rate limiting this token (429, about 120 requests a minute);"
            f" try again {wait}"
        )
    return f"the Supabase API answered HTTP {status} on {path}; try again later"
