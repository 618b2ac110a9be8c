"""`bika restore --profile supabase`: a backup into a Supabase project, as `postgres`, without
a superuser. Roles first, then the user's objects and rows in one transaction (triggers held
off with session_replication_role where the role may set it, else rows loaded parents first),
then the user's privileges exactly as in the source; the platform's objects are left as the
project has them. Every entry left out is reported with the reason, and the result compared.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from bika import scratch
from bika.errors import RestoreError, RestoreFailed
from bika.findings import Finding
from bika.operations.stored_archive import StoredArchive, check_identity, read_archive_toc
from bika.operations.supabase_backup import CATALOG_CONTENT
from bika.postgres import binaries, catalog
from bika.postgres import supabase as pg_supabase
from bika.postgres.archive import TocEntry
from bika.postgres.connection import ConnInfo
from bika.postgres.pg_restore import clean_sql, first_psql_error, pipe_script, psql_session
from bika.repository import Manifest, Repository
from bika.stream import decode
from bika.supabase import comparison, profile, roles, selection


@dataclass
class SupabaseRestoreReport:
    backup_id: str
    target: str
    replica: bool
    """Whether triggers were held off with session_replication_role = replica."""
    roles: list[pg_supabase.StatementResult] = field(default_factory=list)
    skipped: list[selection.Skipped] = field(default_factory=list)
    platform: int = 0
    tables: int = 0
    rows: int = 0
    findings: list[Finding] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not any(f.level == "error" for f in self.findings)


def restore_into_project(
    repo: Repository,
    manifest: Manifest,
    target: ConnInfo,
    identities: list[object],
    *,
    clean: bool = False,
    pg_bin_dir: str | None = None,
) -> SupabaseRestoreReport:
    database = manifest.artifacts["database"]
    check_identity(repo, database.key, identities, f"{manifest.id}/database")
    before = pg_supabase.project_facts(target)
    if not set(profile.SIGNATURE_SCHEMAS) <= before.schemas:
        raise RestoreError(
            f"{target.redacted()} is not a Supabase project (no auth and storage schemas):"
            " restore into a project's database, or without --profile supabase"
        )
    toc = read_archive_toc(repo, database, identities, f"{manifest.id}/database")
    chosen = selection.select(toc.entries, before, clean=clean)
    if not clean:
        _refuse_unless_fresh(before, target)
    report = SupabaseRestoreReport(
        manifest.id,
        target.redacted(),
        replica=before.replica_allowed,
        skipped=chosen.skipped,
        platform=chosen.platform,
    )
    snapshot_before = pg_supabase.catalog_snapshot(target)
    if "globals" in manifest.artifacts:
        script = roles.custom_roles_sql(_read_text(repo, manifest, "globals", identities))
        report.roles = pg_supabase.run_statements(target, roles.statements(script))

    bin_dir = binaries.find_bin_dir(pg_bin_dir)
    with _archive_file(repo, manifest, identities) as archive:
        drops = clean_sql(list(chosen.main), toc) if clean else ""
        _load(archive, chosen, before, target, bin_dir, drops)

    restored = {(e.namespace or "", e.tag) for e in chosen.main if e.desc == "TABLE DATA"}
    tables = [t for t in manifest.tables if (t.schema_, t.name) in restored]
    counted = catalog.exact_rows(target, [(t.schema_, t.name) for t in tables])
    report.tables, report.rows = len(tables), sum(t.rows for t in tables)
    for t in tables:
        got = counted.get((t.schema_, t.name))
        if got != t.rows:
            report.findings.append(
                Finding(
                    "error",
                    "rows",
                    f"{t.schema_}.{t.name}: {got} rows restored, the backup has {t.rows}",
                    facts={"table": f"{t.schema_}.{t.name}", "expected": t.rows, "got": got},
                )
            )
    if "catalog" in manifest.artifacts:
        source = json.loads(_read_text(repo, manifest, "catalog", identities))
        after = pg_supabase.catalog_snapshot(target)
        report.findings += comparison.compare(source, snapshot_before, after)
    return report


def _refuse_unless_fresh(project: pg_supabase.ProjectFacts, target: ConnInfo) -> None:
    mine = sorted(f"{s}.{n}" for (s, n) in project.relations if not profile.is_managed_schema(s))
    if mine:
        shown = ", ".join(mine[:3]) + (f" and {len(mine) - 3} more" if len(mine) > 3 else "")
        raise RestoreError(
            f"{target.redacted()} is not a fresh project: it already has {shown}; restore"
            " into a new project, or add --clean to replace the backup's objects there"
        )


def _read_text(repo: Repository, manifest: Manifest, name: str, identities: list[object]) -> str:
    artifact = manifest.artifacts[name]
    if name == "catalog" and artifact.content != CATALOG_CONTENT:
        raise RestoreError(f"{manifest.id}/{name}: not a catalog artifact ({artifact.content})")
    sink = _Memory()
    with repo.storage.open(artifact.key) as source:
        decode(source, sink, identities, name=f"{manifest.id}/{name}")
    return bytes(sink.data).decode("utf-8", "replace")


class _Memory:
    def __init__(self) -> None:
        self.data = bytearray()

    def write(self, data: bytes) -> int:
        self.data += data
        return len(data)


@contextmanager
def _archive_file(repo: Repository, manifest: Manifest, identities: list[object]) -> Iterator[Path]:
    """The archive decrypted into a private file (pg_restore -L reads it twice), checked."""
    archive = StoredArchive.of(repo, manifest, identities)
    folder = Path(tempfile.mkdtemp(prefix="supabase-restore-", dir=scratch.folder()))
    path = folder / "database.pgdump"
    try:
        with path.open("w+b") as file:
            if not archive.save(file):
                raise archive.mismatch()
        yield path
    finally:
        shutil.rmtree(folder, ignore_errors=True)


# pg_dump's sections (teSection): 1 none, 2 pre-data, 3 data, 4 post-data
_DATA_SECTION = 3


def _list_file(folder: Path, name: str, entries: list[TocEntry]) -> Path:
    path = folder / name
    path.write_text("".join(f"{e.dump_id};\n" for e in entries))
    return path


def _load(
    archive: Path,
    chosen: selection.Selection,
    project: pg_supabase.ProjectFacts,
    target: ConnInfo,
    bin_dir: Path,
    drops: str,
) -> None:
    """One psql session, one transaction: the objects and rows, the privileges reset to the
    built-in defaults, the source's privileges; COMMIT only if every statement succeeded."""
    pg_restore = binaries.tool("pg_restore", bin_dir)
    psql = binaries.tool("psql", bin_dir)
    # Two parts: the definitions and the managed tables' rows, then the user's rows and the
    # rest. Without replica, a trigger the project keeps (on auth.users, say) fires while the
    # managed rows load and may write the user's tables: those rows go before the user's own.
    managed = set(chosen.managed_data)
    first = [
        e for e in chosen.main if e.section < _DATA_SECTION or (e.namespace or "", e.tag) in managed
    ]
    firsts = {e.dump_id for e in first}
    rest = [e for e in chosen.main if e.dump_id not in firsts]
    users = [t for t in chosen.data if t not in managed]
    main = _list_file(archive.parent, "main.list", first)
    later = _list_file(archive.parent, "later.list", rest)
    acl = _list_file(archive.parent, "acl.list", chosen.acl)
    prelude = "BEGIN;\n"
    if project.replica_allowed:
        prelude += pg_supabase.REPLICA
    if drops and chosen.managed_data:
        # the user's rows in managed tables go, children first; the user's own tables too,
        # before they are dropped, or a cascade from auth.users would stop at their keys
        present = [t for t in chosen.data if t in project.relations]
        prelude += pg_supabase.delete_rows_sql(selection.reverse_tables(present))
    with psql_session(psql, target) as session:
        try:
            session.stdin.write(prelude.encode())
            session.stdin.write(drops.encode())
            pipe_script(pg_restore, main, archive, session.stdin)
            if not project.replica_allowed and users:
                rows = pg_supabase.delete_rows_sql(selection.reverse_tables(users))
                session.stdin.write(rows.encode())
            pipe_script(pg_restore, later, archive, session.stdin)
            if chosen.user_schemas:
                session.stdin.write(b"RESET ALL;\nSET search_path = '';\n")
                session.stdin.write(pg_supabase.acl_reset_sql(chosen.user_schemas).encode())
            pipe_script(pg_restore, acl, archive, session.stdin)
            session.stdin.write(b"COMMIT;\n")
            session.stdin.close()
        except BrokenPipeError:
            pass  # psql stopped at an error: its stderr says which
        code = session.wait()
        if code != 0:
            said = first_psql_error(session.stderr_text())
            raise RestoreFailed(
                f"restore into {target.redacted()} failed and was rolled back, nothing"
                f" changed: {said}",
                [said],
            )
