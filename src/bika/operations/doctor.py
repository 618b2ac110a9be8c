"""Gathering what `bika doctor` judges: the repository's storage, its bucket, the database.

Only I/O lives here; bika.diagnosis turns the facts into checks and fixes.

Writing is tested with a small probe object that is deleted again at once (in a versioned
bucket a delete marker and the probe's version stay behind, as for any deleted object).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import socket
from pathlib import Path
from typing import Literal

from bika.diagnosis import Backend, DatabaseFacts, StorageFacts
from bika.errors import BikaError, RepositoryError
from bika.operations import supabase_backup
from bika.postgres import binaries, catalog
from bika.postgres.connection import ConnInfo
from bika.postgres.dump import DumpScope
from bika.repository import Repository
from bika.repository.repository import CONFIG_KEY
from bika.storage import Storage, bucket_facts, write_bytes
from bika.storage.facts import BucketFacts
from bika.storage.local import LocalStorage

PROBE_PREFIX = "doctor-probe-"


def storage_facts(storage: Storage, classes: dict[str, str]) -> StorageFacts:
    backend: Backend = storage.kind
    try:
        found = storage.stat(CONFIG_KEY)
    except BikaError as exc:
        return StorageFacts(storage.url, backend, reachable=False, reach_error=str(exc))

    repository: Literal["ok", "missing", "invalid", "unknown"] = "missing"
    repository_detail, newest, lock = "", None, ""
    if found is not None:
        try:
            repo = Repository.open(storage)
            ids = repo.backup_ids()
            newest = repo.manifest(ids[-1]).stored_size if ids else None
            repository = "ok"
            if repo.object_lock is not None:
                lock = f"{repo.object_lock.days} days, {repo.object_lock.mode}"
            repository_detail = (
                f"format {repo.config.get('version')}, id {repo.id},"
                f" {len(repo.recipients)} recipient(s), {len(ids)} backup(s)"
            )
        except RepositoryError as exc:
            repository, repository_detail = "invalid", str(exc)
        except BikaError as exc:
            repository, repository_detail = "unknown", str(exc)

    free, exposed = None, None
    if isinstance(storage, LocalStorage):
        free = _free_bytes(storage.root)
        exposed = _exposed(storage.root) if found is not None else None
        writable, write_detail, probe = _probe_local(storage)
        bucket: BucketFacts | None = None
    else:
        writable, write_detail, probe = _probe(storage)
        bucket = bucket_facts(storage, probe)
        if probe is not None:
            _delete_probe(storage, probe)
    return StorageFacts(
        storage.url,
        backend,
        reachable=True,
        repository=repository,
        repository_detail=repository_detail,
        writable=writable,
        write_detail=write_detail,
        free_bytes=free,
        newest_backup_bytes=newest,
        exposed=exposed,
        classes=dict(classes),
        bucket=bucket,
        object_lock=lock,
    )


def database_facts(
    url: str, pg_bin_dir: str | None, scope: DumpScope | None = None, profile: str = "auto"
) -> DatabaseFacts:
    """What the database and pg_dump say; with a scope, also whether the role can read every
    table a backup of that scope dumps (with the profile's exclusions)."""
    conn = ConnInfo.parse(url)
    where = conn.redacted()
    pg_dump_version, pg_dump_error = None, ""
    try:
        pg_dump_version = binaries.tool_version(
            binaries.tool("pg_dump", binaries.find_bin_dir(pg_bin_dir))
        )
    except BikaError as exc:
        pg_dump_error = str(exc)
    try:
        with conn.connect() as db:
            row = db.execute("SHOW server_version").fetchone()
            server = str(row[0]).split()[0] if row else None
            ssl = db.execute("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()").fetchone()
            local = _is_local(db.info.host)
        resolved = supabase_backup.resolve_profile(profile, conn)
        how = "set in the configuration" if profile != "auto" else "detected"
        if scope is not None and resolved == "supabase":
            scope = supabase_backup.scope(scope)
        access = catalog.scope_access(conn, scope) if scope is not None else None
    except BikaError as exc:
        return DatabaseFacts(
            where,
            reachable=False,
            error=str(exc),
            pg_dump_version=pg_dump_version,
            pg_dump_error=pg_dump_error,
        )
    encrypted = None if local or ssl is None else bool(ssl[0])
    return DatabaseFacts(
        where,
        reachable=True,
        server_version=server,
        pg_dump_version=pg_dump_version,
        pg_dump_error=pg_dump_error,
        encrypted=encrypted,
        role=access.role if access else "",
        tables_in_scope=len(access.tables) if access else None,
        unreadable=access.describe() if access and access.unreadable else "",
        unreadable_fix=access.fix() if access and access.unreadable else "",
        profile=resolved,
        profile_how=how,
    )


def _probe_key() -> str:
    host = "".join(c if c.isalnum() or c in "-_" else "-" for c in socket.gethostname())[:40]
    return f"{PROBE_PREFIX}{host or 'host'}-{secrets.token_hex(4)}"


def _probe(storage: Storage) -> tuple[bool, str, str | None]:
    key = _probe_key()
    try:
        write_bytes(storage, key, b"bika doctor probe\n")
    except BikaError as exc:
        return False, str(exc), None
    return True, "wrote and deleted a probe object", key


def _delete_probe(storage: Storage, key: str) -> None:
    with contextlib.suppress(BikaError):  # a retention lock may keep it: tiny, and named
        storage.delete(key)


def _probe_local(storage: LocalStorage) -> tuple[bool | None, str, str | None]:
    if not storage.root.exists():
        # Do not create the folder just to test it: bika init will.
        parent = _existing_parent(storage.root)
        if os.access(parent, os.W_OK | os.X_OK):
            return True, f"{storage.root} does not exist yet; {parent} is writable", None
        return False, f"{storage.root} does not exist and {parent} is not writable", None
    key = _probe_key()
    try:
        write_bytes(storage, key, b"bika doctor probe\n")
        storage.delete(key)
    except BikaError as exc:
        return False, str(exc), None
    return True, "wrote and deleted a probe file", None


_EXPOSED_LOOK = 10_000  # entries looked at, at most: a repository of years stays quick


def _exposed(root: Path) -> list[str]:
    """What in the repository its group or others may read or enter (bika makes it 0700 and
    0600, but it may be older than that, or copied with other modes)."""
    entries = [root]
    for top, folders, files in os.walk(root):
        entries += [Path(top, name) for name in (*folders, *files)]
        if len(entries) > _EXPOSED_LOOK:
            break
    found = []
    for path in entries:
        with contextlib.suppress(OSError):
            if path.lstat().st_mode & 0o077:
                found.append(str(root) if path == root else str(path.relative_to(root)))
    return found


def _free_bytes(root: Path) -> int | None:
    try:
        return shutil.disk_usage(_existing_parent(root)).free
    except OSError:
        return None


def _existing_parent(path: Path) -> Path:
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def _is_local(host: str | None) -> bool:
    return not host or host.startswith("/") or host in ("localhost", "127.0.0.1", "::1")
