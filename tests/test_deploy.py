"""The example monitoring files in deploy/: the Prometheus alert rules and the Grafana dashboard
parse, and every metric they query is one bika exposes (names read from a real registry)."""

from __future__ import annotations

import json
import re
import subprocess
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from bika import metrics
from bika.config import CheckConfig
from bika.findings import Finding
from bika.monitor import History, RunEvent
from bika.report import page
from bika.units import parse_duration

from test_monitor import NOW, drill, manifest

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"
RULES = DEPLOY / "prometheus" / "bika-alerts.yml"
RULE_TESTS = DEPLOY / "prometheus" / "bika-alerts.test.yml"
DASHBOARD = DEPLOY / "grafana" / "bika-dashboard.json"
_METRIC = re.compile(r"\bbika_[a-z0-9_]+\b")


def _exposed() -> set[str]:
    """Every series name bika writes, from a registry of a history that fills them all."""
    backup = manifest(2)
    history = History(
        NOW,
        [backup],
        drills=[drill(backup, 1)],
        runs=[RunEvent(time=NOW, command="backup", ok=True, error="", backup_ids=(backup.id,))],
    )
    registry = metrics.registry([("repo", history, [Finding("ok", "freshness", "fine")])])
    return {sample.name for family in registry.collect() for sample in family.samples}


def _rules() -> list[dict[str, Any]]:
    document = yaml.safe_load(RULES.read_text())
    return [rule for group in document["groups"] for rule in group["rules"]]


def test_alert_rules_query_only_metrics_bika_exposes() -> None:
    exposed = _exposed()
    rules = _rules()
    assert {r["alert"] for r in rules} >= {
        "BikaBackupMissing",
        "BikaDrillFailed",
        "BikaDrillMissing",
        "BikaCheckError",
    }
    for rule in rules:
        used = set(_METRIC.findall(rule["expr"]))
        assert used, rule["alert"]
        assert used <= exposed, (rule["alert"], used - exposed)
        assert rule["labels"]["severity"] in ("warning", "critical")
        assert rule["annotations"]["summary"]


def test_alert_thresholds_match_bika_checks_defaults() -> None:
    expressions = {r["alert"]: r["expr"] for r in _rules()}
    defaults = CheckConfig()
    hours = parse_duration(defaults.max_age) // timedelta(hours=1)
    days = parse_duration(defaults.drill_max_age) // timedelta(days=1)
    assert f"> {hours} * 3600" in expressions["BikaBackupMissing"]
    assert f"> {days} * 86400" in expressions["BikaDrillMissing"]
    assert 'level="error"' in expressions["BikaCheckError"]


def test_the_rules_unit_tests_feed_only_metrics_bika_exposes() -> None:
    document = yaml.safe_load(RULE_TESTS.read_text())
    series = [s["series"] for test in document["tests"] for s in test["input_series"]]
    assert {name for s in series for name in _METRIC.findall(s)} <= _exposed()
    tested = {a["alertname"] for test in document["tests"] for a in test["alert_rule_test"]}
    assert tested == {r["alert"] for r in _rules()}


@pytest.mark.parametrize("check", [["check", "rules", RULES], ["test", "rules", RULE_TESTS]])
def test_promtool_accepts_the_alert_rules_and_their_unit_tests(check: list[object]) -> None:
    """Each alert fires when it should and stays quiet before (bika-alerts.test.yml)."""
    result = subprocess.run(
        ["promtool", *map(str, check)], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_dashboard_parses_and_plots_only_metrics_bika_exposes() -> None:
    exposed = _exposed()
    dashboard = json.loads(DASHBOARD.read_text())
    queries = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    queries += [v["definition"] for v in dashboard["templating"]["list"] if "definition" in v]
    used = {name for query in queries for name in _METRIC.findall(query)}
    assert used <= exposed, used - exposed
    assert {
        "bika_last_backup_stored_bytes",
        "bika_last_backup_rows",
        "bika_last_success_timestamp_seconds",
        "bika_last_drill_restore_seconds",
    } <= used
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))


def test_a_daemon_watching_two_repositories_serves_one_valid_exposition_and_page(
    tmp_path: Path,
) -> None:
    first, second = manifest(2), manifest(1)
    checked = [
        ("s3://a/prod", History(NOW, [first], drills=[drill(first, 1)]), [Finding("ok", "x", "")]),
        ("s3://b/prod", History(NOW, [second]), [Finding("error", "freshness", "old")]),
    ]
    text = generate_latest(metrics.registry(checked)).decode()
    families = list(text_string_to_metric_families(text))
    assert len({f.name for f in families}) == len(families)  # one HELP/TYPE per family
    backups = {
        s.labels["repository"]: s.value
        for f in families
        for s in f.samples
        if s.name == "bika_backups"
    }
    assert backups == {"s3://a/prod": 1, "s3://b/prod": 1}
    exposition = tmp_path / "bika.prom"
    exposition.write_text(text)
    checked_by_promtool = subprocess.run(
        ["promtool", "check", "metrics"], input=text, capture_output=True, text=True, timeout=60
    )
    assert checked_by_promtool.returncode == 0, checked_by_promtool.stderr

    html = page(checked)
    ids = re.findall(r'\bid="([^"]+)"', html)
    assert len(ids) == len(set(ids)), ids
    assert html.count("<html") == 1 and "s3://a/prod" in html and "s3://b/prod" in html
    assert 'id="status">CRITICAL<' in html  # the worst of both
