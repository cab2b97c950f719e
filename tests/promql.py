"""The alert rules and the dashboard against real scrapes: which series each PromQL
expression names, whether a scrape has them, and ``promtool`` (Debian's prometheus) to
check and evaluate rules."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import promql_parser
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

ROOT = Path(__file__).resolve().parent.parent
ALERTS = ROOT / "deploy" / "prometheus" / "alerts.yml"
PROMETHEUS_CONFIG = ROOT / "deploy" / "prometheus" / "prometheus.yml"
DASHBOARD = ROOT / "deploy" / "grafana" / "gameball-queue.json"


@dataclass(frozen=True)
class Selector:
    """A series an expression reads: its metric name and label matchers."""

    name: str
    matchers: tuple[tuple[str, str, str], ...]  # (label, op, value); op: = != =~ !~

    def matches(self, name: str, labels: Mapping[str, str]) -> bool:
        if name != self.name:
            return False
        for label, op, value in self.matchers:
            have = labels.get(label, "")
            hit = have == value if op in ("=", "!=") else re.fullmatch(value, have) is not None
            if hit != (op in ("=", "=~")):
                return False
        return True


_OPS = {"MatchOp.Equal": "=", "MatchOp.NotEqual": "!=", "MatchOp.Re": "=~", "MatchOp.NotRe": "!~"}


def selectors(expr: str) -> list[Selector]:
    """Every vector selector in ``expr`` (a syntax error raises ValueError)."""
    found: list[Selector] = []

    def visit(node: Any) -> None:
        if isinstance(node, promql_parser.VectorSelector):
            matchers = tuple(
                (m.name, _OPS[str(m.op)], m.value)
                for m in node.matchers.matchers
                if m.name != "__name__"
            )
            found.append(Selector(str(node.name), matchers))
            return
        for attribute in ("expr", "lhs", "rhs", "vector_selector", "param"):
            child = getattr(node, attribute, None)
            if child is not None and not isinstance(child, str | int | float):
                visit(child)
        for child in getattr(node, "args", None) or ():
            visit(child)

    visit(promql_parser.parse(expr))
    return found


def alert_rules() -> list[dict[str, Any]]:
    groups = yaml.safe_load(ALERTS.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"]]


def dashboard_exprs() -> Iterator[tuple[str, str]]:
    """(panel title, expression) for every query of the dashboard."""
    for panel in json.loads(DASHBOARD.read_text())["panels"]:
        for target in panel["targets"]:
            yield panel["title"], target["expr"]


def samples(scrape: str) -> list[tuple[str, dict[str, str], float]]:
    """Every sample of a /metrics text: (name, labels, value)."""
    return [
        (sample.name, dict(sample.labels), float(sample.value))
        for family in text_string_to_metric_families(scrape)
        for sample in family.samples
    ]


def promtool() -> str:
    """Debian's promtool; a skip where it is missing, a failure in CI (``.ci/run``
    installs Debian's prometheus)."""
    path = shutil.which("promtool")
    if path is not None:
        return path
    note = "promtool not found: apt-get install prometheus"
    if os.environ.get("CI"):
        pytest.fail(note)
    pytest.skip(note)


def run_promtool(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [promtool(), *args], cwd=cwd, capture_output=True, text=True, timeout=120, check=False
    )
