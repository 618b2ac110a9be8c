"""Prometheus metrics of a repository's state, from the same history `bika check` judges.

Names follow Prometheus conventions (base units, `_seconds`, `_bytes`, `_total`); one gauge per
database where it matters. Served by the daemon or written as a node_exporter textfile.
"""

from __future__ import annotations

from pathlib import Path

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    disable_created_metrics,
    write_to_textfile,
)

from bika.findings import Finding
from bika.monitor import History
from bika.repository.manifest import Manifest

# counters here are recounted from the run log at each check: a _created series means nothing
disable_created_metrics()  # type: ignore[no-untyped-call]


def registry(history: History, findings: list[Finding]) -> CollectorRegistry:
    """A fresh registry holding the metrics of one check."""
    reg = CollectorRegistry()
    labels = ["database"]
    last_success = Gauge(
        "bika_last_success_timestamp_seconds",
        "When the newest backup finished (Unix time)",
        labels,
        registry=reg,
    )
    duration = Gauge(
        "bika_last_backup_duration_seconds", "How long the newest backup took", labels, registry=reg
    )
    stored = Gauge(
        "bika_last_backup_stored_bytes", "Stored (compressed, encrypted) size", labels, registry=reg
    )
    plain = Gauge("bika_last_backup_plain_bytes", "Dumped (plaintext) size", labels, registry=reg)
    tables = Gauge("bika_last_backup_tables", "Tables in the newest backup", labels, registry=reg)
    rows = Gauge("bika_last_backup_rows", "Exact rows in the newest backup", labels, registry=reg)
    count = Gauge("bika_backups", "Backups in the repository", labels, registry=reg)
    newest: dict[str, Manifest] = {}
    for manifest in history.manifests:
        name = manifest.source.database
        count.labels(name).inc()
        if name not in newest or manifest.finished_at > newest[name].finished_at:
            newest[name] = manifest
    for name, m in newest.items():
        last_success.labels(name).set(m.finished_at.timestamp())
        duration.labels(name).set((m.finished_at - m.started_at).total_seconds())
        stored.labels(name).set(m.stored_size)
        plain.labels(name).set(m.plain_size)
        tables.labels(name).set(len(m.tables))
        rows.labels(name).set(m.total_rows)
    drill_time = Gauge(
        "bika_last_drill_timestamp_seconds", "When the newest drill finished", registry=reg
    )
    drill_passed = Gauge("bika_last_drill_passed", "1 if the newest drill passed", registry=reg)
    drill_rto = Gauge(
        "bika_last_drill_restore_seconds", "Restore time of the newest drill (RTO)", registry=reg
    )
    if history.drills:
        drill = max(history.drills, key=lambda d: d.finished_at)
        drill_time.set(drill.finished_at.timestamp())
        drill_passed.set(1 if drill.passed else 0)
        drill_rto.set(drill.restore_seconds)
    runs = Counter(
        "bika_runs",
        "Runs in the run log, by command and outcome",
        ["command", "outcome"],
        registry=reg,
    )
    for run in history.runs:
        runs.labels(run.command, "ok" if run.ok else "failed").inc()
    by_level = Gauge("bika_findings", "Findings of the check, by level", ["level"], registry=reg)
    for level in ("ok", "info", "warn", "error", "unknown"):
        by_level.labels(level).set(sum(1 for f in findings if f.level == level))
    return reg


def write_textfile(folder: Path, history: History, findings: list[Finding]) -> Path:
    """node_exporter's textfile collector reads FOLDER/bika.prom; written atomically."""
    path = folder / "bika.prom"
    write_to_textfile(str(path), registry(history, findings))
    return path
