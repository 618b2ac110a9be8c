"""The JSON documents `--json` prints, one function per shape; docs/FORMAT.md describes them.

Every document has a top-level "ok"; every time is RFC 3339 UTC to the microsecond with "Z".
Fields are only ever added within format version 1.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from bika.diagnosis import status
from bika.findings import NAGIOS_NAMES, Finding, exit_code, worst
from bika.units import timestamp

# the operations' reports are only annotations here: importing them all (restore, pitr, …)
# would cost every command that prints JSON a tenth of a second
if TYPE_CHECKING:
    from bika.config import SettingRow
    from bika.operations.check import CheckReport
    from bika.operations.copy import CopyReport
    from bika.operations.keys import KeyCheck, RecipientEntry
    from bika.operations.pitr import PhysicalRestore
    from bika.operations.prune import PruneReport
    from bika.operations.rekey import RekeyResult
    from bika.operations.restore import ExportReport, RestoreReport
    from bika.operations.supabase_artifacts import Unpacked
    from bika.operations.supabase_restore import SupabaseRestoreReport
    from bika.operations.verify import Subset, VerifyResult
    from bika.repository import DamagedBackup, Manifest, Repository
    from bika.repository.audit import AuditReport
    from bika.repository.audit import Entry as AuditEntry
    from bika.repository.drills import DrillRecord
    from bika.repository.physical import PhysicalDrill, PhysicalManifest
    from bika.supabase.api import PlatformBackups
    from bika.supabase.project import Difference
    from bika.wal.inventory import WalState

Json = dict[str, Any]


def _plain(value: Any) -> Any:
    """A model's fields as JSON values, times in the one format."""
    if isinstance(value, datetime):
        return timestamp(value)
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def _model(model: BaseModel) -> Json:
    fields: Json = _plain(model.model_dump(mode="python", by_alias=True))
    return fields


def exit_error(code: int, message: str) -> Json:
    """A command that could not finish, as restic prints it (its `exit_error` message)."""
    return {"ok": False, "message_type": "exit_error", "code": code, "message": message}


def drill_summary(record: DrillRecord | None) -> Json | None:
    """A backup's newest drill, in its `list` summary; null when it was never drilled."""
    if record is None:
        return None
    return {
        "passed": record.passed,
        "at": timestamp(record.finished_at),
        "rto_seconds": round(record.restore_seconds, 3),
    }


def backup_summary(manifest: Manifest, drill: DrillRecord | None = None) -> Json:
    """One backup of `list`, and the new backup of `backup`."""
    return {
        "id": manifest.id,
        "kind": manifest.kind,
        "label": manifest.label,
        "started_at": timestamp(manifest.started_at),
        "finished_at": timestamp(manifest.finished_at),
        "duration_seconds": round((manifest.finished_at - manifest.started_at).total_seconds(), 3),
        "database": manifest.source.database,
        "server_version": manifest.source.server_version,
        "pg_dump_version": manifest.source.pg_dump_version,
        "database_size": manifest.source.database_size,
        "stored_size": manifest.stored_size,
        "plain_size": manifest.plain_size,
        "tables": len(manifest.tables),
        "rows": manifest.total_rows,
        "roles": manifest.roles.status,
        "drill": drill_summary(drill),
    }


def list_result(
    repository: Repository,
    manifests: Sequence[Manifest],
    drills: Mapping[str, DrillRecord],
    damaged: Sequence[DamagedBackup] = (),
    physical: Sequence[PhysicalManifest] = (),
    physical_drills: Mapping[str, PhysicalDrill] | None = None,
) -> Json:
    """`bika list --json`: the usable backups, and those whose manifest cannot be used; the
    physical base backups apart (they restore with restore --physical, not by id)."""
    physical_drills = physical_drills or {}
    return {
        "ok": True,
        "repository": repository.url,
        "backups": [backup_summary(m, drills.get(m.id)) for m in manifests],
        "damaged": [{"id": d.backup_id, "reason": d.reason} for d in damaged],
        "physical": [physical_summary(m, physical_drills.get(m.id)) for m in physical],
    }


def physical_summary(manifest: PhysicalManifest, drill: PhysicalDrill | None = None) -> Json:
    """One physical base backup of `list`."""
    base = manifest.artifacts["base"]
    return {
        "id": manifest.id,
        "kind": manifest.kind,
        "physical": True,
        "label": manifest.label,
        "parent": manifest.parent,
        "chain": list(manifest.chain),
        "started_at": timestamp(manifest.started_at),
        "finished_at": timestamp(manifest.finished_at),
        "duration_seconds": round((manifest.finished_at - manifest.started_at).total_seconds(), 3),
        "server_version": manifest.source.server_version,
        "system_identifier": manifest.source.system_identifier,
        "timeline": manifest.wal.timeline,
        "start_lsn": manifest.wal.start_lsn,
        "stop_lsn": manifest.wal.stop_lsn,
        "start_segment": manifest.wal.start_segment,
        "stop_segment": manifest.wal.stop_segment,
        "files": manifest.files,
        "plain_size": base.plain_size,
        "stored_size": sum(a.stored_size for a in manifest.artifacts.values()),
        "drill": None
        if drill is None
        else {
            "passed": drill.passed,
            "at": timestamp(drill.finished_at),
            "rto_seconds": drill.rto_seconds,
            "rpo_seconds": drill.rpo_seconds,
        },
    }


def physical_show_result(manifest: PhysicalManifest, drills: Sequence[PhysicalDrill]) -> Json:
    """`bika show ID` of a physical backup: its manifest as stored, plus its drill records."""
    return {"ok": True, **_model(manifest), "drills": [_model(d) for d in drills]}


def backup_result(repository: Repository, manifest: Manifest) -> Json:
    return {"ok": True, "repository": repository.url, "backup": backup_summary(manifest)}


def physical_backup_result(repository: Repository, manifest: BaseModel) -> Json:
    """`bika backup --physical --json`: the physical manifest as stored (FORMAT.md)."""
    return {"ok": True, "repository": repository.url, "backup": _model(manifest)}


def physical_restore_result(done: PhysicalRestore) -> Json:
    """`bika restore --physical --json`."""
    recovered = done.recovered
    return {
        "ok": True,
        "backup": done.plan.backup.id,
        "data_dir": str(done.data_dir),
        "timeline": done.plan.timeline,
        "target": {
            "time": done.plan.target.time,
            "lsn": done.plan.target.lsn,
            "xid": done.plan.target.xid,
            "latest": done.plan.target.latest,
        },
        "recovered": None
        if recovered is None
        else {
            "timeline": recovered.timeline,
            "last_transaction": recovered.last_transaction,
            "redo_done_at": recovered.redo_done_at,
        },
    }


def wal_status_result(
    repository: Repository, state: WalState | None, findings: Sequence[Finding], now: datetime
) -> Json:
    """`bika wal status --json`."""

    def when(moment: datetime | None) -> str | None:
        return timestamp(moment) if moment is not None else None

    return {
        "ok": exit_code(findings) == 0,
        "repository": repository.url,
        "newest_segment": state.newest_segment if state else None,
        "newest_archived_at": when(state.newest_at) if state else None,
        "rpo_seconds": (now - state.newest_at).total_seconds()
        if state and state.newest_at
        else None,
        "timelines": {
            str(tli): [{"first": a, "last": b, "last_archived_at": when(t)} for a, b, t in runs]
            for tli, runs in (state.timelines.items() if state else ())
        },
        "backups": [
            {
                "id": r.backup_id,
                "timeline": r.timeline,
                "recoverable_from": when(r.finished_at),
                "recoverable_to": when(r.reach.last_archived_at),
                "last_segment": r.reach.last or None,
                "consistent": r.consistent,
                "missing_segment": r.gap or (None if r.consistent else r.stop_segment),
            }
            for r in (state.backups if state else ())
        ],
        "findings": [_check_finding(f) for f in findings],
    }


def physical_drill_result(record: BaseModel) -> Json:
    """`bika drill --physical --json`: the drill record as stored, "ok" when it passed."""
    return {"ok": bool(getattr(record, "passed", False)), **_model(record)}


def show_result(manifest: Manifest, drills: Sequence[DrillRecord]) -> Json:
    """The manifest's own fields, plus the backup's drill records, oldest first."""
    return {"ok": True, **_model(manifest), "drills": [_model(d) for d in drills]}


def drill_result(record: DrillRecord) -> Json:
    """The drill record as stored in drills/, "ok" when it passed."""
    return {"ok": record.passed, **_model(record)}


def init_result(repository: Repository) -> Json:
    return {
        "ok": True,
        "repository": repository.url,
        "id": repository.id,
        "recipients": repository.recipients,
    }


def key_list_result(repository: Repository, entries: Sequence[RecipientEntry]) -> Json:
    return {
        "ok": True,
        "repository": repository.url,
        "recipients": [{"recipient": e.recipient, "fingerprint": e.fingerprint} for e in entries],
    }


def key_check_result(repository: Repository, checks: Sequence[KeyCheck]) -> Json:
    return {
        "ok": all(c.ok for c in checks),
        "repository": repository.url,
        "backups": [
            {
                "id": c.backup_id,
                "ok": c.ok,
                "opens": c.opens,
                "fails": c.fails,
                "problems": c.problems,
            }
            for c in checks
        ],
    }


def rekey_result(repository: Repository, results: Sequence[RekeyResult]) -> Json:
    return {
        "ok": all(r.status != "failed" for r in results),
        "repository": repository.url,
        "recipients": repository.recipients,
        "backups": [
            {
                "id": r.backup_id,
                "status": r.status,
                "detail": r.detail,
                "stored_bytes": r.stored_bytes,
            }
            for r in results
        ],
    }


def verify_result(
    repository: Repository, read_data: bool, subset: Subset | None, results: Iterable[VerifyResult]
) -> Json:
    backups = [
        {
            "id": r.backup_id,
            "ok": r.ok,
            "read": r.read,
            "problems": [{"artifact": p.what, "message": p.message} for p in r.problems],
        }
        for r in results
    ]
    return {
        "ok": all(b["ok"] for b in backups),
        "repository": repository.url,
        "read_data": read_data,
        "read_data_subset": subset.text if subset else None,
        "backups": backups,
    }


def copy_result(report: CopyReport) -> Json:
    return {
        "ok": report.ok,
        "source": report.source,
        "destination": report.destination,
        "backups": [
            {
                "id": r.backup_id,
                "status": r.status,
                "stored_bytes": r.stored_bytes,
                "detail": r.detail,
            }
            for r in report.results
        ],
    }


def doctor_result(sections: Sequence[tuple[str, Sequence[Finding]]], ok: bool) -> Json:
    """Each finding as {scope, name (its what), status (its level; error is "fail"), detail
    (its message), fix}: the shape docs/FORMAT.md promises."""
    return {
        "ok": ok,
        "checks": [
            {
                "scope": scope,
                "name": c.what,
                "status": status(c),
                "detail": c.message,
                "fix": c.fix,
            }
            for scope, checks in sections
            for c in checks
        ],
    }


def _findings(findings: Iterable[Finding]) -> list[Json]:
    # a finding's `what` is "check" in restore's JSON (docs/FORMAT.md)
    return [{"level": f.level, "check": f.what, "message": f.message} for f in findings]


def restore_result(
    manifest: Manifest,
    destination: str,
    findings: Sequence[Finding],
    report: RestoreReport | ExportReport | None,
    dry_run: bool = False,
) -> Json:
    """A restore (report: RestoreReport), a --to-file export (ExportReport), or a plan that
    was only printed (--dry-run) or refused (None): the preflight's findings and, after a
    restore, every table's rows."""
    result: Json = {
        "ok": report is not None or dry_run,
        "backup_id": manifest.id,
        "destination": destination,
        "dry_run": dry_run,
        "preflight": _findings(findings),
        "seconds": None,
        "tables": [],
        "file": None,
    }
    result["ok"] = result["ok"] and not any(f.level == "error" for f in findings)
    from bika.operations.restore import RestoreReport

    if isinstance(report, RestoreReport):
        result["ok"] = result["ok"] and report.ok
        result["seconds"] = round(report.seconds, 3)
        result["tables"] = [
            {
                "table": c.table,
                "expected_rows": c.expected if c.rows_compared else None,
                "rows": c.restored if c.rows_compared else None,
                "exists": c.restored is not None,
                "ok": c.ok,
            }
            for c in report.checks
        ]
    elif isinstance(report, ExportReport):
        result["seconds"] = round(report.seconds, 3)
        result["file"] = {"path": str(report.path), "format": report.format, "size": report.size}
    return result


def _check_finding(f: Finding) -> Json:
    return {"level": f.level, "what": f.what, "message": f.message, "fix": f.fix, "facts": f.facts}


def check_result(report: CheckReport) -> Json:
    """`bika check`: "status" and "exit_code" as Nagios reads them; "ok" when both say OK."""
    code = exit_code(report.findings)
    return {
        "ok": code == 0,
        "status": NAGIOS_NAMES[worst(report.findings)],
        "exit_code": code,
        "repository": report.repository,
        "checked_at": timestamp(report.checked_at),
        "findings": [_check_finding(f) for f in report.findings],
    }


def check_unreachable(repository: str, findings: list[Finding]) -> Json:
    """`bika check` when the repository cannot be read: UNKNOWN (exit 3) with the reason as the
    first finding, or CRITICAL (exit 2) when this host also holds a failed backup run that could
    not be uploaded."""
    return {
        "ok": False,
        "status": NAGIOS_NAMES[worst(findings)],
        "exit_code": exit_code(findings),
        "repository": repository,
        "findings": [_check_finding(f) for f in findings],
    }


def config_result(config_file: Path | None, rows: Iterable[SettingRow]) -> Json:
    """`bika config show`: each setting's value (secrets as ***) and where it came from."""
    return {
        "ok": True,
        "config_file": str(config_file) if config_file else None,
        "settings": [
            {"name": r.name, "value": r.value, "source": r.source, "from": r.detail} for r in rows
        ],
    }


def prune_result(report: PruneReport) -> Json:
    """`bika prune --json`: every backup's verdict, the leftovers, what was freed."""
    return {
        "ok": True,
        "repository": report.repository,
        "now": timestamp(report.now),
        "dry_run": report.dry_run,
        "backups": [
            {
                "id": b.id,
                "kind": b.kind,
                "started_at": timestamp(b.started_at),
                "age_seconds": round(b.age.total_seconds()),
                "keep": b.keep,
                "reason": b.reason,
                "roles": list(b.roles),
                "stored_size": b.stored_size,
            }
            for b in report.backups
        ],
        "leftovers": [{"key": i.key, "size": i.size, "why": i.why} for i in report.leftovers],
        "notes": report.notes,
        "deleted_objects": report.deleted_objects,
        "freed_bytes": report.freed_bytes,
    }


def audit_event(entry: AuditEntry) -> Json:
    """One event of `bika audit list --json`, with what its signature says."""
    event = entry.event
    fields: Json = {"key": entry.key, "sha256": entry.sha256, "signature": entry.signature}
    if event is not None:
        fields.update(
            {
                "command": event.command,
                "outcome": event.outcome,
                "started_at": timestamp(event.started_at),
                "finished_at": timestamp(event.finished_at),
                "user": event.user,
                "host": event.host,
                "backup_ids": list(event.backup_ids),
                "error": event.error,
                "detail": _plain(event.detail),
                "prev": event.prev,
                "merges": list(event.merges),
            }
        )
    return fields


def audit_list_result(
    repository: Repository, since: datetime | None, entries: Sequence[AuditEntry]
) -> Json:
    """`bika audit list --json`: the events, oldest first."""
    return {
        "ok": True,
        "repository": repository.url,
        "since": timestamp(since) if since else None,
        "events": [audit_event(e) for e in entries],
    }


def audit_verify_result(repository: Repository, report: AuditReport) -> Json:
    """`bika audit verify --json`: every problem found, each naming its event."""
    return {
        "ok": report.ok,
        "repository": repository.url,
        "events": len(report.entries),
        "signed": report.count("signed"),
        "unsigned": report.count("unsigned"),
        "problems": [{"key": p.key, "message": p.message} for p in report.problems],
        "notes": list(report.notes),
    }


def supabase_backups_result(backups: PlatformBackups) -> Json:
    """`bika supabase backups --json`: the platform's own backups of one project."""
    newest = backups.newest_completed()
    return {
        "ok": True,
        "project_ref": backups.project_ref,
        "region": backups.region,
        "walg_enabled": backups.walg_enabled,
        "pitr_enabled": backups.pitr_enabled,
        "newest_completed": timestamp(newest) if newest else None,
        "earliest_physical": _plain(backups.earliest_physical),
        "latest_physical": _plain(backups.latest_physical),
        "backups": [
            {
                "id": b.id,
                "type": "physical" if b.physical else "logical",
                "status": b.status,
                "inserted_at": _plain(b.inserted_at),
            }
            for b in backups.backups
        ],
    }


def artifact_restore_result(backup_id: str, unpacked: Unpacked) -> Json:
    """`bika restore ID --artifact functions|env --json`."""
    return {
        "ok": True,
        "backup_id": backup_id,
        "artifact": unpacked.artifact,
        "path": str(unpacked.path),
        "count": unpacked.files,
    }


def supabase_diff_result(
    backup_id: str, stored: Mapping[str, Any], live: Mapping[str, Any], found: Sequence[Difference]
) -> Json:
    """`bika supabase diff ID --json`: what changed in the live project, by name only."""
    return {
        "ok": True,
        "backup_id": backup_id,
        "project_ref": stored.get("project_ref"),
        "backup_taken_at": stored.get("taken_at"),
        "live_taken_at": live.get("taken_at"),
        "differences": [{"part": d.part, "item": d.item, "change": d.change} for d in found],
        "not_compared": sorted({*(stored.get("errors") or {}), *(live.get("errors") or {})}),
    }


def supabase_restore_result(report: SupabaseRestoreReport) -> Json:
    """`bika restore --profile supabase --json`: the roles applied or skipped, the archive
    entries left out and why, the rows restored, and each difference from the source."""
    return {
        "ok": report.ok,
        "backup_id": report.backup_id,
        "destination": report.target,
        "profile": "supabase",
        "replica": report.replica,
        "roles": [{"statement": r.statement, "error": r.error} for r in report.roles],
        "skipped": [{"what": s.what, "why": s.why} for s in report.skipped],
        "platform_entries_left": report.platform,
        "tables": report.tables,
        "rows": report.rows,
        "findings": [
            {"level": f.level, "what": f.what, "message": f.message, "fix": f.fix,
             "facts": f.facts}
            for f in report.findings
        ],
    }  # fmt: skip
