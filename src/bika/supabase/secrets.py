"""Environment secrets: reading and writing .env text, the keyed inventory a manifest keeps
instead of values, comparing two inventories, and the procedure's template. Pure."""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from bika.errors import ConfigError

HASH_HEX = 16
"""64 bits of HMAC-SHA256: enough to tell a changed value, too short to be worth more."""
KEY_ID_HEX = 8

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]*")


@dataclass(frozen=True)
class Secret:
    name: str
    value: str
    source: str
    """`env` (the process environment) or the env file it came from."""


def parse_env(text: str, source: str) -> list[Secret]:
    """The assignments of a .env file: `NAME=value`, `export NAME=value`, `#` comments,
    values in '…' (as written) or "…" (with \\n, \\t, \\", \\\\ escapes, may span lines)."""
    secrets: list[Secret] = []
    # only \n ends a line (and a CRLF's \r goes): splitlines() would also split on \x0b, \x1c…
    lines = [line.removesuffix("\r") for line in text.split("\n")]
    i = 0
    while i < len(lines):
        number = i + 1
        line = lines[i].strip()
        i += 1
        if not line or line.startswith("#"):
            continue
        if line.startswith("export "):
            line = line[len("export ") :].lstrip()
        name, sep, rest = line.partition("=")
        name = name.strip()
        if not sep or not _NAME.fullmatch(name):
            raise ConfigError(f"{source} line {number}: not NAME=value; fix the line")
        rest = rest.strip()
        if rest[:1] in ("'", '"'):
            quote = rest[0]
            body = rest[1:]
            while not _closed(body, quote):
                if i >= len(lines):
                    raise ConfigError(f"{source} line {number}: {quote} is never closed")
                body += "\n" + lines[i]
                i += 1
            end = _closing(body, quote)
            raw = body[:end]
            value = _unescape(raw) if quote == '"' else raw
        else:
            value = re.split(r"\s+#", rest, maxsplit=1)[0].rstrip()
        secrets.append(Secret(name, value, source))
    return secrets


def _closing(body: str, quote: str) -> int:
    escaped = False
    for index, char in enumerate(body):
        if quote == '"' and char == "\\" and not escaped:
            escaped = True
            continue
        if char == quote and not escaped:
            return index
        escaped = False
    return -1


def _closed(body: str, quote: str) -> bool:
    return _closing(body, quote) >= 0


_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", '"': '"', "\\": "\\", "$": "$"}


def _unescape(raw: str) -> str:
    return re.sub(r"\\(.)", lambda m: _ESCAPES.get(m.group(1), "\\" + m.group(1)), raw)


def render_env(secrets: Sequence[Secret]) -> str:
    """Secrets as a .env file parse_env reads back unchanged, grouped by where they came from."""
    out: list[str] = []
    source = None
    for secret in secrets:
        if secret.source != source:
            source = secret.source
            out.append(f"# from {'the environment' if source == 'env' else source}")
        out.append(f"{secret.name}={_quoted(secret.value)}")
    return "\n".join(out) + "\n" if out else ""


def _quoted(value: str) -> str:
    if value and re.fullmatch(r"[A-Za-z0-9_./:@+=,%-]+", value):
        return value
    escaped = (
        value.replace("\\", "\\\\")
        .replace('"', '\\"')
        .replace("\n", "\\n")
        .replace("\r", "\\r")
        .replace("\t", "\\t")
        .replace("$", "\\$")
    )
    return f'"{escaped}"'


def key_id(key: bytes) -> str:
    """Names the inventory key without revealing it: monitoring compares hashes only when two
    backups' inventories were made with the same key."""
    return hashlib.sha256(b"bika inventory key id\0" + key).hexdigest()[:KEY_ID_HEX]


def value_hash(key: bytes, name: str, value: str) -> str:
    """HMAC-SHA256 over name and value with the host's inventory key (never stored in the
    repository, so a reader of manifests cannot try guesses), cut to HASH_HEX hex digits."""
    message = name.encode() + b"\0" + value.encode()
    return hmac.new(key, message, hashlib.sha256).hexdigest()[:HASH_HEX]


@dataclass(frozen=True)
class Change:
    kind: str
    """`changed`, `missing` (in an earlier backup, not in this one), `unset` (configured but
    not set when this backup ran) or `added`."""
    name: str


def compare(
    before: Iterable[tuple[str, str]],
    after: Iterable[tuple[str, str]],
    unset: Iterable[str] = (),
) -> list[Change]:
    """What changed between two inventories of (name, hash) made with the same key."""
    old = dict(before)
    new = dict(after)
    changes = [Change("unset", name) for name in sorted(set(unset))]
    for name in sorted(old.keys() | new.keys()):
        if name not in new:
            if name not in set(unset):
                changes.append(Change("missing", name))
        elif name not in old:
            changes.append(Change("added", name))
        elif old[name] != new[name]:
            changes.append(Change("changed", name))
    return changes


TEMPLATE_SECTIONS: tuple[tuple[str, tuple[tuple[str, str], ...]], ...] = (
    (
        "Supabase",
        (
            ("Project URL", "SUPABASE_URL"),
            ("Database Password", "SUPABASE_DB_PASSWORD"),
            ("Anon Key", "SUPABASE_ANON_KEY"),
            ("Service Role Key", "SUPABASE_SERVICE_ROLE_KEY"),
            ("JWT Secret", "SUPABASE_JWT_SECRET"),
        ),
    ),
    (
        "Cloudflare",
        (("Account ID", "CLOUDFLARE_ACCOUNT_ID"), ("API Token", "CLOUDFLARE_API_TOKEN")),
    ),
    (
        "External Services",
        (
            ("Sentry DSN", "SENTRY_DSN"),
            ("Redis URL", "REDIS_URL"),
            ("SMS Gateway", "SMS_GATEWAY_API_KEY"),
        ),
    ),
)


def template(date: str, saved: Sequence[str] = ()) -> str:
    """The procedure's "Environment Variables Backup" page, each item saying whether bika
    keeps it (a name in `saved`, from the latest backup's inventory or [secrets]) or where to
    keep it; names bika keeps that the page does not list come in a last section."""
    kept = set(saved)
    out = ["# Environment Variables Backup", f"Date: {date}", ""]
    listed: set[str] = set()
    for title, items in TEMPLATE_SECTIONS:
        out.append(f"## {title}")
        for label, name in items:
            listed.add(name)
            where = "in bika's env artifact" if name in kept else "[stored in password manager]"
            out.append(f"- {label} ({name}): {where}")
        out.append("")
    others = sorted(kept - listed)
    if others:
        out.append("## Other variables bika keeps")
        out += [f"- {name}: in bika's env artifact" for name in others]
        out.append("")
    out.append("Restore: bika restore ID --artifact env --to-file .env.restored")
    return "\n".join(out) + "\n"
