"""After a restore into a project: did the platform's objects stay as the project had them, and
are the user's objects as in the source? Pure: three catalog snapshots in, findings out.

A snapshot (postgres/supabase.catalog_snapshot) maps a category (owner, acl, trigger, policy,
row_security, function, event_trigger) to [schema, name, value] rows. The platform's objects
are those the project had before the restore in its managed schemas (and every event trigger);
the user's are those of the source outside the managed schemas, plus what the source had in
them that a fresh project lacks (a trigger on auth.users, a policy on storage.objects).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from bika.findings import Finding
from bika.supabase import profile

Key = tuple[str, str, str]  # category, schema, name
Snapshot = Mapping[str, Sequence[Sequence[str]]]

_NOUNS = {
    "owner": "owner of",
    "acl": "privileges on",
    "trigger": "trigger",
    "policy": "policy",
    "row_security": "row security of",
    "function": "function",
    "event_trigger": "event trigger",
}


def _flat(snapshot: Snapshot) -> dict[Key, str]:
    return {
        (category, row[0], row[1]): row[2] for category, rows in snapshot.items() for row in rows
    }


def _platform(key: Key) -> bool:
    return key[0] == "event_trigger" or profile.is_managed_schema(key[1])


def _name(key: Key) -> str:
    category, schema, name = key
    where = f"{schema}." if schema else ""
    return f"{_NOUNS.get(category, category)} {where}{name}"


def compare(source: Snapshot, before: Snapshot, after: Snapshot) -> list[Finding]:
    """Each difference as a Finding (error), in a stable order."""
    src, old, new = _flat(source), _flat(before), _flat(after)
    findings: list[Finding] = []
    platform = {k for k in old if _platform(k)}
    for key in sorted(platform):
        if new.get(key) != old[key]:
            findings.append(_differs(key, "the project's", old[key], new.get(key), platform=True))
    for key in sorted(src):
        if key in platform:
            continue
        if new.get(key) == src[key]:
            continue
        out_of_scope = profile.is_managed_schema(key[1]) and not profile.is_user_data_schema(key[1])
        if out_of_scope and key not in new:
            findings.append(
                Finding(
                    "warn",
                    "supabase",
                    f"{_name(key)} is in a schema the platform manages and a backup leaves"
                    " out: make it again in the project",
                    facts={"category": key[0], "schema": key[1], "name": key[2]},
                )
            )
            continue
        findings.append(_differs(key, "the source's", src[key], new.get(key), platform=False))
    for key in sorted(new):
        if key in src or key in old or _platform(key):
            continue
        findings.append(
            Finding(
                "error",
                "supabase",
                f"{_name(key)} is in the project after the restore but not in the source",
                facts={"category": key[0], "schema": key[1], "name": key[2], "got": new[key]},
            )
        )
    return findings


def _differs(key: Key, whose: str, expected: str, got: str | None, *, platform: bool) -> Finding:
    if got is None:
        message = f"{_name(key)} is gone after the restore (was {whose}: {expected})"
    else:
        message = f"{_name(key)} differs from {whose}: {got} (expected {expected})"
    fix = (
        "the restore changed a platform object: ask Supabase support, or restore into a new project"
        if platform
        else ""
    )
    return Finding(
        "error",
        "supabase",
        message,
        fix=fix,
        facts={
            "category": key[0],
            "schema": key[1],
            "name": key[2],
            "expected": expected,
            "got": got,
            "platform": platform,
        },
    )
