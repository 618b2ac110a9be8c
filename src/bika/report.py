"""The status page: backups, findings, drills and the recoverable window of one repository as
one self-contained HTML page (inline SVG charts, no script, no external resource).

Pure: History and Findings in, text out. Shows no data values and needs no key. Served by
`bika daemon` at / and written once by `bika report --html FILE`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from html import escape

from bika.findings import NAGIOS_NAMES, Finding, worst
from bika.monitor import History
from bika.repository.drills import DrillRecord
from bika.repository.manifest import Manifest
from bika.units import size

_COLOURS = {"ok": "#1a7f37", "info": "#0969da", "warn": "#9a6700", "error": "#cf222e"}
_COLOURS["unknown"] = "#8250df"


def _t(value: object) -> str:
    return escape(str(value), quote=True)


def _when(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M UTC")


def chart(
    title: str, points: Sequence[tuple[datetime, float]], shown: Callable[[float], str]
) -> str:
    """A line chart of values over time, as inline SVG, with its range written beside it."""
    width, height, pad = 360, 90, 6
    if len(points) < 2:
        return f"<figure><figcaption>{_t(title)}: too few backups to plot</figcaption></figure>"
    xs = [p[0].timestamp() for p in points]
    ys = [p[1] for p in points]
    x0, x1 = min(xs), max(xs) or 1
    y0, y1 = min(ys), max(ys)
    span_x, span_y = (x1 - x0) or 1, (y1 - y0) or 1
    coords = " ".join(
        f"{pad + (x - x0) / span_x * (width - 2 * pad):.1f},"
        f"{height - pad - (y - y0) / span_y * (height - 2 * pad):.1f}"
        for x, y in zip(xs, ys, strict=True)
    )
    return (
        f"<figure><figcaption>{_t(title)}: {_t(shown(y0))} – {_t(shown(y1))}</figcaption>"
        f'<svg role="img" aria-label="{_t(title)}" width="{width}" height="{height}"'
        f' viewBox="0 0 {width} {height}"><polyline fill="none" stroke="#0969da"'
        f' stroke-width="2" points="{coords}"/></svg></figure>'
    )


def _row(cells: Sequence[str], tag: str = "td") -> str:
    return "<tr>" + "".join(f"<{tag}>{cell}</{tag}>" for cell in cells) + "</tr>"


def page(repositories: Sequence[tuple[str, History, list[Finding]]]) -> str:
    """The whole page: one section per repository (a daemon may watch several), under the worst
    status of them all."""
    level = worst([f for _, _, findings in repositories for f in findings])
    names = [name for name, _, _ in repositories]
    title = names[0] if len(names) == 1 else f"{len(names)} repositories"
    sections = "".join(_section(n, i, h, f) for i, (n, h, f) in enumerate(repositories))
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>bika — {_t(title)}</title>
<style>
body {{ font: 14px/1.4 system-ui, sans-serif; margin: 1.5em; color: #1f2328; }}
table {{ border-collapse: collapse; margin: .5em 0 1.5em; }}
td, th {{ border-bottom: 1px solid #d0d7de; padding: .25em .6em; text-align: left; }}
figure {{ display: inline-block; margin: 0 1.5em 1em 0; }}
.status {{ font-weight: bold; color: {_COLOURS[level]}; }}
</style></head><body>
<h1>bika: {_t(title)}</h1>
<p class="status" id="status">{_t(NAGIOS_NAMES[level])}</p>
{sections}
</body></html>
"""


def _section(repository: str, index: int, history: History, findings: list[Finding]) -> str:
    """One repository's part of the page; ids carry its index after the first (ids are unique)."""
    level = worst(findings)
    n = f"-{index}" if index else ""
    latest: dict[str, DrillRecord] = {}
    for record in history.drills:
        if (
            record.backup_id not in latest
            or record.finished_at > latest[record.backup_id].finished_at
        ):
            latest[record.backup_id] = record
    backups = sorted(history.manifests, key=lambda m: m.started_at, reverse=True)
    rows = []
    for m in backups:
        drill = latest.get(m.id)
        proven = "never" if drill is None else ("✓" if drill.passed else "✗")
        rto = f"{drill.restore_seconds:.0f} s" if drill else ""
        rows.append(
            _row(
                [
                    _t(m.id),
                    _t(m.kind),
                    _t(_when(m.finished_at)),
                    _t(m.source.database),
                    _t(len(m.tables)),
                    _t(f"{m.total_rows:,}"),
                    _t(size(m.plain_size)),
                    _t(size(m.stored_size)),
                    _t(proven),
                    _t(rto),
                    _t(m.label or ""),
                ]
            )
        )
    found = [
        _row(
            [
                f'<span style="color:{_COLOURS[f.level]}">{_t(NAGIOS_NAMES[f.level])}</span>',
                _t(f.what),
                _t(f.message),
                _t(f.fix if f.level != "ok" else ""),
            ]
        )
        for f in findings
    ]
    drills = [
        _row(
            [
                _t(_when(d.finished_at)),
                _t(d.backup_id),
                "passed" if d.passed else "FAILED",
                _t(f"{d.restore_seconds:.0f} s"),
                _t(d.problems[0] if d.problems else ""),
            ]
        )
        for d in sorted(history.drills, key=lambda d: d.finished_at, reverse=True)
    ]
    oldest = min(history.manifests, key=lambda m: m.finished_at, default=None)
    newest = max(history.manifests, key=lambda m: m.finished_at, default=None)
    window = (
        f"any backup from {_when(oldest.finished_at)} to {_when(newest.finished_at)}"
        f" ({len(history.manifests)} restore points); data written since the newest is not"
        f" in a backup ({(history.now - newest.finished_at).total_seconds() / 3600:.1f} h)"
        if oldest and newest
        else "no backup: nothing can be restored"
    )
    ordered: list[Manifest] = sorted(history.manifests, key=lambda m: m.finished_at)

    def series(measure: Callable[[Manifest], float]) -> list[tuple[datetime, float]]:
        return [(m.finished_at, measure(m)) for m in ordered]

    charts = "".join(
        [
            chart("stored size", series(lambda m: m.stored_size), lambda v: size(int(v))),
            chart(
                "backup duration",
                series(lambda m: (m.finished_at - m.started_at).total_seconds()),
                lambda v: f"{v:.0f} s",
            ),
            chart("total rows", series(lambda m: m.total_rows), lambda v: f"{v:,.0f}"),
        ]
    )
    head = "".join(
        _row([_t(c) for c in cols], "th")
        for cols in [
            (
                "backup",
                "kind",
                "finished",
                "database",
                "tables",
                "rows",
                "dumped",
                "stored",
                "proven",
                "RTO",
                "label",
            )
        ]
    )
    return f"""<section>
<h2>{_t(repository)}: <span style="color:{_COLOURS[level]}">{_t(NAGIOS_NAMES[level])}</span></h2>
<p>Checked {_t(_when(history.now))}. Recoverable: {_t(window)}.</p>
<h3>Findings</h3>
<table id="findings{n}">{"".join(found)}</table>
<h3>Over time</h3>
{charts}
<h3>Backups ({len(backups)})</h3>
<table id="backups{n}">{head}{"".join(rows)}</table>
<h3>Drills ({len(drills)})</h3>
<table id="drills{n}">{"".join(drills)}</table>
</section>
"""
