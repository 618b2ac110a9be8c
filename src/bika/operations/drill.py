"""Restore drills: restore a backup into a scratch database and prove every byte came back.

Each table's exact rows and content hash are recomputed and compared with the manifest, the
schema is compared with the archive's table of contents, and the result is kept in drills/.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from io import BytesIO
from pathlib import Path
from typing import Any, Literal

from psycopg import sql

import bika
from bika.errors import (
    BikaError,
    DumpError,
    IdentityError,
    IntegrityError,
    ObjectNotFound,
    PostgresError,
    RestoreError,
)
from bika.operations.restore import (
    ArchiveCopy,
    RestoreFailed,
    RestoreOptions,
    StoredArchive,
    check_identity,
    plan_restore,
    read_archive_toc,
    restore_backup,
)
from bika.postgres import binaries, catalog, fingerprint
from bika.postgres import supabase as pg_supabase
from bika.postgres.archive import ArchiveToc, TocEntry
from bika.postgres.cluster import Cluster, start_cluster
from bika.postgres.connection import ConnInfo, first_line
from bika.postgres.process import run
from bika.repository import Manifest, Repository
from bika.repository.drills import (
    DrillRecord,
    DrillTarget,
    ObjectResult,
    TableResult,
    record_drill,
)
from bika.stream import Progress, decode

SCRATCH_DATABASE = "bika_drill"
ROLES_LIMIT = 64 << 20  # a roles script is kilobytes; refuse to hold an absurd one in memory

# Nobody queries a drill's cluster but the drill: autovacuum would only compete with the
# restore's index builds and the fingerprints for the CPU.
CLUSTER_SETTINGS = {"autovacuum": "off"}


def cluster_settings(jobs: int, cores: int) -> dict[str, str]:
    """The drill cluster's settings for a restore with `jobs` pg_restore jobs: parallel index
    builds only with cores to spare, since each job already keeps a core busy (on 2 cores and 2
    jobs, the extra workers made drills slower)."""
    spare = max(0, cores // max(1, jobs) - 1)
    return {**CLUSTER_SETTINGS, "max_parallel_maintenance_workers": str(min(spare, 4))}


Say = Callable[[str], None]


@dataclass
class DrillOptions:
    target: str | None = None
    """A server URL to create the scratch database on; None: a throwaway embedded cluster."""
    keep: bool = False
    """Leave the scratch database (or the stopped cluster's folder) for inspection."""
    jobs: int = 0
    """pg_restore jobs; 0: one per core, at most 4."""
    workers: int = 0
    """Connections computing fingerprints; 0: one per core."""
    overlap: bool = True
    """Fingerprint each table as soon as a parallel restore has loaded it and taken its last
    exclusive lock, while pg_restore goes on (a shorter drill; the restore time measured then
    includes sharing the CPU with that reading)."""
    pg_bin_dir: str | None = None
    workdir: Path | None = None
    """Where the throwaway cluster and pg_restore's temporary file go (default: system temp)."""
    before_verify: Callable[[ConnInfo], None] | None = None
    """Called with the restored database before anything is compared (tests alter it here)."""
    record: bool = True


@dataclass
class DrillOutcome:
    record: DrillRecord
    key: str | None
    kept: str | None = None
    """With --keep: where the scratch database is and how to reach or remove it."""


@dataclass
class _Scratch:
    conn: ConnInfo
    target: DrillTarget
    cluster: Cluster | None
    seconds: float
    kept: str | None = None


@dataclass
class _Findings:
    tables: list[TableResult] = field(default_factory=list)
    objects: list[ObjectResult] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    objects_checked: int = 0


def run_drill(
    repo: Repository,
    manifest: Manifest,
    identities: list[object],
    options: DrillOptions,
    say: Say | None = None,
    progress: Progress | None = None,
) -> DrillOutcome:
    """Restore `manifest`'s backup into a scratch database, compare, record; never raises for
    a difference or an unreadable backup (a missing or damaged artifact, a key that does not
    open it: each a failed drill, recorded), only for what stops the drill from running (an
    unreachable --target, a server that does not start)."""
    say = say or (lambda _: None)
    started = datetime.now(UTC)
    bin_dir = binaries.find_bin_dir(options.pg_bin_dir)
    pg_restore_version = binaries.tool_version(binaries.tool("pg_restore", bin_dir))
    artifact = manifest.artifacts["database"]
    findings = _Findings()
    try:
        check_identity(repo, artifact.key, identities, f"{manifest.id}/database")
    except _UNREADABLE as exc:
        # nothing was restored: still a drill, and a failed one (list must not keep an old ✓)
        findings.problems.append(f"the backup cannot be read: {exc}")
        target = DrillTarget(
            kind="embedded" if options.target is None else "server",
            server_version="not started",
            host_hash=ConnInfo.parse(options.target).host_hash() if options.target else None,
            database="",
        )
        scratch = _Scratch(ConnInfo.parse("postgresql:///"), target, None, 0.0)
        return _outcome(
            repo, manifest, options, started, pg_restore_version, scratch, _Run(), findings
        )
    options = replace(options, jobs=options.jobs or max(1, min(4, os.cpu_count() or 1)))
    with contextlib.ExitStack() as stack:
        copy = None
        if options.jobs > 1:
            # pg_restore --jobs reads a decrypted copy: made while the server starts
            archive = StoredArchive.of(repo, manifest, identities)
            copy = stack.enter_context(ArchiveCopy(archive, options.workdir, progress))
        scratch = stack.enter_context(_scratch(options, say))
        try:
            toc = read_archive_toc(repo, artifact, identities, f"{manifest.id}/database")
            run = _drill(
                repo,
                manifest,
                identities,
                options,
                scratch,
                toc,
                bin_dir,
                say,
                progress,
                findings,
                copy,
            )
        except _UNREADABLE as exc:
            findings.problems.append(f"the backup cannot be read: {exc}")
            run = _Run()
        run.restored_size = _database_size(scratch.conn)
    return _outcome(repo, manifest, options, started, pg_restore_version, scratch, run, findings)


# What makes a backup unreadable for a drill: a failed drill, not an error of the drill.
_UNREADABLE = (DumpError, IntegrityError, IdentityError, ObjectNotFound)


def _outcome(
    repo: Repository,
    manifest: Manifest,
    options: DrillOptions,
    started: datetime,
    pg_restore_version: str,
    scratch: _Scratch,
    run: _Run,
    findings: _Findings,
) -> DrillOutcome:
    report = run.report
    record = DrillRecord(
        backup_id=manifest.id,
        repository_id=repo.id,
        passed=not findings.problems,
        started_at=started,
        finished_at=datetime.now(UTC),
        target=scratch.target,
        tools={
            "bika": bika.__version__,
            "pg_restore": pg_restore_version,
            "server": scratch.target.server_version,
        },
        setup_seconds=round(scratch.seconds + run.roles_seconds, 3),
        restore_seconds=round(run.restore_seconds, 3),
        verify_seconds=round(run.verify_seconds, 3),
        restored_size=run.restored_size,
        owners=run.owners,
        tables_checked=sum(1 for t in report.tables.values() if t.problem is None) if report else 0,
        rows_checked=report.rows if report else 0,
        bytes_hashed=report.size if report else 0,
        objects_checked=findings.objects_checked,
        tables=findings.tables,
        objects=findings.objects,
        missing_extensions=run.missing_extensions,
        problems=findings.problems,
        notes=findings.notes,
    )
    key = record_drill(repo, record) if options.record else None
    return DrillOutcome(record, key, scratch.kept)


@dataclass
class _Run:
    owners: Literal["restored", "skipped"] = "skipped"
    missing_extensions: list[str] = field(default_factory=list)
    roles_seconds: float = 0.0
    restore_seconds: float = 0.0
    verify_seconds: float = 0.0
    report: fingerprint.FingerprintReport | None = None
    restored_size: int | None = None


def _drill(
    repo: Repository,
    manifest: Manifest,
    identities: list[object],
    options: DrillOptions,
    scratch: _Scratch,
    toc: ArchiveToc,
    bin_dir: Path,
    say: Say,
    progress: Progress | None,
    findings: _Findings,
    copy: ArchiveCopy | None,
) -> _Run:
    run = _Run()
    roles_started = time.monotonic()
    run.owners = _prepare_roles(repo, manifest, identities, scratch, toc, bin_dir, findings)
    run.roles_seconds = time.monotonic() - roles_started
    available = _available_extensions(scratch.conn)
    run.missing_extensions = sorted(
        e.tag for e in toc.entries if e.desc == "EXTENSION" and e.tag not in available
    )
    skipped = dependents(toc.entries, run.missing_extensions)
    if manifest.profile == "supabase":
        # the platform's event triggers call functions in schemas a backup of a project
        # leaves out (extensions); the project has its own
        platform = {e.dump_id: "" for e in toc.entries if e.desc == "EVENT TRIGGER"}
        skipped.update(platform)
        if platform:
            findings.notes.append(
                f"{len(platform)} event trigger(s) of the Supabase platform not restored: their"
                " functions are in schemas the backup leaves out"
            )
    jobs = options.jobs
    say(
        f"restoring {manifest.id} into {scratch.target.kind} PostgreSQL"
        f" {scratch.target.server_version} ({jobs} job{'s' if jobs > 1 else ''})"
    )
    check = _tables_to_check(manifest, toc, skipped, findings)
    with fingerprint.Fingerprinter(
        scratch.conn,
        encoding=dump_encoding(toc.entries),
        settings=_output_settings(manifest, findings),
        workers=options.workers,
        spool_dir=options.workdir,
    ) as fingerprinter:
        # a parallel restore commits each table's rows on its own: those can be read while
        # pg_restore builds indexes, unless a hook wants to change them first
        early = options.overlap and jobs > 1 and options.before_verify is None
        steps = blocking_steps(toc.entries, check, skipped)
        with LoadWatcher(
            scratch.conn, check, fingerprinter.add, steps=steps, enabled=early
        ) as watcher:
            restore_started = time.monotonic()
            restore_error = _restore(
                repo,
                manifest,
                identities,
                scratch,
                options,
                jobs,
                run.owners,
                skipped,
                toc,
                progress,
                copy,
            )
            run.restore_seconds = time.monotonic() - restore_started
        if copy is not None and restore_error is None and not copy.matches:
            # restored all the same: the table comparison names what differs
            findings.problems.append(str(copy.archive.mismatch()))
        if restore_error is not None:
            findings.problems.append(restore_error)
        if options.before_verify is not None:
            options.before_verify(scratch.conn)

        say("comparing every table's rows and content hash, and the schema, with the backup")
        verify_started = time.monotonic()
        fingerprinter.add([t for t in check if t not in watcher.added])
        run.report = fingerprinter.finish()
    _judge_tables(manifest, run.report, findings)
    _judge_left_out(scratch.conn, manifest, toc, findings)
    _compare_schema(scratch.conn, manifest, toc, skipped, findings)
    run.verify_seconds = time.monotonic() - verify_started
    _explain_skipped(toc, run.missing_extensions, skipped, scratch, findings)
    return run


# -- the backup's table of contents ------------------------------------------------------


def dump_encoding(entries: Sequence[TocEntry]) -> str | None:
    """The client encoding pg_dump wrote the data in, from the archive's ENCODING entry."""
    for entry in entries:
        if entry.desc == "ENCODING" and entry.defn:
            match = re.search(r"client_encoding\s*=\s*'([^']+)'", entry.defn)
            if match:
                return match.group(1)
    return None


def dependents(entries: Sequence[TocEntry], extensions: list[str]) -> dict[int, str]:
    """Entries that need one of `extensions` (directly or through others), with which one."""
    needs: dict[int, str] = {
        e.dump_id: e.tag for e in entries if e.desc == "EXTENSION" and e.tag in extensions
    }
    users: dict[int, list[int]] = {}
    for entry in entries:
        for dependency in entry.dependencies:
            users.setdefault(dependency, []).append(entry.dump_id)
    todo = list(needs)
    while todo:
        current = todo.pop()
        for user in users.get(current, []):
            if user not in needs:
                needs[user] = needs[current]
                todo.append(user)
    return needs


# -- the scratch database ----------------------------------------------------------------


@contextmanager
def _scratch(options: DrillOptions, say: Say) -> Iterator[_Scratch]:
    started = time.monotonic()
    if options.target is None:
        say("starting a throwaway PostgreSQL server (embedded)")
        cluster = start_cluster(
            parent=options.workdir,
            password=secrets.token_urlsafe(18),
            fast=True,
            settings=cluster_settings(options.jobs, os.cpu_count() or 1),
        )
        scratch: _Scratch | None = None
        try:
            url = cluster.create_database(SCRATCH_DATABASE)
            scratch = _Scratch(
                ConnInfo.parse(url),
                DrillTarget(
                    kind="embedded", server_version=cluster.version, database=SCRATCH_DATABASE
                ),
                cluster,
                time.monotonic() - started,
            )
            yield scratch
        finally:
            if options.keep and scratch is not None:
                cluster.stop()
                scratch.kept = _keep(cluster, options.workdir)
            else:
                _discard(cluster)
        return
    server = ConnInfo.parse(options.target)
    stamp = datetime.now(UTC).strftime("%Y%m%d%H%M%S")
    name = f"{SCRATCH_DATABASE}_{stamp}_{secrets.token_hex(3)}"
    with server.connect() as db:
        version = str(db.execute("SHOW server_version").fetchone()[0]).split()[0]  # type: ignore[index]
    try:
        catalog.create_database(server, name)
    except Exception as exc:
        raise PostgresError(
            f"cannot create the drill's scratch database on {server.redacted()}:"
            f" {first_line(str(exc))}; the role needs CREATEDB"
        ) from None
    say(f"created scratch database {name!r} on {server.redacted()}")
    conn = server.with_database(name)
    on_server = _Scratch(
        conn,
        DrillTarget(
            kind="server", server_version=version, host_hash=server.host_hash(), database=name
        ),
        None,
        time.monotonic() - started,
    )
    try:
        yield on_server
    finally:
        if options.keep:
            on_server.kept = f"scratch database kept: {conn.redacted()}"
        else:
            catalog.drop_database(server, name)


def _discard(cluster: Cluster) -> None:
    """Stop the drill's cluster and delete its folder without waiting for the deletion: the
    drill's result is known, and deleting a restored database's files takes a while."""
    cluster.stop()
    folders = [cluster.data_dir.parent]
    if not cluster.socket_dir.is_relative_to(folders[0]):
        folders.append(cluster.socket_dir)
    try:
        # the shell starts rm in the background and returns: rm outlives bika if need be
        subprocess.run(
            ["/bin/sh", "-c", 'rm -rf -- "$@" &', "sh", *map(str, folders)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
            check=True,
            timeout=30,
        )
    except (OSError, subprocess.SubprocessError):
        cluster.remove()


def _keep(cluster: Cluster, workdir: Path | None) -> str:
    """Leave a stopped drill cluster behind (out of the scratch folder, which goes when bika
    does), with what it takes to start and enter it."""
    folder = Path(tempfile.mkdtemp(prefix="bika-drill-", dir=workdir)).resolve()
    cluster.move(folder)
    secret = folder / "superuser-password"
    secret.write_text(f"{cluster.password}\n")
    secret.chmod(0o600)
    as_user = f" as OS user {cluster.os_user.pw_name}" if cluster.os_user else ""
    return (
        f"kept the stopped drill cluster in {folder}: start it with 'pg_ctl -D"
        f" {cluster.data_dir} -l {cluster.log_path} start'{as_user}, connect to database"
        f" {SCRATCH_DATABASE} on 127.0.0.1:{cluster.port} as postgres (password in {secret});"
        f" delete the folder when done"
    )


def _available_extensions(conn: ConnInfo) -> set[str]:
    with conn.connect() as db:
        rows = db.execute("SELECT name FROM pg_available_extensions").fetchall()
    return {str(r[0]) for r in rows}


def _database_size(conn: ConnInfo) -> int | None:
    with suppress(BikaError), conn.connect() as db:
        row = db.execute("SELECT pg_database_size(current_database())").fetchone()
        return int(row[0]) if row else None
    return None


# -- roles -------------------------------------------------------------------------------


def _prepare_roles(
    repo: Repository,
    manifest: Manifest,
    identities: list[object],
    scratch: _Scratch,
    toc: ArchiveToc,
    bin_dir: Path,
    findings: _Findings,
) -> Literal["restored", "skipped"]:
    """Create the backup's roles in a throwaway cluster so ownership and grants restore too;
    "skipped" (restore with --no-owner) where that cannot be done."""
    owners = sorted({e.owner for e in toc.entries if e.owner})
    if scratch.cluster is None:
        findings.notes.append(
            "ownership and privileges were not restored: the drill leaves a --target server's"
            " roles alone (restored with --no-owner --no-privileges)"
        )
        return "skipped"
    globals_ = manifest.artifacts.get("globals")
    if globals_ is None:
        findings.notes.append(
            "the backup holds no roles (" + (manifest.roles.detail or "not saved") + "):"
            " restored with --no-owner --no-privileges"
        )
        return "skipped"
    failed = _restore_roles(repo, manifest, identities, scratch.cluster, bin_dir)
    with scratch.conn.connect() as db:
        present = {str(r[0]) for r in db.execute("SELECT rolname FROM pg_roles").fetchall()}
    absent = [o for o in owners if o not in present]
    if failed or absent:
        why = failed or f"role(s) {', '.join(absent[:4])} missing after it"
        findings.notes.append(
            f"the backup's roles could not all be created ({why}): restored with --no-owner"
            " --no-privileges"
        )
        return "skipped"
    return "restored"


def _restore_roles(
    repo: Repository,
    manifest: Manifest,
    identities: list[object],
    cluster: Cluster,
    bin_dir: Path,
) -> str | None:
    """Run the globals script (roles) in the cluster; the first unexpected error, if any."""
    artifact = manifest.artifacts["globals"]
    if artifact.plain_size > ROLES_LIMIT:
        return f"the roles script is {artifact.plain_size} bytes"
    plain = BytesIO()
    with repo.storage.open(artifact.key) as source:
        decode(source, plain, identities, name=f"{manifest.id}/globals")
    script = without_role(plain.getvalue(), cluster.superuser)
    if manifest.profile == "supabase":  # its roles artifact holds the custom roles only
        script = pg_supabase.platform_roles_sql().encode() + script
    psql = binaries.tool("psql", bin_dir)
    conn = ConnInfo.parse(cluster.url("postgres"))
    conninfo, env = conn.libpq_args()
    argv = [str(psql), "--no-psqlrc", "--quiet", f"--dbname={conninfo}", "--file=-"]
    with run(argv, conn=conn, env=env, stdin=True, stdout=False) as child:
        with suppress(BrokenPipeError):
            child.stdin.write(script)
            child.stdin.close()
        code = child.wait()
        errors = [
            line.split("ERROR:", 1)[1].strip()
            for line in child.stderr_text().splitlines()
            if "ERROR:" in line and "already exists" not in line
        ]
    if errors:
        return errors[0]
    return None if code == 0 else f"psql exit code {code}"


def without_role(script: bytes, role: str) -> bytes:
    """The roles script minus the statements about the role the drill connects as: the
    source's own settings for it (NOSUPERUSER on a managed service) would lock bika out."""
    names = {role.encode(), b'"' + role.encode() + b'"'}
    kept = []
    for line in script.splitlines(keepends=True):
        words = line.split()
        about_role = len(words) >= 3 and words[0] in (b"CREATE", b"ALTER") and words[1] == b"ROLE"
        if about_role and words[2].rstrip(b";") in names:
            continue
        kept.append(line)
    return b"".join(kept)


# -- restoring ---------------------------------------------------------------------------


def _restore(
    repo: Repository,
    manifest: Manifest,
    identities: list[object],
    scratch: _Scratch,
    options: DrillOptions,
    jobs: int,
    owners: str,
    skipped: dict[int, str],
    toc: ArchiveToc,
    progress: Progress | None,
    copy: ArchiveCopy | None,
) -> str | None:
    """Run the restore, leaving out what needs a missing extension; its error, if any."""
    try:
        restore_options = RestoreOptions(
            jobs=jobs,
            no_owner=owners != "restored",
            pg_bin_dir=options.pg_bin_dir,
            temp_dir=options.workdir,
            archive_file=copy.path() if copy is not None else None,
        )
        plan = plan_restore(repo, manifest, scratch.conn, identities, restore_options, toc)
        if skipped:
            names = {e.dump_id: e for e in toc.entries}
            left_out = [
                (e, f"needs extension {skipped[e.dump_id]}")
                for e in plan.selection.entries
                if e.dump_id in skipped
            ]
            plan.selection = replace(
                plan.selection,
                entries=[e for e in plan.selection.entries if e.dump_id not in skipped],
                use_list=True,
                left_out=plan.selection.left_out + left_out,
            )
            missing = {names[i].tag for i in skipped if names[i].desc == "EXTENSION"}
            plan.findings = [
                f
                for f in plan.findings
                if not (
                    f.check == "extensions" and any(f"extension {m} " in f.message for m in missing)
                )
            ]
        # the drill counts and hashes every table itself: skip the restore's own count(*)
        plan.tables = []
        restore_backup(
            repo, manifest, scratch.conn, identities, restore_options, progress, plan=plan
        )
    except RestoreFailed as exc:
        return f"the restore reported errors: {exc}"
    except (RestoreError, IntegrityError, DumpError) as exc:
        return f"the restore failed: {exc}"
    return None


# -- reading tables as they load ----------------------------------------------------------

# How often the drill looks for tables whose rows pg_restore has committed.
LOAD_POLL_SECONDS = 0.2
# Post-data steps that lock their table against readers (ACCESS EXCLUSIVE): a table is read
# during the restore only once they are done, so that pg_restore never waits for the drill.
# Index builds, foreign keys and triggers take weaker locks that reading does not block.
BLOCKING_KINDS = frozenset({"CONSTRAINT", "CHECK CONSTRAINT", "RULE", "POLICY", "ROW SECURITY"})

Table = tuple[str, str]
Step = tuple[str, tuple[str, str]]
"""A catalog kind (see _CATALOG) and the (schema, tag) it holds once the step is done."""


def loaded_tables(
    first_seen: dict[Table, int], storage: Iterable[tuple[str, str, int]], waiting: Iterable[Table]
) -> list[Table]:
    """The tables of `waiting` (in its order) whose rows a parallel pg_restore has committed,
    given each table's storage (pg_class.relfilenode) now; `first_seen` keeps the storage each
    table had when first seen.

    A parallel pg_restore loads a table it created in one transaction that starts with
    TRUNCATE, which gives the table new storage: storage other than at first sight means the
    load committed, and nothing in a restore changes a table's rows after that. A table loaded
    before it was first seen, or loaded another way (--single-transaction, load via partition
    root), never looks loaded here: it is read once the restore is over."""
    now = {(schema, name): node for schema, name, node in storage}
    done = []
    for table in waiting:
        node = now.get(table)
        if node is None:
            continue
        if table not in first_seen:
            first_seen[table] = node
        elif node != first_seen[table]:
            done.append(table)
    return done


def blocking_steps(
    entries: Sequence[TocEntry], tables: Iterable[Table], skipped: dict[int, str]
) -> dict[Table, set[Step]]:
    """For each table, the archive's post-data steps that will lock it against readers."""
    steps: dict[Table, set[Step]] = {table: set() for table in tables}
    created = {e.dump_id: (e.namespace or "", e.tag) for e in entries if e.desc == "TABLE"}
    for entry in entries:
        if entry.desc not in BLOCKING_KINDS or entry.dump_id in skipped:
            continue
        for dependency in entry.dependencies:
            table = created.get(dependency)
            if table in steps:
                steps[table].add((_KINDS[entry.desc], (entry.namespace or "", entry.tag)))
    return steps


def unblocked(
    tables: Iterable[Table], steps: dict[Table, set[Step]], present: dict[str, set[tuple[str, str]]]
) -> list[Table]:
    """The tables whose blocking steps are all done (their objects `present`)."""
    return [
        table
        for table in tables
        if all(key in present.get(kind, ()) for kind, key in steps.get(table, ()))
    ]


class LoadWatcher:
    """Hands each table to `on_loaded` once pg_restore has committed its rows and taken its
    last lock that would wait for a reader, so it is read while pg_restore goes on with
    indexes and other tables. Best effort: a table it does not hand over is read after the
    restore."""

    def __init__(
        self,
        conn: ConnInfo,
        tables: Sequence[Table],
        on_loaded: Callable[[list[Table]], None],
        *,
        steps: dict[Table, set[Step]] | None = None,
        enabled: bool = True,
    ) -> None:
        self._conn = conn
        self._waiting = list(tables)
        self._on_loaded = on_loaded
        self._steps = steps or {}
        self._enabled = enabled and bool(tables)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True, name="bika-drill-loads")
        self.first_seen: dict[Table, int] = {}
        """Each table's storage when first seen."""
        self.added: set[Table] = set()
        """The tables handed over."""

    def __enter__(self) -> LoadWatcher:
        if self._enabled:
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._enabled:
            self._thread.join()

    def _watch(self) -> None:
        loaded: list[Table] = []
        with suppress(Exception), self._conn.connect(autocommit=True) as db:
            while self._waiting and not self._stop.is_set():
                rows = db.execute(
                    "SELECT n.nspname, c.relname, c.relfilenode FROM pg_class c"
                    " JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.relkind = 'r'"
                    " AND n.nspname NOT IN ('pg_catalog', 'information_schema')"
                ).fetchall()
                storage = [(str(s), str(n), int(f)) for s, n, f in rows]
                unseen = [t for t in self._waiting if t not in loaded]
                loaded += loaded_tables(self.first_seen, storage, unseen)
                kinds = {kind for table in loaded for kind, _ in self._steps.get(table, ())}
                present = {
                    kind: {(str(s), str(t)) for s, t in db.execute(_CATALOG[kind]).fetchall()}
                    for kind in kinds
                }
                for table in unblocked(loaded, self._steps, present):
                    loaded.remove(table)
                    self._waiting.remove(table)
                    self._on_loaded([table])
                    self.added.add(table)
                self._stop.wait(LOAD_POLL_SECONDS)


# -- comparing ---------------------------------------------------------------------------


def _tables_to_check(
    manifest: Manifest, toc: ArchiveToc, skipped: dict[int, str], findings: _Findings
) -> list[tuple[str, str]]:
    """The manifest's tables to fingerprint, biggest first; those needing a missing extension
    are recorded as skipped instead."""
    data_entries = {(e.namespace or "", e.tag): e for e in toc.entries if e.desc == "TABLE DATA"}
    check = []
    for table in manifest.tables:
        key = (table.schema_, table.name)
        entry = data_entries.get(key)
        if entry is not None and entry.dump_id in skipped:
            findings.tables.append(
                TableResult(
                    schema=table.schema_,
                    name=table.name,
                    status="skipped",
                    expected_rows=table.rows,
                    expected_sha256=table.sha256,
                    detail=f"needs extension {skipped[entry.dump_id]}, missing on the drill server",
                )
            )
            continue
        check.append((key, table.bytes))
    return fingerprint.table_order(check)


def _output_settings(manifest: Manifest, findings: _Findings) -> dict[str, str]:
    settings = dict(manifest.source.output_settings)
    if not settings:
        findings.notes.append(
            "the backup did not record its session's TimeZone, bytea_output and lc_monetary:"
            " the drill server's were used (timestamptz, bytea or money columns may differ if"
            " the source's were other)"
        )
    return settings


def _judge_tables(
    manifest: Manifest, report: fingerprint.FingerprintReport, findings: _Findings
) -> None:
    findings.notes.extend(report.notes)
    for table in manifest.tables:
        got = report.tables.get((table.schema_, table.name))
        if got is None:
            continue
        result = table_result(
            table.schema_, table.name, table.rows, table.sha256, got.rows, got.sha256, got.problem
        )
        if result.status != "ok":
            findings.tables.append(result)
            findings.problems.append(f"table {result.qualified}: {result.detail}")


def _judge_left_out(
    conn: ConnInfo, manifest: Manifest, toc: ArchiveToc, findings: _Findings
) -> None:
    """The tables the backup's scope kept without their rows must come back empty (one that
    does not come back at all is a missing TABLE, found with the schema)."""
    tables = {(e.namespace or "", e.tag) for e in toc.entries if e.desc == "TABLE"}
    left_out = [
        (t.schema_, t.name)
        for t in manifest.scope.tables_without_data
        if (t.schema_, t.name) in tables
    ]
    if not left_out:
        return
    for (schema, name), rows in catalog.exact_rows(conn, left_out).items():
        if rows:
            result = TableResult(
                schema=schema,
                name=name,
                status="differs",
                expected_rows=0,
                rows=rows,
                expected_sha256="",
                detail=f"{rows} rows restored, none in the backup (its scope left them out)",
            )
            findings.tables.append(result)
            findings.problems.append(f"table {result.qualified}: {result.detail}")
    findings.notes.append(
        f"the backup's scope left the rows of {len(left_out)} table(s) out on purpose"
        f" ({', '.join(f'{s}.{n}' for s, n in left_out)}): restored empty"
    )


def table_result(
    schema: str,
    name: str,
    expected_rows: int,
    expected_sha256: str,
    rows: int,
    sha256: str,
    problem: str | None,
) -> TableResult:
    """Compare one table's recomputed fingerprint with the manifest's, saying what differs."""
    status: Literal["ok", "differs", "missing", "unreadable"] = "ok"
    detail = ""
    got_rows: int | None = rows
    got_sha: str | None = sha256
    if problem == "does not exist":
        status, detail, got_rows, got_sha = "missing", "not in the restored database", None, None
    elif problem is not None:
        status, detail, got_rows, got_sha = "unreadable", f"COPY failed: {problem}", None, None
    elif rows != expected_rows:
        status = "differs"
        detail = f"{rows} rows restored, {expected_rows} in the backup"
    elif sha256 != expected_sha256:
        status = "differs"
        detail = (
            f"same {rows} rows but different content (sha256 {sha256[:12]}…, the backup's"
            f" {expected_sha256[:12]}…)"
        )
    return TableResult(
        schema=schema,
        name=name,
        status=status,
        expected_rows=expected_rows,
        rows=got_rows,
        expected_sha256=expected_sha256,
        sha256=got_sha,
        detail=detail,
    )


# How each kind of TOC entry is found in the restored catalog: (schema, tag) pairs, with the
# tag built the way pg_dump builds it ("table constraint", "function(argument types)").
_CATALOG: dict[str, str] = {
    "SCHEMA": "SELECT '', nspname FROM pg_namespace",
    "EXTENSION": "SELECT '', extname FROM pg_extension",
    "TYPE": "SELECT n.nspname, t.typname FROM pg_type t"
    " JOIN pg_namespace n ON n.oid = t.typnamespace",
    "FUNCTION": "SELECT n.nspname, p.proname || '(' || CASE WHEN p.prokind = 'a'"
    " AND p.pronargs = 0 THEN '*' ELSE pg_catalog.oidvectortypes(p.proargtypes) END || ')'"
    " FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace",
    "RELATION": "SELECT n.nspname, c.relname FROM pg_class c"
    " JOIN pg_namespace n ON n.oid = c.relnamespace",
    "CONSTRAINT": "SELECT n.nspname, coalesce(c.relname, t.typname) || ' ' || k.conname"
    " FROM pg_constraint k LEFT JOIN pg_class c ON c.oid = k.conrelid"
    " LEFT JOIN pg_type t ON t.oid = k.contypid"
    " JOIN pg_namespace n ON n.oid = k.connamespace",
    "TRIGGER": "SELECT n.nspname, c.relname || ' ' || g.tgname FROM pg_trigger g"
    " JOIN pg_class c ON c.oid = g.tgrelid JOIN pg_namespace n ON n.oid = c.relnamespace"
    " WHERE NOT g.tgisinternal",
    "POLICY": "SELECT n.nspname, c.relname || ' ' || p.polname FROM pg_policy p"
    " JOIN pg_class c ON c.oid = p.polrelid JOIN pg_namespace n ON n.oid = c.relnamespace",
    "ROW SECURITY": "SELECT n.nspname, c.relname FROM pg_class c"
    " JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.relrowsecurity",
    "RULE": "SELECT n.nspname, c.relname || ' ' || r.rulename FROM pg_rewrite r"
    " JOIN pg_class c ON c.oid = r.ev_class JOIN pg_namespace n ON n.oid = c.relnamespace"
    " WHERE r.rulename <> '_RETURN'",
    "MATERIALIZED VIEW DATA": "SELECT n.nspname, c.relname FROM pg_class c"
    " JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.relkind = 'm' AND c.relispopulated",
    "TABLE ATTACH": "SELECT n.nspname, c.relname FROM pg_class c"
    " JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.relispartition",
}
_KINDS: dict[str, str] = {
    "SCHEMA": "SCHEMA",
    "EXTENSION": "EXTENSION",
    "TYPE": "TYPE",
    "DOMAIN": "TYPE",
    "FUNCTION": "FUNCTION",
    "PROCEDURE": "FUNCTION",
    "AGGREGATE": "FUNCTION",
    "TABLE": "RELATION",
    "FOREIGN TABLE": "RELATION",
    "VIEW": "RELATION",
    "MATERIALIZED VIEW": "RELATION",
    "SEQUENCE": "RELATION",
    "INDEX": "RELATION",
    "CONSTRAINT": "CONSTRAINT",
    "FK CONSTRAINT": "CONSTRAINT",
    "CHECK CONSTRAINT": "CONSTRAINT",
    "TRIGGER": "TRIGGER",
    "POLICY": "POLICY",
    "ROW SECURITY": "ROW SECURITY",
    "RULE": "RULE",
    "MATERIALIZED VIEW DATA": "MATERIALIZED VIEW DATA",
    "TABLE ATTACH": "TABLE ATTACH",
}
# Compared by other means (rows and hashes, large object count, sequence values) or
# settings of pg_restore's session rather than objects.
_COMPARED_ELSEWHERE = frozenset(
    {
        "SEQUENCE SET",
        "TABLE DATA",
        "BLOB",
        "BLOBS",
        "BLOB METADATA",
        "ENCODING",
        "STDSTRINGS",
        "SEARCHPATH",
        "DATABASE",
        "DATABASE PROPERTIES",
    }
)
_SETVAL = re.compile(r"setval\('((?:[^']|'')+)',\s*(-?\d+),\s*(true|false)\)")


def _compare_schema(
    conn: ConnInfo,
    manifest: Manifest,
    toc: ArchiveToc,
    skipped: dict[int, str],
    findings: _Findings,
) -> None:
    with conn.connect(autocommit=True) as db:
        # names in signatures are qualified the way pg_dump's were: relative to an empty path
        db.execute("SELECT pg_catalog.set_config('search_path', '', false)")
        catalog = {
            kind: {(str(s), str(t)) for s, t in db.execute(query).fetchall()}
            for kind, query in _CATALOG.items()
        }
        objects, problems, checked = compare_objects(
            toc.entries, catalog, skipped, lambda name: _sequence_state(db, name)
        )
        large_objects = db.execute("SELECT count(*) FROM pg_largeobject_metadata").fetchone()
    findings.objects += objects
    findings.problems += problems
    findings.objects_checked = checked
    restored = int(large_objects[0]) if large_objects else 0
    if restored != manifest.large_objects.count:
        findings.problems.append(
            f"large objects: {restored} restored, {manifest.large_objects.count} in the backup"
        )
    others: dict[str, int] = {}
    for entry in toc.entries:
        if entry.desc not in _KINDS and entry.desc not in _COMPARED_ELSEWHERE:
            others[entry.desc] = others.get(entry.desc, 0) + 1
    if others:
        listed = ", ".join(f"{n} {kind}" for kind, n in sorted(others.items()))
        findings.notes.append(f"entries of kinds the drill does not compare: {listed}")


def compare_objects(
    entries: Sequence[TocEntry],
    present: dict[str, set[tuple[str, str]]],
    skipped: dict[int, str],
    sequence_state: Callable[[str], tuple[int, bool] | None],
) -> tuple[list[ObjectResult], list[str], int]:
    """The TOC's objects against those present in the restored database: (objects missing,
    differing or skipped; problems; how many were compared)."""
    objects: list[ObjectResult] = []
    problems: list[str] = []
    checked = 0
    for entry in entries:
        kind = _KINDS.get(entry.desc)
        if kind is None and entry.desc != "SEQUENCE SET":
            continue
        schema = entry.namespace or None
        if entry.dump_id in skipped:
            objects.append(_object(entry, "skipped", f"needs extension {skipped[entry.dump_id]}"))
            continue
        checked += 1
        if entry.desc == "SEQUENCE SET":
            problem = _sequence_problem(entry, sequence_state)
            if problem is not None:
                objects.append(
                    _object(entry, "differs" if "value" in problem else "missing", problem)
                )
                problems.append(f"sequence {schema}.{entry.tag}: {problem}")
            continue
        assert kind is not None
        key = ("" if kind in ("SCHEMA", "EXTENSION") else entry.namespace or "", entry.tag)
        if key not in present.get(kind, set()):
            what = {
                "MATERIALIZED VIEW DATA": "not populated",
                "TABLE ATTACH": "not attached to its parent",
                "ROW SECURITY": "row level security not enabled",
            }.get(entry.desc, "missing")
            objects.append(_object(entry, "missing", what))
            problems.append(f"{entry.name}: {what} in the restored database")
    return objects, problems, checked


def _object(
    entry: TocEntry, status: Literal["missing", "differs", "skipped"], detail: str
) -> ObjectResult:
    return ObjectResult(
        kind=entry.desc,
        schema=entry.namespace or None,
        name=entry.tag,
        status=status,
        detail=detail,
    )


def _sequence_problem(
    entry: TocEntry, state: Callable[[str], tuple[int, bool] | None]
) -> str | None:
    match = _SETVAL.search(entry.defn or "")
    if match is None:
        return None  # an archive entry bika cannot read: nothing to compare against
    name = match.group(1).replace("''", "'")
    expected = (int(match.group(2)), match.group(3) == "true")
    got = state(name)
    if got is None:
        return "missing"
    if got != expected:
        return (
            f"value {got[0]} (is_called {str(got[1]).lower()}), the backup set {expected[0]}"
            f" (is_called {str(expected[1]).lower()})"
        )
    return None


def _sequence_state(db: Any, qualified: str) -> tuple[int, bool] | None:
    row = db.execute(
        "SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid ="
        " c.relnamespace WHERE c.oid = pg_catalog.to_regclass(%s) AND c.relkind = 'S'",
        (qualified,),
    ).fetchone()
    if row is None:
        return None
    value = db.execute(
        sql.SQL("SELECT last_value, is_called FROM {}").format(sql.Identifier(row[0], row[1]))
    ).fetchone()
    return (int(value[0]), bool(value[1])) if value else None


def _explain_skipped(
    toc: ArchiveToc,
    missing_extensions: list[str],
    skipped: dict[int, str],
    scratch: _Scratch,
    findings: _Findings,
) -> None:
    if not missing_extensions:
        return
    by_id = {e.dump_id: e for e in toc.entries}
    for extension in missing_extensions:
        needing = [
            by_id[i]
            for i, ext in skipped.items()
            if ext == extension and by_id[i].desc != "EXTENSION"
        ]
        shown = ", ".join(e.name for e in needing[:6])
        more = f" and {len(needing) - 6} more" if len(needing) > 6 else ""
        findings.notes.append(
            f"extension {extension} is not available on the drill server (PostgreSQL"
            f" {scratch.target.server_version}, {scratch.target.kind}): not restored, and"
            f" {len(needing)} object(s) that need it were skipped"
            + (f": {shown}{more}" if needing else "")
            + "; drill on a server that has it (--target) to check them"
        )
