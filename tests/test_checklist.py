"""The weekly checklist: each box ticked only when the facts support it (pure)."""

from __future__ import annotations

from bika import monitor
from bika.checklist import checklist, html, markdown
from bika.monitor import History

from test_monitor import NOW, daily, drill, manifest


def _items(history: History) -> dict[str, tuple[bool, str]]:
    return {i.text: (i.ticked, i.evidence) for i in checklist(history, monitor.evaluate(history))}


def test_every_box_ticked_with_evidence_on_a_healthy_repository() -> None:
    backups = daily(8)
    history = History(
        NOW,
        backups,
        drills=[drill(backups[-1], 3)],
        copy_ids=frozenset(m.id for m in backups),
        retention_overdue=[],
    )
    items = _items(history)
    assert all(ticked for ticked, _ in items.values()), items
    running = items["Verify automated backups are running"][1]
    assert "7 backups in the last 7 days" in running and backups[-1].id in running
    assert "passed" in items["Test backup restoration (monthly)"][1]
    text = markdown(checklist(history, monitor.evaluate(history)), "s3://b/p", NOW)
    assert text.count("- [x]") == 5 and "s3://b/p" in text


def test_boxes_stay_open_without_facts() -> None:
    backups = daily(3)
    items = _items(History(NOW, backups))
    assert items["Verify automated backups are running"][0]
    assert not items["Test backup restoration (monthly)"][0]
    assert not items["Verify cloud storage backups exist"][0]
    assert "no second repository" in items["Verify cloud storage backups exist"][1]
    assert not items["Review backup retention policy"][0]


def test_running_and_sizes_unticked_when_backups_stopped_or_jumped() -> None:
    stopped = [manifest(24 * 9 + h) for h in (48, 24, 0)]  # newest 9 days old
    items = _items(History(NOW, stopped))
    assert not items["Verify automated backups are running"][0]
    assert not items["Check backup sizes (should be consistent)"][0]
    jumped = [*daily(6), manifest(0.5, plain=900_000_000)]
    items = _items(History(NOW, jumped))
    ticked, evidence = items["Check backup sizes (should be consistent)"]
    assert not ticked and "dumped size" in evidence


def test_html_checklist_escapes_and_plots() -> None:
    backups = daily(4)
    history = History(NOW, backups, drills=[drill(backups[-1], 2)])
    page = html(checklist(history, monitor.evaluate(history)), "<repo>", history)
    assert page.count("☑") + page.count("☐") == 5
    assert "&lt;repo&gt;" in page and "<repo>" not in page
    assert page.count("<svg") == 2
