"""A project's custom roles out of `pg_dumpall --roles-only --no-role-passwords`: the platform's
reserved roles left out, and what a project's `postgres` may not set stripped (as supabase/cli's
dump_role.sh does), so the script runs as `postgres` in another project and any psql reads it.
"""

from __future__ import annotations

import re

from bika.supabase import profile

_CREATE_OR_ALTER = re.compile(r'^(?:CREATE|ALTER) ROLE "?((?:[^"]|"")+?)"?(?:;| )')
_GRANT = re.compile(r'^GRANT (.+?) TO "?((?:[^"]|"")+?)"?(?: WITH .*?)?(?: GRANTED BY .*)?;$')
_GRANTED_BY = re.compile(r" GRANTED BY (?:\"(?:[^\"]|\"\")+\"|\S+?)(?=;|$| )")
# attributes only a superuser may give or take (dump_role.sh strips the first two)
_SUPERUSER_ONLY = re.compile(r" (?:NOSUPERUSER|NOREPLICATION|NOBYPASSRLS)\b")
# pg_dump 17.6+/16.10/15.14 guard lines: older psql stops at them (CVE-2025-8714)
_RESTRICT = re.compile(r"^\\(?:un)?restrict\b")


def _names(text: str) -> list[str]:
    return [part.strip().strip('"').replace('""', '"') for part in text.split(",")]


def custom_roles_sql(dump: str) -> str:
    """The statements of the dump that concern the user's own roles, one per line."""
    kept: list[str] = []
    for raw in dump.splitlines():
        line = raw.rstrip()
        if not line or line.startswith("--") or _RESTRICT.match(line):
            continue
        if line.startswith("SET ") or line == "RESET ALL;":
            continue
        role = _CREATE_OR_ALTER.match(line)
        if role:
            if profile.is_reserved_role(role.group(1).replace('""', '"')):
                continue
            kept.append(_SUPERUSER_ONLY.sub("", line))
            continue
        grant = _GRANT.match(line)
        if grant:
            granted = _names(grant.group(1))
            member = grant.group(2).replace('""', '"')
            if profile.is_reserved_role(member) or any(
                profile.is_reserved_role(g) for g in granted
            ):
                continue
            kept.append(_GRANTED_BY.sub("", line))
            continue
    return "".join(line + "\n" for line in kept)


def statements(script: str) -> list[str]:
    return [line for line in script.splitlines() if line.strip()]
