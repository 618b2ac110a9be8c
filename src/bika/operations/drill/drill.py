"""Restore drills: restore a backup into a scratch database and prove every byte came back.

Each table's exact rows and content hash are recomputed and compared with the manifest, the
schema is compared with the archive's table of contents, and the result is kept in drills/.
The steps: scratch.py (where), roles.py (owners), the restore operation, watch.py (reading
tables as they load), compare.py (the verdict).
"""

from __future__ import annotations

import contextlib
import os
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path

import bika
from bika.errors import (
    DumpError,
    IdentityError,
    IntegrityError,
    ObjectNotFound,
    RestoreError,
    RestoreFailed,
)
from bika.operations.drill.compare import (
    DrillFindings,
    compare_schema,
    explain_skipped,
    judge_left_out,
    judge_tables,
    output_settings,
    tables_to_check,
)
from bika.operations.drill.roles import Owners, prepare_roles
from bika.operations.drill.scratch import Say, Scratch, scratch_database
from bika.operations.drill.watch import LoadWatcher, blocking_steps
from bika.operations.restore import RestoreOptions, exclude_entries, plan_restore, restore_backup
from bika.operations.stored_archive import ArchiveCopy, StoredArchive
from bika.postgres import binaries, catalog, fingerprint
from bika.postgres.archive import ArchiveToc
from bika.postgres.connection import ConnInfo
from bika.postgres.toc import dependents, dump_encoding
from bika.repository import Manifest, Repository
from bika.repository.drills import DrillRecord, DrillTarget, record_drill
from bika.stream import Progress


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


# What makes a backup unreadable for a drill: a failed drill, not an error of the drill.
_UNREADABLE = (DumpError, IntegrityError, IdentityError, ObjectNotFound)


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
    drill = _Drill(
        repo,
        manifest,
        identities,
        options,
        say or (lambda _: None),
        progress,
        binaries.find_bin_dir(options.pg_bin_dir),
    )
    return drill.run()


@dataclass
class _DrillTimings:
    """What a drill measured on its way, besides its findings."""

    owners: Owners = "skipped"
    missing_extensions: list[str] = field(default_factory=list)
    roles_seconds: float = 0.0
    restore_seconds: float = 0.0
    verify_seconds: float = 0.0
    report: fingerprint.FingerprintReport | None = None
    restored_size: int | None = None


@dataclass
class _Drill:
    """One drill under way: the backup it reads, how, and what it has found so far."""

    repo: Repository
    manifest: Manifest
    identities: list[object]
    options: DrillOptions
    say: Say
    progress: Progress | None
    bin_dir: Path
    findings: DrillFindings = field(default_factory=DrillFindings)
    started: datetime = field(default_factory=lambda: datetime.now(UTC))

    def run(self) -> DrillOutcome:
        pg_restore_version = binaries.tool_version(binaries.tool("pg_restore", self.bin_dir))
        archive = StoredArchive.of(self.repo, self.manifest, self.identities)
        try:
            archive.check_identity()
        except _UNREADABLE as exc:
            # nothing was restored: still a drill, and a failed one (list must not keep an old ✓)
            self.findings.problems.append(f"the backup cannot be read: {exc}")
            target = self.options.target
            drill_target = DrillTarget(
                kind="embedded" if target is None else "server",
                server_version="not started",
                host_hash=ConnInfo.parse(target).host_hash() if target else None,
                database="",
            )
            nowhere = Scratch(ConnInfo.parse("postgresql:///"), drill_target, None, 0.0)
            return self._outcome(pg_restore_version, nowhere, _DrillTimings())
        jobs = self.options.jobs or max(1, min(4, os.cpu_count() or 1))
        self.options = replace(self.options, jobs=jobs)
        with contextlib.ExitStack() as stack:
            copy = None
            if jobs > 1:
                # pg_restore --jobs reads a decrypted copy: made while the server starts
                copy = stack.enter_context(
                    ArchiveCopy(archive, self.options.workdir, self.progress)
                )
            scratch = stack.enter_context(
                scratch_database(
                    self.options.target,
                    keep=self.options.keep,
                    workdir=self.options.workdir,
                    jobs=jobs,
                    say=self.say,
                )
            )
            try:
                timings = self._restore_and_compare(scratch, archive.read_toc(), copy)
            except _UNREADABLE as exc:
                self.findings.problems.append(f"the backup cannot be read: {exc}")
                timings = _DrillTimings()
            timings.restored_size = catalog.size_if_known(scratch.conn)
        return self._outcome(pg_restore_version, scratch, timings)

    def _restore_and_compare(
        self, scratch: Scratch, toc: ArchiveToc, copy: ArchiveCopy | None
    ) -> _DrillTimings:
        manifest, options, findings = self.manifest, self.options, self.findings
        timings = _DrillTimings()
        roles_started = time.monotonic()
        timings.owners = prepare_roles(
            self.repo,
            manifest,
            self.identities,
            scratch.conn,
            scratch.cluster,
            toc,
            self.bin_dir,
            findings.notes,
        )
        timings.roles_seconds = time.monotonic() - roles_started
        available = catalog.available_extensions(scratch.conn)
        timings.missing_extensions = sorted(
            e.tag for e in toc.entries if e.desc == "EXTENSION" and e.tag not in available
        )
        skipped = dependents(toc.entries, timings.missing_extensions)
        if manifest.profile == "supabase":
            # the platform's event triggers call functions in schemas a backup of a project
            # leaves out (extensions); the project has its own
            platform = {e.dump_id: "" for e in toc.entries if e.desc == "EVENT TRIGGER"}
            skipped.update(platform)
            if platform:
                findings.notes.append(
                    f"{len(platform)} event trigger(s) of the Supabase platform not restored:"
                    " their functions are in schemas the backup leaves out"
                )
        jobs = options.jobs
        self.say(
            f"restoring {manifest.id} into {scratch.target.kind} PostgreSQL"
            f" {scratch.target.server_version} ({jobs} job{'s' if jobs > 1 else ''})"
        )
        check = tables_to_check(manifest, toc, skipped, findings)
        with fingerprint.Fingerprinter(
            scratch.conn,
            encoding=dump_encoding(toc.entries),
            settings=output_settings(manifest, findings),
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
                restore_error = self._restore(scratch, toc, timings.owners, skipped, copy)
                timings.restore_seconds = time.monotonic() - restore_started
            if copy is not None and restore_error is None and not copy.matches:
                # restored all the same: the table comparison names what differs
                findings.problems.append(str(copy.archive.mismatch()))
            if restore_error is not None:
                findings.problems.append(restore_error)
            if options.before_verify is not None:
                options.before_verify(scratch.conn)

            self.say(
                "comparing every table's rows and content hash, and the schema, with the backup"
            )
            verify_started = time.monotonic()
            fingerprinter.add([t for t in check if t not in watcher.added])
            timings.report = fingerprinter.finish()
        judge_tables(manifest, timings.report, findings)
        judge_left_out(scratch.conn, manifest, toc, findings)
        compare_schema(scratch.conn, manifest, toc, skipped, findings)
        timings.verify_seconds = time.monotonic() - verify_started
        explain_skipped(toc, timings.missing_extensions, skipped, scratch.target, findings)
        return timings

    def _restore(
        self,
        scratch: Scratch,
        toc: ArchiveToc,
        owners: Owners,
        skipped: dict[int, str],
        copy: ArchiveCopy | None,
    ) -> str | None:
        """Run the restore, leaving out what needs a missing extension; its error, if any."""
        try:
            restore_options = RestoreOptions(
                jobs=self.options.jobs,
                no_owner=owners != "restored",
                pg_bin_dir=self.options.pg_bin_dir,
                temp_dir=self.options.workdir,
                archive_file=copy.path() if copy is not None else None,
            )
            plan = plan_restore(
                self.repo, self.manifest, scratch.conn, self.identities, restore_options, toc
            )
            by_extension: dict[str, list[int]] = defaultdict(list)
            for entry in plan.selection.entries:
                if entry.dump_id in skipped:
                    by_extension[skipped[entry.dump_id]].append(entry.dump_id)
            for extension, ids in sorted(by_extension.items()):
                why = f"needs extension {extension}" if extension else "the Supabase platform's"
                plan = exclude_entries(plan, ids, why)
            # the drill counts and hashes every table itself: skip the restore's own count(*)
            plan.tables = []
            restore_backup(
                self.repo,
                self.manifest,
                scratch.conn,
                self.identities,
                restore_options,
                self.progress,
                plan=plan,
            )
        except RestoreFailed as exc:
            return f"the restore reported errors: {exc}"
        except (RestoreError, IntegrityError, DumpError) as exc:
            return f"the restore failed: {exc}"
        return None

    def _outcome(
        self, pg_restore_version: str, scratch: Scratch, timings: _DrillTimings
    ) -> DrillOutcome:
        report = timings.report
        findings = self.findings
        record = DrillRecord(
            backup_id=self.manifest.id,
            repository_id=self.repo.id,
            passed=not findings.problems,
            started_at=self.started,
            finished_at=datetime.now(UTC),
            target=scratch.target,
            tools={
                "bika": bika.__version__,
                "pg_restore": pg_restore_version,
                "server": scratch.target.server_version,
            },
            setup_seconds=round(scratch.seconds + timings.roles_seconds, 3),
            restore_seconds=round(timings.restore_seconds, 3),
            verify_seconds=round(timings.verify_seconds, 3),
            restored_size=timings.restored_size,
            owners=timings.owners,
            tables_checked=sum(1 for t in report.tables.values() if t.problem is None)
            if report
            else 0,
            rows_checked=report.rows if report else 0,
            bytes_hashed=report.size if report else 0,
            objects_checked=findings.objects_checked,
            tables=findings.tables,
            objects=findings.objects,
            missing_extensions=timings.missing_extensions,
            problems=findings.problems,
            notes=findings.notes,
        )
        key = record_drill(self.repo, record) if self.options.record else None
        return DrillOutcome(record, key, scratch.kept)
