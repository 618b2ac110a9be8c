"""Taking a backup: pg_dump → fingerprint → zstd → age → storage, then the manifest, last.

If anything fails before the manifest is written, the backup does not exist.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager, suppress
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

import bika
from bika import clock
from bika.errors import BikaError, DumpError
from bika.operations import supabase_backup
from bika.postgres import binaries, catalog
from bika.postgres.archive import ArchiveTap
from bika.postgres.connection import ConnInfo
from bika.postgres.dump import DumpScope, pg_dump_argv, roles_argv
from bika.postgres.process import last_error_lines, run
from bika.repository import Artifact, Manifest, Repository, TableStats
from bika.repository.manifest import DumpSource, LargeObjects, Roles, Scope, TableName
from bika.repository.repository import BACKUPS, MANIFEST, new_backup_id
from bika.retention import periods_began, roles_of_new
from bika.stream import CODECS, Progress, Readable, StreamStats, encode
from bika.supabase.endpoints import gssapi_hint

DATABASE_ARTIFACT = "database.pgdump.zst.age"
GLOBALS_ARTIFACT = "globals.sql.zst.age"


class Extra(Protocol):
    """One more artifact of a backup besides the database (Edge Functions, secrets): made
    ready before pg_dump runs, so a setting's mistake costs no dump, streamed after it."""

    name: str
    """Its name in the manifest's artifacts."""
    file: str
    """Its object name in the backup's folder."""
    content: str

    def open(self) -> AbstractContextManager[Readable]:
        """The plaintext, streamed; raises on leaving if it could not be made whole."""
        ...

    def manifest_fields(self) -> dict[str, Any]:
        """Manifest fields describing it, once streamed."""
        ...


@dataclass
class BackupOptions:
    kind: str = "manual"
    label: str | None = None
    compression_level: int = 3
    compression_threads: int = 0
    pg_bin_dir: str | None = None
    storage_class: str | None = None
    """Storage class (S3, GCS) or access tier (Azure) of the artifacts; the manifest keeps the
    bucket's default so that listing and monitoring stay cheap and never need a restore."""
    scope: DumpScope = field(default_factory=DumpScope)
    profile: str = "auto"
    """`postgres`, `supabase` or `auto` (supabase_backup.resolve_profile)."""
    role_classes: Mapping[str, str] = field(default_factory=dict)
    """[storage] classes: a backup that will stand for its month (the month's first) is stored
    in the monthly class, one that stands for its week in the weekly class (retention.py)."""
    extras: Sequence[Extra] = ()


def storage_class_for(repo: Repository, options: BackupOptions, started: datetime) -> str | None:
    """The class of a backup's artifacts: its role's (monthly before weekly), else its kind's."""
    for role in roles_of_new(repo.started_times(since=periods_began(started)), started):
        if role in options.role_classes:
            return options.role_classes[role]
    return options.storage_class


# manifests read, newest first, looking for the previous backup of the same database
_LOOKBACK = 10


def expected_dump_size(repo: Repository, conn: ConnInfo) -> int | None:
    """About how many bytes pg_dump will write, for a progress bar's % and ETA: the previous
    backup's dump of the same database, else the database's size on disk (which counts indexes
    and bloat, so that estimate runs high). None when neither is known."""
    # by folder (a folder without a manifest fails to read and is passed over)
    for backup_id in reversed(list(repo.storage.folders(BACKUPS))[-_LOOKBACK:]):
        try:
            manifest = repo.manifest(backup_id)
        except BikaError:
            continue
        same = manifest.source.database == conn.database
        if same and manifest.source.host_hash == conn.host_hash():
            dump = manifest.artifacts.get("database")
            if dump is not None:
                return dump.plain_size
    try:
        return catalog.database_size(conn)
    except BikaError:
        return None  # the backup itself will say what is wrong


def take_backup(
    repo: Repository,
    conn: ConnInfo,
    options: BackupOptions,
    progress: Progress | None = None,
) -> Manifest:
    recipients = _recipients(repo)
    bin_dir = binaries.find_bin_dir(options.pg_bin_dir)
    pg_dump = binaries.tool("pg_dump", bin_dir)
    started = clock.now()
    facts = catalog.server_facts(conn)
    profile = supabase_backup.resolve_profile(options.profile, conn)
    scope = options.scope if profile == "postgres" else supabase_backup.scope(options.scope)
    # before dumping: pg_dump stops at the first table it may not read, after streaming the rest
    access = catalog.scope_access(conn, scope)
    if (problem := access.problem()) is not None:
        raise DumpError(f"cannot back up {conn.redacted()}: {problem}")
    backup_id = new_backup_id(options.kind, started)
    storage_class = storage_class_for(repo, options, started)
    conninfo, env = conn.libpq_args()
    threads = options.compression_threads or -1

    with _removed_unless_committed(repo, backup_id, [extra.file for extra in options.extras]):
        tap = ArchiveTap()
        key = repo.artifact_key(backup_id, DATABASE_ARTIFACT)
        argv = pg_dump_argv(pg_dump, conninfo, scope)
        with (
            run(argv, conn=conn, env=env) as child,
            repo.storage.create(key, storage_class=storage_class) as sink,
        ):
            stats = encode(
                child.stdout,
                sink,
                recipients,
                level=options.compression_level,
                threads=threads,
                tap=tap.feed,
                progress=progress,
            )
            if child.wait() != 0:
                said = last_error_lines(child.stderr_text())
                raise DumpError(f"pg_dump of {conn.redacted()} failed: {said}{gssapi_hint(said)}")
            summary = tap.finish()
        artifacts = {
            "database": artifact_of(key, "pg_dump-custom", stats, data_offsets=summary.data_offsets)
        }

        roles = _dump_roles(
            repo, conn, bin_dir, backup_id, recipients, options, storage_class, profile
        )
        if isinstance(roles, Artifact):
            artifacts["globals"] = roles
            roles_note = Roles(status="saved")
        else:
            roles_note = Roles(status="skipped", detail=roles)
        described: dict[str, Any] = {}
        for extra in options.extras:
            artifacts[extra.name] = _store_extra(
                repo, backup_id, extra, recipients, options, storage_class
            )
            described.update(extra.manifest_fields())
        if profile == "supabase":
            key = repo.artifact_key(backup_id, supabase_backup.CATALOG_ARTIFACT)
            with repo.storage.create(key, storage_class=storage_class) as sink:
                stats = encode(supabase_backup.catalog_json(conn), sink, recipients)
            artifacts["catalog"] = artifact_of(key, supabase_backup.CATALOG_CONTENT, stats)

        manifest = Manifest(
            tool=f"bika {bika.__version__}",
            id=backup_id,
            repository_id=repo.id,
            kind=options.kind,
            label=options.label,
            started_at=started,
            finished_at=clock.now(),
            source=DumpSource(
                database=summary.toc.database or conn.database,
                host_hash=conn.host_hash(),
                server_version=facts.version,
                pg_dump_version=summary.toc.dump_version,
                database_size=facts.database_size,
                output_settings=facts.output_settings,
            ),
            artifacts=artifacts,
            tables=[
                TableStats(
                    schema=t.schema,
                    name=t.name,
                    rows=t.rows,
                    sha256=t.sha256,
                    bytes=t.size,
                    estimated_rows=facts.estimated_rows.get((t.schema, t.name)),
                )
                for t in summary.tables
            ],
            large_objects=LargeObjects(
                count=summary.large_objects, bytes=summary.large_object_bytes
            ),
            roles=roles_note,
            scope=_scope(scope, access),
            profile="supabase" if profile == "supabase" else "postgres",
            recipients=repo.recipients,
            **described,
        )
        # locked before the manifest makes the backup exist, the manifest right after
        repo.lock_objects([a.key for a in artifacts.values()], started)
        repo.commit(manifest)
        repo.lock_objects([repo.artifact_key(backup_id, MANIFEST)], started)
    return manifest


@contextmanager
def _removed_unless_committed(
    repo: Repository, backup_id: str, extra_files: Sequence[str] = ()
) -> Iterator[None]:
    """A backup that fails or is interrupted before its manifest is written leaves none of
    its artifacts (nor, on local disk, their folder) behind."""
    try:
        yield
    except BaseException:
        for name in (
            DATABASE_ARTIFACT,
            GLOBALS_ARTIFACT,
            supabase_backup.CATALOG_ARTIFACT,
            *extra_files,
            MANIFEST,
        ):
            with suppress(Exception):
                repo.storage.delete(repo.artifact_key(backup_id, name))
        raise


def _scope(scope: DumpScope, access: catalog.ScopeAccess) -> Scope:
    return Scope(
        schema=list(scope.schemas),
        exclude_schema=list(scope.exclude_schemas),
        table=list(scope.tables),
        exclude_table=list(scope.exclude_tables),
        exclude_table_data=list(scope.exclude_table_data),
        tables_without_data=[
            TableName(schema=t.schema, name=t.name)
            for t in access.tables
            if t.data_excluded and t.kind == "r"
        ],
    )


def _recipients(repo: Repository) -> list[object]:
    from bika.crypto import parse_recipients

    return parse_recipients(repo.recipients)


def artifact_of(
    key: str, content: str, stats: StreamStats, *, data_offsets: dict[int, int] | None = None
) -> Artifact:
    return Artifact(
        key=key,
        content=content,
        codecs=CODECS,
        stored_size=stats.stored_size,
        stored_sha256=stats.stored_sha256,
        plain_size=stats.plain_size,
        plain_sha256=stats.plain_sha256,
        data_offsets=data_offsets,
    )


def _store_extra(
    repo: Repository,
    backup_id: str,
    extra: Extra,
    recipients: list[object],
    options: BackupOptions,
    storage_class: str | None,
) -> Artifact:
    key = repo.artifact_key(backup_id, extra.file)
    # the sink outside: a source that fails on leaving aborts the object it was filling
    with repo.storage.create(key, storage_class=storage_class) as sink, extra.open() as source:
        stats = encode(source, sink, recipients, level=options.compression_level)
    return artifact_of(key, extra.content, stats)


class _RolesRefused(Exception):
    pass


def _dump_roles(
    repo: Repository,
    conn: ConnInfo,
    bin_dir: Path,
    backup_id: str,
    recipients: list[object],
    options: BackupOptions,
    storage_class: str | None,
    profile: str = "postgres",
) -> Artifact | str:
    """The cluster's roles without passwords, or why the server would not give them; with
    the supabase profile only the project's custom roles (supabase_backup.custom_roles)."""
    pg_dumpall = binaries.tool("pg_dumpall", bin_dir)
    conninfo, env = conn.libpq_args()
    key = repo.artifact_key(backup_id, GLOBALS_ARTIFACT)
    argv = roles_argv(pg_dumpall, conninfo)
    try:
        if profile == "supabase":
            with run(argv, conn=conn, env=env) as child:
                dump = child.stdout.read()
                if child.wait() != 0:
                    raise _RolesRefused(last_error_lines(child.stderr_text()))
            with repo.storage.create(key, storage_class=storage_class) as sink:
                source = supabase_backup.custom_roles(dump)
                stats = encode(source, sink, recipients, level=options.compression_level)
            return artifact_of(key, "sql", stats)
        with (
            run(argv, conn=conn, env=env) as child,
            repo.storage.create(key, storage_class=storage_class) as sink,
        ):
            stats = encode(child.stdout, sink, recipients, level=options.compression_level)
            if child.wait() != 0:
                raise _RolesRefused(last_error_lines(child.stderr_text()))
    except _RolesRefused as refused:
        return f"pg_dumpall --roles-only refused: {refused}"
    return artifact_of(key, "sql", stats)
