"""The Supabase Management API over HTTPS (urllib): the platform's own backups and the
session pooler's address. Each failure is one SupabaseApiError line (bika.supabase.api)."""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from typing import Any

import bika
from bika.errors import ConfigError
from bika.supabase.api import (
    DEFAULT_URL,
    TOKEN_VARIABLE,
    PlatformBackups,
    SupabaseApiError,
    http_failure,
    parse_backups,
    pooler_address,
)

TIMEOUT = 15.0


@dataclass(frozen=True)
class ManagementApi:
    token: str
    base_url: str = DEFAULT_URL
    timeout: float = TIMEOUT

    def fetch(
        self, path: str, project_ref: str, accept: str = "application/json"
    ) -> tuple[bytes, str]:
        """The body and Content-Type of GET path."""
        url = self.base_url.rstrip("/") + path
        request = urllib.request.Request(
            url,
            headers={
                "Authorization": f"Bearer {self.token}",
                "Accept": accept,
                "User-Agent": f"bika/{bika.__version__}",
            },
        )
        host = urllib.parse.urlsplit(url).netloc
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                return response.read(), str(response.headers.get("Content-Type") or "")
        except urllib.error.HTTPError as exc:
            retry = exc.headers.get("Retry-After") or exc.headers.get("X-RateLimit-Reset")
            raise SupabaseApiError(http_failure(exc.code, path, project_ref, retry)) from None
        except (TimeoutError, urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", None) or exc
            raise SupabaseApiError(
                f"cannot reach the Supabase API at {host}: {reason}; check the network (or"
                " [supabase] api_url)"
            ) from None

    def get(self, path: str, project_ref: str) -> Any:
        body, _ = self.fetch(path, project_ref)
        try:
            return json.loads(body)
        except ValueError:
            host = urllib.parse.urlsplit(self.base_url).netloc
            raise SupabaseApiError(
                f"the Supabase API at {host} answered {path} with something that is not JSON"
            ) from None

    def backups(self, project_ref: str) -> PlatformBackups:
        path = f"/v1/projects/{urllib.parse.quote(project_ref)}/database/backups"
        return parse_backups(project_ref, self.get(path, project_ref))

    def session_pooler(self, project_ref: str) -> tuple[str, int, str]:
        path = f"/v1/projects/{urllib.parse.quote(project_ref)}/config/database/pooler"
        return pooler_address(project_ref, self.get(path, project_ref))


def api_for(token: str | None, base_url: str) -> ManagementApi:
    if not token:
        raise ConfigError(
            f"the Supabase Management API needs a token; set {TOKEN_VARIABLE} (dashboard →"
            " Account → Access Tokens)"
        )
    return ManagementApi(token, base_url)


def project_ref_of(given: str | None) -> str:
    if not given:
        raise ConfigError(
            "no Supabase project given; pass --project-ref REF or set project_ref in the"
            " [supabase] table of bika.toml"
        )
    return given
