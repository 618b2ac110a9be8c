"""A Supabase project's configuration as the Management API gives it: which parts a backup's
`project` artifact holds, the snapshot document, the deployed functions' files, and what
changed between two snapshots, said by name (never by value). Pure."""

from __future__ import annotations

import base64
import email.parser
import email.policy
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

SNAPSHOT_FORMAT = "bika-supabase-project"
SNAPSHOT_VERSION = 1

PARTS = (
    "config/auth",
    "api-keys",
    "network-restrictions",
    "ssl-enforcement",
    "storage/buckets",
    "config/storage",
    "postgrest",
)
"""GET /v1/projects/{ref}/<part>; the functions list and bodies and the secrets' names are
read apart."""


def function_files(body: bytes, content_type: str) -> dict[str, dict[str, str]]:
    """The files of GET …/functions/{slug}/body answered as multipart/form-data: each part's
    file name (else its field name) → {"text": …} or {"base64": …}."""
    if "multipart/" not in content_type.lower():
        return {"(bundle)": {"base64": base64.b64encode(body).decode()}}
    head = f"Content-Type: {content_type}\r\nMIME-Version: 1.0\r\n\r\n".encode()
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(head + body)
    files: dict[str, dict[str, str]] = {}
    for part in message.iter_parts():
        name = part.get_filename() or part.get_param("name", header="content-disposition")
        data = part.get_payload(decode=True)
        if not isinstance(data, bytes):
            continue
        key = str(name or f"part-{len(files)}")
        try:
            files[key] = {"text": data.decode("utf-8")}
        except UnicodeDecodeError:
            files[key] = {"base64": base64.b64encode(data).decode()}
    return files


def secret_names(listed: Any) -> list[str]:
    """GET …/secrets gives [{name, value (a digest), updated_at}]: only the names are kept."""
    if not isinstance(listed, list):
        return []
    return sorted(str(item["name"]) for item in listed if isinstance(item, dict) and "name" in item)


def snapshot(
    project_ref: str,
    taken_at: str,
    parts: Mapping[str, Any],
    functions: list[dict[str, Any]],
    secrets: list[str],
    errors: Mapping[str, str],
) -> dict[str, Any]:
    return {
        "format": SNAPSHOT_FORMAT,
        "version": SNAPSHOT_VERSION,
        "project_ref": project_ref,
        "taken_at": taken_at,
        "parts": dict(parts),
        "functions": functions,
        "secrets": secrets,
        "errors": dict(errors),
    }


def encode_snapshot(document: Mapping[str, Any]) -> bytes:
    return (json.dumps(document, indent=1, sort_keys=True, ensure_ascii=False) + "\n").encode()


@dataclass(frozen=True)
class Difference:
    part: str
    """`config/auth`, `functions`, `secrets`, …"""
    item: str
    """The setting's dotted path, the function's slug (and file), the secret's name."""
    change: str
    """`changed`, `added` (live, not in the backup) or `removed` (in the backup, not live)."""


def _leaves(value: Any, prefix: str) -> Iterator[tuple[str, Any]]:
    if isinstance(value, dict) and value:
        for key in sorted(value):
            yield from _leaves(value[key], f"{prefix}.{key}" if prefix else str(key))
    elif isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
        for index, item in enumerate(value):
            label = item.get("name") or item.get("id") or item.get("slug") or index
            yield from _leaves(item, f"{prefix}[{label}]")
    else:
        yield prefix, value


def _compare(part: str, old: Any, new: Any) -> list[Difference]:
    before = dict(_leaves(old, ""))
    after = dict(_leaves(new, ""))
    found = []
    for key in sorted(before.keys() | after.keys()):
        if key not in after:
            found.append(Difference(part, key or "(all)", "removed"))
        elif key not in before:
            found.append(Difference(part, key or "(all)", "added"))
        elif before[key] != after[key]:
            found.append(Difference(part, key or "(all)", "changed"))
    return found


def diff(backup: Mapping[str, Any], live: Mapping[str, Any]) -> list[Difference]:
    """What differs between the backup's snapshot and the live one, part by part; a part
    that could not be read on either side is left out (its error says why)."""
    found: list[Difference] = []
    skipped = set(backup.get("errors") or {}) | set(live.get("errors") or {})
    old_parts, new_parts = backup.get("parts") or {}, live.get("parts") or {}
    for part in sorted(set(old_parts) | set(new_parts)):
        if part not in skipped:
            found += _compare(part, old_parts.get(part), new_parts.get(part))
    if "functions" not in skipped:
        old_functions = {f["slug"]: f for f in backup.get("functions") or []}
        new_functions = {f["slug"]: f for f in live.get("functions") or []}
        for slug in sorted(old_functions.keys() | new_functions.keys()):
            if slug not in new_functions:
                found.append(Difference("functions", slug, "removed"))
            elif slug not in old_functions:
                found.append(Difference("functions", slug, "added"))
            else:
                for item in _compare("functions", old_functions[slug], new_functions[slug]):
                    found.append(Difference("functions", f"{slug}: {item.item}", item.change))
    if "secrets" not in skipped:
        old_names, new_names = set(backup.get("secrets") or []), set(live.get("secrets") or [])
        found += [Difference("secrets", n, "removed") for n in sorted(old_names - new_names)]
        found += [Difference("secrets", n, "added") for n in sorted(new_names - old_names)]
    return found
