"""The `project` artifact: a snapshot of a Supabase project's configuration through the
Management API (auth, API keys, network restrictions, SSL enforcement, storage, PostgREST,
the deployed Edge Functions with their source, the secrets' names), and its diff with the live
project. Applying a snapshot back is not done: the diff says what to set, where."""

from __future__ import annotations

import io
import json
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from bika import clock
from bika.errors import IntegrityError, RestoreError
from bika.operations.supabase_api import ManagementApi
from bika.repository import Manifest, Repository
from bika.repository.manifest import ProjectConfig
from bika.stream import Readable, decode
from bika.supabase.api import SupabaseApiError
from bika.supabase.project import (
    PARTS,
    SNAPSHOT_FORMAT,
    Difference,
    diff,
    encode_snapshot,
    function_files,
    secret_names,
    snapshot,
)
from bika.units import timestamp

PROJECT_ARTIFACT = "project.json.zst.age"


def take_snapshot(api: ManagementApi, project_ref: str) -> dict[str, Any]:
    """Every part the token may read; a part it may not is kept as its error, so one missing
    permission costs that part, not the snapshot."""
    base = f"/v1/projects/{urllib.parse.quote(project_ref)}"
    parts: dict[str, Any] = {}
    errors: dict[str, str] = {}
    for part in PARTS:
        try:
            parts[part] = api.get(f"{base}/{part}", project_ref)
        except SupabaseApiError as exc:
            errors[part] = str(exc)
    functions: list[dict[str, Any]] = []
    try:
        listed = api.get(f"{base}/functions", project_ref)
        for meta in listed if isinstance(listed, list) else []:
            slug = str(meta.get("slug") or "")
            if not slug:
                continue
            path = f"{base}/functions/{urllib.parse.quote(slug)}/body"
            try:
                body, kind = api.fetch(path, project_ref, accept="multipart/form-data")
                files = function_files(body, kind)
            except SupabaseApiError as exc:
                errors[f"functions/{slug}"] = str(exc)
                files = {}
            functions.append({"slug": slug, "meta": meta, "files": files})
    except SupabaseApiError as exc:
        errors["functions"] = str(exc)
    secrets: list[str] = []
    try:
        secrets = secret_names(api.get(f"{base}/secrets", project_ref))
    except SupabaseApiError as exc:
        errors["secrets"] = str(exc)
    return snapshot(project_ref, timestamp(clock.now()), parts, functions, secrets, errors)


@dataclass
class ProjectExtra:
    """A backup's `project` artifact (operations.backup.Extra); the snapshot is taken before
    pg_dump runs."""

    document: dict[str, Any]
    name: str = "project"
    file: str = PROJECT_ARTIFACT
    content: str = "json"
    warnings: list[str] = field(default_factory=list)

    @contextmanager
    def open(self) -> Iterator[Readable]:
        yield io.BytesIO(encode_snapshot(self.document))

    def manifest_fields(self) -> dict[str, Any]:
        doc = self.document
        return {
            "project_config": ProjectConfig(
                project_ref=doc["project_ref"],
                parts=sorted(doc["parts"]),
                functions=len(doc["functions"]),
                secrets=len(doc["secrets"]),
                unreadable=sorted(doc["errors"]),
            )
        }


def prepare_project(api: ManagementApi, project_ref: str) -> ProjectExtra:
    extra = ProjectExtra(take_snapshot(api, project_ref))
    errors = extra.document["errors"]
    if errors:
        first = next(iter(errors.values()))
        extra.warnings.append(
            f"project configuration: {len(errors)} part(s) not readable ({', '.join(errors)});"
            f" first: {first}"
        )
    return extra


def stored_snapshot(
    repo: Repository, manifest: Manifest, identities: list[object]
) -> dict[str, Any]:
    artifact = manifest.artifacts.get("project")
    if artifact is None:
        raise RestoreError(
            f"backup {manifest.id} holds no project configuration; it is taken when"
            " SUPABASE_ACCESS_TOKEN and [supabase] project_ref are set"
        )
    plain = io.BytesIO()
    with repo.storage.open(artifact.key) as source:
        stats = decode(source, plain, identities, name=f"{manifest.id}/project")
    if stats.plain_sha256 != artifact.plain_sha256:
        raise IntegrityError(
            f"{manifest.id}/project: what was decrypted is not what the manifest describes;"
            " run `bika verify`"
        )
    document: dict[str, Any] = json.loads(plain.getvalue())
    if document.get("format") != SNAPSHOT_FORMAT:
        raise IntegrityError(f"{manifest.id}/project is not a bika project snapshot")
    return document


def live_diff(
    repo: Repository, manifest: Manifest, identities: list[object], api: ManagementApi
) -> tuple[dict[str, Any], dict[str, Any], list[Difference]]:
    """The backup's snapshot, the live one, and what differs between them."""
    stored = stored_snapshot(repo, manifest, identities)
    live = take_snapshot(api, str(stored["project_ref"]))
    return stored, live, diff(stored, live)
