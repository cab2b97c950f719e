"""The shipped alert rules and dashboard as files: valid PromQL (promql-parser, and
promtool where it is installed), each alert explained in docs/operations.md, and a
dashboard Grafana imports. Their series are checked against real scrapes in
tests/integration/test_alerts.py."""

from __future__ import annotations

import json

import pytest
import yaml

from tests.promql import (
    ALERTS,
    DASHBOARD,
    PROMETHEUS_CONFIG,
    ROOT,
    alert_rules,
    dashboard_exprs,
    run_promtool,
    selectors,
)

OPERATIONS = ROOT / "docs" / "operations.md"


@pytest.mark.parametrize(
    "expr", [rule["expr"] for rule in alert_rules()] + [expr for _, expr in dashboard_exprs()]
)
def test_every_expression_is_promql_over_gbq_series(expr: str) -> None:
    named = selectors(expr)  # raises on a syntax error
    assert named
    assert all(s.name.startswith("gbq_") or s.name == "up" for s in named), named


def test_promtool_accepts_the_rules_and_the_config() -> None:
    rules = run_promtool("check", "rules", str(ALERTS), cwd=ROOT)
    assert rules.returncode == 0, rules.stdout + rules.stderr
    config = run_promtool("check", "config", str(PROMETHEUS_CONFIG), cwd=ROOT)
    assert config.returncode == 0, config.stdout + config.stderr


def test_every_alert_says_how_bad_what_and_where_to_read() -> None:
    documented = OPERATIONS.read_text()
    for rule in alert_rules():
        assert rule["labels"]["severity"] in {"critical", "warning", "info"}, rule["alert"]
        assert rule["annotations"]["summary"]
        assert rule["annotations"]["description"]
        assert f"`{rule['alert']}`" in documented, f"{rule['alert']} not in docs/operations.md"


def test_the_scrape_job_is_the_one_the_metrics_down_alert_watches() -> None:
    config = yaml.safe_load(PROMETHEUS_CONFIG.read_text())
    [job] = config["scrape_configs"]
    [down] = [rule for rule in alert_rules() if rule["alert"] == "GbqMetricsDown"]
    [up] = selectors(down["expr"])
    assert up.matchers == (("job", "=", job["job_name"]),)
    assert config["rule_files"] == [ALERTS.name]


def test_the_dashboard_imports_into_grafana_with_any_prometheus() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    panels = dashboard["panels"]
    assert len({panel["id"] for panel in panels}) == len(panels)
    [variable] = dashboard["templating"]["list"]
    assert (variable["type"], variable["query"]) == ("datasource", "prometheus")
    for panel in panels:
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        assert panel["targets"], panel["title"]
        assert panel["description"], panel["title"]
    cells = [
        (panel["gridPos"]["x"] + dx, panel["gridPos"]["y"] + dy)
        for panel in panels
        for dx in range(panel["gridPos"]["w"])
        for dy in range(panel["gridPos"]["h"])
    ]
    assert len(cells) == len(set(cells)), "panels overlap"
    assert all(panel["gridPos"]["x"] + panel["gridPos"]["w"] <= 24 for panel in panels)
