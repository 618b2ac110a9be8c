"""Monitoring rules: what `bika check` concludes from manifests, drill records and run events.

Pure functions over plain values (no I/O): every rule returns at least one Finding, an "ok" one
when it found nothing wrong, so a report shows what was checked as well as what failed.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from bika.findings import Finding, Level
from bika.repository.drills import DrillRecord
from bika.repository.manifest import Manifest
from bika.repository.physical import PhysicalDrill
from bika.supabase.api import PlatformBackups
from bika.supabase.secrets import compare
from bika.units import size, timestamp
from bika.wal.inventory import WalState

# a median absolute deviation times this estimates the standard deviation of normal data
_MAD_TO_SIGMA = 1.4826


@dataclass(frozen=True)
class Thresholds:
    """[check] in bika.toml; the defaults are the backup procedure's."""

    max_age: timedelta = timedelta(hours=25)
    drill_max_age: timedelta = timedelta(days=35)
    size_window: int = 10
    """How many earlier backups of the same database make "usual"."""
    size_min_history: int = 3
    """Fewer earlier backups than this: no size judgement yet."""
    size_k: float = 3.0
    """The band is the median ± size_k standard deviations (estimated from the MAD) …"""
    size_min_band: float = 0.10
    """… and at least ± this share of the median, so identical sizes do not make a zero band."""
    row_drop: float = 0.20
    """A table that lost more than this share of its rows since the previous backup."""
    row_drop_min_rows: int = 100
    """Tables smaller than this before are not judged (a few rows come and go)."""
    copy_grace: timedelta = timedelta(hours=2)
    """A backup younger than this may still be on its way to the second repository."""
    platform_max_age: timedelta = timedelta(hours=24)
    """The Supabase platform's own newest completed backup may be this old (it is daily)."""


@dataclass(frozen=True)
class RunEvent:
    """One run of the run log, as monitoring reads it."""

    time: datetime
    command: str
    ok: bool
    error: str = ""
    backup_ids: tuple[str, ...] = ()
    database: str | None = None
    status: str | None = None
    """check runs: the state they found (OK, WARNING, CRITICAL, UNKNOWN)."""


@dataclass(frozen=True)
class History:
    """Everything the rules look at, read from the repository (and its copy) by the caller."""

    now: datetime
    manifests: Sequence[Manifest]
    """Oldest first."""
    drills: Sequence[DrillRecord] = ()
    runs: Sequence[RunEvent] = ()
    """Oldest first."""
    damaged: Sequence[tuple[str, str]] = ()
    """Backups whose manifest cannot be read: (id, why)."""
    copy_url: str | None = None
    copy_ids: frozenset[str] | None = None
    """The second repository's backups; None when none is configured."""
    retention_overdue: Sequence[tuple[str, str]] | None = None
    """Backups the retention policy would drop, (id, rule); None when no policy was given."""
    missing_roles: Sequence[str] = ()
    """Weeks and months inside their retention window that no backup stands for."""
    platform: PlatformBackups | None = None
    """The Supabase platform's own backups of the project; None when no token is configured."""
    thresholds: Thresholds = field(default_factory=Thresholds)
    escrow_recipient: str | None = None
    """The offline escrow key's age1… recipient every backup must be readable by; None: not
    configured."""
    wal: WalState | None = None
    """The WAL archive and physical backups; None when the repository has neither."""
    physical_drills: Sequence[PhysicalDrill] = ()
    """The newest drill of each physical backup."""


Rule = Callable[[History], list[Finding]]


def last_status(history: History) -> str | None:
    """The state the newest recorded `bika check` found, which notifications compare with."""
    checks = [r for r in history.runs if r.command == "check" and r.status]
    return max(checks, key=lambda r: r.time).status if checks else None


def evaluate(history: History) -> list[Finding]:
    """Every rule's findings, in the order of RULES."""
    return [finding for rule in RULES for finding in rule(history)]


def _source(manifest: Manifest) -> str:
    return f"{manifest.source.database}@{manifest.source.host_hash[:8]}"


def _by_source(manifests: Sequence[Manifest]) -> dict[str, list[Manifest]]:
    groups: dict[str, list[Manifest]] = {}
    for manifest in manifests:
        groups.setdefault(_source(manifest), []).append(manifest)
    return groups


def _age(delta: timedelta) -> str:
    hours = delta.total_seconds() / 3600
    return f"{hours:.1f} h" if hours < 48 else f"{hours / 24:.1f} days"


def _when(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def freshness(history: History) -> list[Finding]:
    """No successful backup within max_age (per database), or none at all: critical.

    Logical backups are judged per database; the physical ones (one cluster per repository)
    apart, by the newest point they can recover to. Each kind answers for itself: a repository
    with both gets both findings, so a stopped dump schedule is not hidden by WAL archiving."""
    limit = history.thresholds.max_age
    physical = _physical_freshness(history)
    if not history.manifests and physical:
        return physical
    if not history.manifests:
        return [
            Finding(
                "error",
                "freshness",
                "the repository holds no backups",
                fix="bika backup",
                facts={"backups": 0},
            )
        ]
    findings = []
    for source, manifests in _by_source(history.manifests).items():
        newest = max(manifests, key=lambda m: m.finished_at)
        age = history.now - newest.finished_at
        facts = {"database": source, "newest": newest.id, "age_seconds": int(age.total_seconds())}
        if age > limit:
            findings.append(
                Finding(
                    "error",
                    "freshness",
                    f"the newest backup of {source} is {_age(age)} old (at most {_age(limit)})",
                    fix="bika backup; and check the scheduler that should have run it",
                    facts=facts,
                )
            )
        else:
            findings.append(
                Finding(
                    "ok", "freshness", f"newest backup of {source} {_age(age)} old", facts=facts
                )
            )
    return findings + physical


def _physical_freshness(history: History) -> list[Finding]:
    """The newest recoverable point of the physical backups: the end of the WAL archived
    without a gap after a base backup whose own WAL is all there (or that backup's finish
    time, when later). An idle server writes no WAL, so a daily base backup keeps it fresh."""
    state = history.wal
    if state is None or not state.backups:
        return []
    limit = history.thresholds.max_age
    points = [
        (max(b.finished_at, b.reach.last_archived_at or b.finished_at), b)
        for b in state.backups
        if b.consistent
    ]
    if not points:
        newest = state.backups[-1]
        return [
            Finding(
                "error",
                "freshness",
                f"no physical backup can be recovered: the WAL of {newest.backup_id}"
                f" ({newest.stop_segment}) is not all archived",
                fix="check archive_command and pg_stat_archiver, then bika backup --physical",
                facts={"database": "physical", "newest": newest.backup_id},
            )
        ]
    point, backup = max(points, key=lambda p: p[0])
    age = history.now - point
    facts = {
        "database": "physical",
        "newest": backup.backup_id,
        "recoverable_to": timestamp(point),
        "age_seconds": int(age.total_seconds()),
    }
    if age > limit:
        return [
            Finding(
                "error",
                "freshness",
                f"the newest recoverable point of the physical backups is {_age(age)} old"
                f" ({_when(point)}, from {backup.backup_id}; at most {_age(limit)})",
                fix="check WAL archiving (bika wal status, pg_stat_archiver) and schedule"
                " bika backup --physical",
                facts=facts,
            )
        ]
    return [
        Finding(
            "ok",
            "freshness",
            f"physical backups recoverable to {_when(point)} ({_age(age)} ago,"
            f" from {backup.backup_id})",
            facts=facts,
        )
    ]


def last_run(history: History) -> list[Finding]:
    """The newest backup run failed, and no backup succeeded after it: critical."""
    backups = [r for r in history.runs if r.command == "backup"]
    if not backups:
        return [Finding("ok", "last-run", "no backup run recorded in the run log")]
    newest = max(backups, key=lambda r: r.time)
    facts = {"time": timestamp(newest.time), "ok": newest.ok, "error": newest.error}
    if newest.ok:
        return [Finding("ok", "last-run", f"the last backup run succeeded at {_when(newest.time)}")]
    succeeded_since = any(m.finished_at > newest.time for m in history.manifests) or any(
        b.finished_at > newest.time for b in (history.wal.backups if history.wal else ())
    )
    if succeeded_since:
        return [
            Finding("ok", "last-run", "a backup succeeded after the last failed run", facts=facts)
        ]
    return [
        Finding(
            "error",
            "last-run",
            f"the last backup run failed at {_when(newest.time)}: {newest.error or 'no message'}",
            fix="fix the cause, then bika backup",
            facts=facts,
        )
    ]


def _band(values: list[int], thresholds: Thresholds) -> tuple[float, float]:
    median = statistics.median(values)
    mad = statistics.median(abs(v - median) for v in values)
    half = max(thresholds.size_k * _MAD_TO_SIGMA * mad, thresholds.size_min_band * median)
    return median - half, median + half


def sizes(history: History) -> list[Finding]:
    """The newest backup's sizes (plaintext and stored) and table count outside the usual band
    of the same database's recent backups: warning."""
    t = history.thresholds
    findings: list[Finding] = []
    for source, manifests in _by_source(history.manifests).items():
        *earlier, newest = manifests
        earlier = earlier[-t.size_window :]
        if len(earlier) < t.size_min_history:
            findings.append(
                Finding(
                    "ok",
                    "size",
                    f"{source}: {len(earlier)} earlier backups, too few to judge sizes",
                )
            )
            continue
        measures: list[tuple[str, Callable[[Manifest], int], Callable[[float], str]]] = [
            ("dumped size", lambda m: m.plain_size, lambda v: size(int(v))),
            ("stored size", lambda m: m.stored_size, lambda v: size(int(v))),
            ("table count", lambda m: len(m.tables), lambda v: f"{v:.0f}"),
        ]
        odd = []
        for name, measure, shown in measures:
            low, high = _band([measure(m) for m in earlier], t)
            value = measure(newest)
            if not low <= value <= high:
                odd.append(
                    Finding(
                        "warn",
                        "size",
                        f"{newest.id}: {name} {shown(value)}, usually"
                        f" {shown(max(low, 0))}–{shown(high)} ({source})",
                        fix=f"bika show {newest.id}; compare with the database itself",
                        facts={
                            "backup": newest.id,
                            "measure": name,
                            "value": value,
                            "low": max(low, 0),
                            "high": high,
                        },
                    )
                )
        findings.extend(
            odd
            or [Finding("ok", "size", f"{source}: sizes within the usual band of recent backups")]
        )
    return findings


def rows(history: History) -> list[Finding]:
    """A table that disappeared, or lost more than row_drop of its rows, since the previous
    backup of the same database: warning (data loss upstream shows here first)."""
    t = history.thresholds
    findings: list[Finding] = []
    for source, manifests in _by_source(history.manifests).items():
        if len(manifests) < 2:
            continue
        previous, newest = manifests[-2], manifests[-1]
        now = {table.qualified: table.rows for table in newest.tables}
        # rows the newest backup left out on purpose are not lost rows
        left_out = {table.qualified for table in newest.scope.tables_without_data}
        rescoped = newest.scope.options() != previous.scope.options()
        for table in previous.tables:
            name = table.qualified
            facts = {"backup": newest.id, "previous": previous.id, "table": name}
            if name in left_out:
                continue
            if name not in now and rescoped:
                findings.append(
                    Finding(
                        "info",
                        "rows",
                        f"table {name} of {source} is in {previous.id} but not in {newest.id},"
                        f" whose scope differs ({' '.join(newest.scope.options()) or 'whole'})",
                        facts=facts,
                    )
                )
            elif name not in now:
                findings.append(
                    Finding(
                        "warn",
                        "rows",
                        f"table {name} of {source} is in {previous.id} but not in {newest.id}",
                        fix="check whether the table was dropped on purpose",
                        facts=facts,
                    )
                )
            elif table.rows >= t.row_drop_min_rows and now[name] < table.rows * (1 - t.row_drop):
                findings.append(
                    Finding(
                        "warn",
                        "rows",
                        f"table {name} of {source} fell from {table.rows:,} to {now[name]:,} rows"
                        f" ({1 - now[name] / table.rows:.0%}) since {previous.id}",
                        fix=f"check the database; {previous.id} still holds the rows",
                        facts={**facts, "before": table.rows, "after": now[name]},
                    )
                )
    return findings or [Finding("ok", "rows", "no table disappeared or lost rows sharply")]


def drills(history: History) -> list[Finding]:
    """No passed drill within drill_max_age: warning; the newest drill failed: critical.

    Logical and physical drills prove different backups, so each kind is judged by its own:
    a repository holding only physical backups is not told to drill a logical one."""
    physical = _physical_drills(history)
    if physical and not history.manifests and not history.drills:
        return physical
    return _logical_drills(history) + physical


def _physical_drills(history: History) -> list[Finding]:
    if history.wal is None or not history.wal.backups:
        return []
    limit = history.thresholds.drill_max_age
    if not history.physical_drills:
        return [
            Finding(
                "warn",
                "drill",
                "no physical backup has ever been drilled: nothing proves a point-in-time"
                " restore works",
                fix="bika drill --physical",
            )
        ]
    newest = max(history.physical_drills, key=lambda d: d.finished_at)
    facts = {"backup": newest.backup_id, "time": timestamp(newest.finished_at), "physical": True}
    if not newest.passed:
        why = newest.problems[0] if newest.problems else "see bika show"
        return [
            Finding(
                "error",
                "drill",
                f"the newest physical drill ({newest.backup_id}, {_when(newest.finished_at)})"
                f" failed: {why}",
                fix=f"bika show {newest.backup_id}; then bika drill --physical again",
                facts=facts,
            )
        ]
    if history.now - newest.finished_at > limit:
        return [
            Finding(
                "warn",
                "drill",
                f"no physical drill passed within {limit.days} days (last pass:"
                f" {_when(newest.finished_at)})",
                fix="bika drill --physical",
                facts=facts,
            )
        ]
    return [
        Finding(
            "ok",
            "drill",
            f"the newest physical drill passed ({newest.backup_id}, RTO"
            f" {newest.rto_seconds:.0f} s)",
            facts=facts,
        )
    ]


def _logical_drills(history: History) -> list[Finding]:
    limit = history.thresholds.drill_max_age
    if not history.drills:
        return [
            Finding(
                "warn",
                "drill",
                "no backup has ever been drilled: nothing proves a restore works",
                fix="bika drill latest",
            )
        ]
    newest = max(history.drills, key=lambda d: d.finished_at)
    facts = {
        "backup": newest.backup_id,
        "time": timestamp(newest.finished_at),
        "passed": newest.passed,
    }
    findings = []
    if not newest.passed:
        why = newest.problems[0] if newest.problems else "see bika show"
        findings.append(
            Finding(
                "error",
                "drill",
                f"the newest drill ({newest.backup_id}, {_when(newest.finished_at)}) failed: {why}",
                fix=f"bika show {newest.backup_id}; then bika drill again",
                facts=facts,
            )
        )
    passed = [d for d in history.drills if d.passed]
    last_pass = max((d.finished_at for d in passed), default=None)
    if last_pass is None or history.now - last_pass > limit:
        since = f"since {_when(last_pass)}" if last_pass else "ever"
        findings.append(
            Finding(
                "warn",
                "drill",
                f"no drill passed within {limit.days} days (last pass: {since})",
                fix="bika drill latest",
                facts={"last_pass": timestamp(last_pass) if last_pass else None},
            )
        )
    if not findings:
        findings.append(
            Finding(
                "ok",
                "drill",
                f"the newest drill passed ({newest.backup_id}, RTO {newest.restore_seconds:.0f} s)",
                facts=facts,
            )
        )
    return findings


def copies(history: History) -> list[Finding]:
    """The second repository lacks backups the first has (older than copy_grace): warning."""
    if history.copy_ids is None:
        return []
    due = [
        m for m in history.manifests if history.now - m.finished_at > history.thresholds.copy_grace
    ]
    missing = [m.id for m in due if m.id not in history.copy_ids]
    where = history.copy_url or "the second repository"
    if not missing:
        return [Finding("ok", "copy", f"every backup is also in {where}")]
    return [
        Finding(
            "warn",
            "copy",
            f"{len(missing)} backup(s) are not in {where}, newest {missing[-1]}",
            fix="bika copy",
            facts={"missing": missing},
        )
    ]


def retention(history: History) -> list[Finding]:
    """Backups the retention policy would have dropped are still there, or a week or month in
    its window has no backup to be its weekly/monthly: warning."""
    if history.retention_overdue is None:
        return []
    findings = []
    if history.retention_overdue:
        ids = [backup_id for backup_id, _ in history.retention_overdue]
        findings.append(
            Finding(
                "warn",
                "retention",
                f"{len(ids)} backup(s) are older than the retention policy keeps, oldest {ids[0]}",
                fix="bika prune --dry-run, then bika prune",
                facts={"overdue": ids},
            )
        )
    if history.missing_roles:
        gaps = list(history.missing_roles)
        findings.append(
            Finding(
                "warn",
                "retention",
                f"no backup stands for {', '.join(gaps[:3])}"
                + (f" and {len(gaps) - 3} more" if len(gaps) > 3 else "")
                + " (no backup was taken then)",
                fix="check the schedule; a week or month without a backup has no weekly/monthly",
                facts={"missing": gaps},
            )
        )
    return findings or [Finding("ok", "retention", "what the repository holds follows the policy")]


def damaged(history: History) -> list[Finding]:
    """Backups whose manifest cannot be read: critical (the backup cannot be restored)."""
    return [
        Finding(
            "error",
            "damaged",
            f"backup {backup_id} cannot be read: {why}",
            fix=f"bika verify {backup_id}",
            facts={"backup": backup_id},
        )
        for backup_id, why in history.damaged
    ]


def escrow(history: History) -> list[Finding]:
    """The newest backup of a database is not encrypted to the escrow recipient (from its
    manifest's recipients): warning, since the key kept in a safe would not open it."""
    recipient = (history.escrow_recipient or "").strip()
    if not recipient:
        return []
    short = f"{recipient[:12]}…"
    findings = []
    for source, group in sorted(_by_source(history.manifests).items()):
        newest = group[-1]
        if newest.recipients is not None and recipient in newest.recipients:
            continue
        why = (
            "is not encrypted to"
            if newest.recipients is not None
            else "does not record its recipients (made before bika did), so may not be readable by"
        )
        findings.append(
            Finding(
                "warn",
                "escrow",
                f"the newest backup of {source}, {newest.id}, {why} the escrow recipient {short}",
                fix=f"bika key add {recipient}, then bika rekey {newest.id} (or --all)",
                facts={"backup": newest.id, "database": source},
            )
        )
    if findings or not history.manifests:
        return findings
    return [Finding("ok", "escrow", f"the newest backups are readable by the escrow key {short}")]


def secrets(history: History) -> list[Finding]:
    """The newest backup's secrets inventory against the previous one of the same database:
    a value that changed is noted, a name that is gone (or was not set) warns. Only names and
    keyed hashes are compared; no value is in a manifest."""
    findings: list[Finding] = []
    for source, manifests in _by_source(history.manifests).items():
        kept = [m for m in manifests if m.secrets is not None]
        if not kept:
            continue
        newest = kept[-1]
        after = newest.secrets
        assert after is not None
        before = kept[-2].secrets if len(kept) > 1 else None
        previous = kept[-2].id if len(kept) > 1 else None
        same_key = before is not None and before.key_id == after.key_id
        old = [(e.name, e.hash if same_key else "") for e in before.entries] if before else []
        new = [(e.name, e.hash if same_key else "") for e in after.entries]
        changes = compare(old, new, after.unset)
        facts = {"database": source, "backup": newest.id, "previous": previous}
        for change in changes:
            if change.kind == "changed":
                findings.append(
                    Finding(
                        "info",
                        "secrets",
                        f"{change.name} changed since backup {previous}",
                        fix="expected after a rotation; otherwise find out who changed it",
                        facts={**facts, "name": change.name},
                    )
                )
            elif change.kind in ("missing", "unset"):
                findings.append(
                    Finding(
                        "warn",
                        "secrets",
                        f"{change.name} missing from the last backup ({newest.id})"
                        + (": not set when it ran" if change.kind == "unset" else ""),
                        fix="set it where backups run, or drop it from [secrets]",
                        facts={**facts, "name": change.name},
                    )
                )
        if before is not None and not same_key:
            findings.append(
                Finding(
                    "info",
                    "secrets",
                    f"values of {newest.id} not compared with {previous}: the inventory key"
                    " changed (another host, or [secrets] inventory_key)",
                    facts=facts,
                )
            )
        if not any(f.facts.get("database") == source for f in findings):
            findings.append(
                Finding(
                    "ok",
                    "secrets",
                    f"{len(after.entries)} secrets of {source} in the newest backup",
                    facts=facts,
                )
            )
    return findings


def platform(history: History) -> list[Finding]:
    """The Supabase platform's own newest completed backup (or PITR point) older than
    platform_max_age warns; none at all warns too (the free plan has none)."""
    found = history.platform
    if found is None:
        return []
    limit = history.thresholds.platform_max_age
    newest = found.newest_completed()
    facts: dict[str, object] = {
        "project_ref": found.project_ref,
        "pitr_enabled": found.pitr_enabled,
        "newest": timestamp(newest) if newest else None,
    }
    if newest is None:
        return [
            Finding(
                "warn",
                "platform",
                f"Supabase holds no completed backup of project {found.project_ref}",
                fix="daily platform backups need a paid plan; bika's own backups are then the"
                " only ones",
                facts=facts,
            )
        ]
    age = history.now - newest
    if age > limit:
        return [
            Finding(
                "warn",
                "platform",
                f"the newest completed Supabase backup of {found.project_ref} is {_age(age)}"
                f" old (at most {_age(limit)})",
                fix="see the project's Database → Backups page and the Supabase status page",
                facts=facts,
            )
        ]
    return [
        Finding(
            "ok",
            "platform",
            f"Supabase's newest backup of {found.project_ref} is {_age(age)} old",
            facts=facts,
        )
    ]


def wal_gaps(history: History) -> list[Finding]:
    """Point-in-time recovery: a segment missing after the newest base backup makes every
    later point unrecoverable (critical); after an older one, only that backup's window."""
    state = history.wal
    if state is None or not state.backups:
        return []
    newest = state.backups[-1]
    findings = []
    for reach in state.backups:
        problem = reach.gap or (None if reach.consistent else reach.stop_segment)
        if problem is None:
            continue
        level: Level = "error" if reach is newest else "warn"
        until = _when(reach.reach.last_archived_at) if reach.reach.last_archived_at else None
        findings.append(
            Finding(
                level,
                "wal",
                f"WAL segment {problem} is missing from the archive after physical backup"
                f" {reach.backup_id}: "
                + (f"recoverable only up to {until}" if until else "it cannot be recovered"),
                fix="find out why archiving failed (pg_stat_archiver), then take a new base"
                " backup: bika backup --physical",
                facts={"backup_id": reach.backup_id, "missing_segment": problem},
            )
        )
    if not findings:
        end = newest.reach.last_archived_at
        findings.append(
            Finding(
                "ok",
                "wal",
                f"WAL archived without a gap from physical backup {newest.backup_id} to"
                f" {newest.reach.last}" + (f" ({_when(end)})" if end else ""),
                facts={"backup_id": newest.backup_id, "last_segment": newest.reach.last},
            )
        )
    return findings


RULES: tuple[Rule, ...] = (
    freshness,
    last_run,
    sizes,
    rows,
    drills,
    copies,
    retention,
    damaged,
    escrow,
    secrets,
    platform,
    wal_gaps,
)
