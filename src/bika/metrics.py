"""Prometheus metrics of a repository's state, from the same history `bika check` judges.

Names follow Prometheus conventions (base units, `_seconds`, `_bytes`, `_total`); one gauge per
database where it matters. Served by the daemon or written as a node_exporter textfile.
"""

from __future__ import annotations

from collections.abc import Sequence
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


def registry(repositories: Sequence[tuple[str, History, list[Finding]]]) -> CollectorRegistry:
    """A fresh registry holding the metrics of one check of each repository (a daemon may watch
    several): every series carries its `repository` label, so their names never clash."""
    reg = CollectorRegistry()
    per_database = ["repository", "database"]

    def gauge(name: str, text: str, labels: list[str]) -> Gauge:
        return Gauge(name, text, labels, registry=reg)

    last_success = gauge(
        "bika_last_success_timestamp_seconds",
        "When the newest backup finished (Unix time)",
        per_database,
    )
    duration = gauge(
        "bika_last_backup_duration_seconds", "How long the newest backup took", per_database
    )
    stored = gauge(
        "bika_last_backup_stored_bytes", "Stored (compressed, encrypted) size", per_database
    )
    plain = gauge("bika_last_backup_plain_bytes", "Dumped (plaintext) size", per_database)
    tables = gauge("bika_last_backup_tables", "Tables in the newest backup", per_database)
    rows = gauge("bika_last_backup_rows", "Exact rows in the newest backup", per_database)
    count = gauge("bika_backups", "Backups in the repository", per_database)
    drill_time = gauge(
        "bika_last_drill_timestamp_seconds", "When the newest drill finished", ["repository"]
    )
    drill_passed = gauge("bika_last_drill_passed", "1 if the newest drill passed", ["repository"])
    drill_rto = gauge(
        "bika_last_drill_restore_seconds", "Restore time of the newest drill (RTO)", ["repository"]
    )
    runs = Counter(
        "bika_runs",
        "Runs in the run log, by command and outcome",
        ["repository", "command", "outcome"],
        registry=reg,
    )
    by_level = gauge("bika_findings", "Findings of the check, by level", ["repository", "level"])
    for repo, history, findings in repositories:
        newest: dict[str, Manifest] = {}
        for manifest in history.manifests:
            name = manifest.source.database
            count.labels(repo, name).inc()
            if name not in newest or manifest.finished_at > newest[name].finished_at:
                newest[name] = manifest
        for name, m in newest.items():
            last_success.labels(repo, name).set(m.finished_at.timestamp())
            duration.labels(repo, name).set((m.finished_at - m.started_at).total_seconds())
            stored.labels(repo, name).set(m.stored_size)
            plain.labels(repo, name).set(m.plain_size)
            tables.labels(repo, name).set(len(m.tables))
            rows.labels(repo, name).set(m.total_rows)
        if history.drills:
            drill = max(history.drills, key=lambda d: d.finished_at)
            drill_time.labels(repo).set(drill.finished_at.timestamp())
            drill_passed.labels(repo).set(1 if drill.passed else 0)
            drill_rto.labels(repo).set(drill.restore_seconds)
        for run in history.runs:
            runs.labels(repo, run.command, "ok" if run.ok else "failed").inc()
        for level in ("ok", "info", "warn", "error", "unknown"):
            by_level.labels(repo, level).set(sum(1 for f in findings if f.level == level))
    return reg


def write_textfile(
    folder: Path, repository: str, history: History, findings: list[Finding]
) -> Path:
    """node_exporter's textfile collector reads FOLDER/bika.prom; written atomically."""
    path = folder / "bika.prom"
    write_to_textfile(str(path), registry([(repository, history, findings)]))
    return path
