"""The backup procedure's weekly checklist, each box ticked or not from facts, with the evidence.

Pure: built from the History and Findings `bika check` computes; rendered as text or Markdown,
ready to paste into a compliance record.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from html import escape

from bika.findings import Finding
from bika.monitor import History
from bika.report import chart
from bika.units import size

MONTH = timedelta(days=31)


@dataclass(frozen=True)
class Item:
    text: str
    """The procedure's own words."""
    ticked: bool
    evidence: str


def _of(findings: list[Finding], what: str) -> list[Finding]:
    return [f for f in findings if f.what == what]


def _clean(findings: list[Finding]) -> bool:
    return all(f.level in ("ok", "info") for f in findings)


def _when(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M UTC")


def checklist(history: History, findings: list[Finding]) -> list[Item]:
    """The five boxes of the procedure's weekly checklist."""
    items = []
    fresh = _of(findings, "freshness") + _of(findings, "last-run")
    newest = max(history.manifests, key=lambda m: m.finished_at, default=None)
    week = [m for m in history.manifests if history.now - m.finished_at <= timedelta(days=7)]
    running = (
        f"{len(week)} backups in the last 7 days; newest {newest.id} at {_when(newest.finished_at)}"
        if newest
        else "no backup at all"
    )
    items.append(
        Item("Verify automated backups are running", _clean(fresh) and bool(week), running)
    )
    sizes = _of(findings, "size") + _of(findings, "rows")
    if week:
        low, high = min(m.plain_size for m in week), max(m.plain_size for m in week)
        band = f"dumped {size(low)}–{size(high)} over the last 7 days"
    else:
        band = "no backup in the last 7 days"
    odd = [f.message for f in sizes if f.level not in ("ok", "info")]
    items.append(
        Item(
            "Check backup sizes (should be consistent)",
            _clean(sizes) and bool(week),
            "; ".join([band, *odd]),
        )
    )
    drills = [d for d in history.drills if history.now - d.finished_at <= MONTH]
    passed = [d for d in drills if d.passed]
    if passed:
        last = max(passed, key=lambda d: d.finished_at)
        proof = (
            f"drill of {last.backup_id} passed {_when(last.finished_at)}: {last.tables_checked}"
            f" tables, {last.rows_checked:,} rows compared, restore {last.restore_seconds:.0f} s"
        )
    else:
        proof = "no drill passed in the last 31 days: run bika drill latest"
    items.append(
        Item(
            "Test backup restoration (monthly)",
            bool(passed) and _clean(_of(findings, "drill")),
            proof,
        )
    )
    copies = _of(findings, "copy")
    if history.copy_ids is None:
        copy_text = "no second repository configured ([copy] to); bika copy makes one"
    else:
        copy_text = "; ".join(f.message for f in copies) or "second repository checked"
    items.append(
        Item(
            "Verify cloud storage backups exist",
            history.copy_ids is not None and _clean(copies),
            copy_text,
        )
    )
    retention = _of(findings, "retention")
    if history.retention_overdue is None:
        policy = "no retention policy evaluated"
    else:
        policy = "; ".join(f.message for f in retention)
    items.append(
        Item(
            "Review backup retention policy",
            history.retention_overdue is not None and _clean(retention),
            policy,
        )
    )
    return items


def markdown(items: list[Item], repository: str, now: datetime) -> str:
    lines = [f"## Weekly backup checklist — {repository}", "", f"Checked {_when(now)} by bika.", ""]
    for item in items:
        lines.append(f"- [{'x' if item.ticked else ' '}] {item.text} — {item.evidence}")
    return "\n".join(lines) + "\n"


def html(items: list[Item], repository: str, history: History) -> str:
    """The same checklist as a page, with the plots of backup size and duration over time."""
    ordered = sorted(history.manifests, key=lambda m: m.finished_at)
    boxes = "".join(
        f"<li>{'☑' if item.ticked else '☐'} <b>{escape(item.text)}</b> —"
        f" {escape(item.evidence)}</li>"
        for item in items
    )
    plots = chart(
        "stored size", [(m.finished_at, m.stored_size) for m in ordered], lambda v: size(int(v))
    ) + chart(
        "backup duration",
        [(m.finished_at, (m.finished_at - m.started_at).total_seconds()) for m in ordered],
        lambda v: f"{v:.0f} s",
    )
    title = f"Weekly backup checklist — {escape(repository)}"
    return (
        f'<!doctype html>\n<html lang="en"><head><meta charset="utf-8"><title>{title}</title>'
        "<style>body{font:14px/1.5 system-ui,sans-serif;margin:1.5em}li{list-style:none}"
        "figure{display:inline-block;margin:0 1.5em 1em 0}</style></head><body>"
        f"<h1>{title}</h1><p>Checked {escape(_when(history.now))} by bika.</p>"
        f"<ul>{boxes}</ul>{plots}</body></html>\n"
    )
