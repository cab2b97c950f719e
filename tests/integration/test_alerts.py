"""deploy/prometheus/alerts.yml and the Grafana dashboard against real scrapes.

A real stack goes through the situations an operator is paged for: a dead letter, a
checkout host's spool that does not drain, redeemed points parked, a stopped worker, a
disabled account, a Gameball outage. In each,
the scheduler's /metrics is scraped twice, and ``promtool test rules`` (Debian's
prometheus) evaluates the shipped rules on what was scraped: an hour of the scrape before
the situation, then forty minutes of the situation as scraped (ages that grew by the time
between the two scrapes keep growing; counters keep their rate). Each situation fires
exactly the alerts it should, and a healthy stack fires none.
"""

from __future__ import annotations

import json
import re
import socket
import time
from collections.abc import Mapping
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import redis
import yaml

from harness.processes import SandboxProcess, free_port, scrape_metrics, wait_until
from harness.stack import Stack
from producers.events import Redemption, event_to_json
from producers.keys import SPOOLS_KEY
from producers.spool import Spool
from producers.spool_report import report
from producers.wire import InboxEntry
from tests.factories import paid
from tests.promql import (
    ALERTS,
    DASHBOARD,
    Selector,
    alert_rules,
    dashboard_exprs,
    run_promtool,
    samples,
    selectors,
)

pytestmark = pytest.mark.integration

BEFORE_MIN, DURING_MIN = 60, 40  # minutes of series before the situation, then in it
Sample = tuple[str, tuple[tuple[str, str], ...]]
COUNTER_SUFFIXES = ("_total", "_count", "_sum", "_bucket")
PROMETHEUS_OWN = {"up"}
# Ages of something that waits: while it waits, its age grows with the clock. (The
# scheduler's tick age is not one: a tick late under load says nothing of the next.)
WAITING_AGES = {
    "gbq_oldest_sendable_age_seconds",
    "gbq_oldest_waiting_age_seconds",
    "gbq_spool_oldest_age_seconds",
}  # written by Prometheus for each target (job, instance), not by gbq


class Situation:
    """Two scrapes of one situation, and the scrape before it."""

    def __init__(self, name: str, before: str, first: str, second: str, gap_s: float) -> None:
        self.name, self.gap_s = name, gap_s
        self.before, self.first, self.second = (
            _values(before),
            _values(first),
            _values(second),
        )

    def series(self) -> dict[Sample, str]:
        """promtool's input series, one value a minute."""
        out = {}
        for sample in set(self.before) | set(self.second):
            before = self.before.get(sample)
            during = [self._during(sample, minute) for minute in range(DURING_MIN)]
            values = [_fmt(before)] * BEFORE_MIN + [_fmt(value) for value in during]
            out[sample] = " ".join(values)
        return out

    def _during(self, sample: Sample, minute: int) -> float | None:
        last = self.second.get(sample)
        if last is None:
            return None
        first = self.first.get(sample, last)
        slope = (last - first) / self.gap_s
        name = sample[0]
        grows = name.endswith(COUNTER_SUFFIXES) or (
            name in WAITING_AGES and slope >= 0.9  # the same oldest, still there
        )
        return last + slope * 60 * minute if grows else last


def _values(scrape: str) -> dict[Sample, float]:
    return {(name, tuple(sorted(labels.items()))): value for name, labels, value in samples(scrape)}


def _fmt(value: float | None) -> str:
    return "_" if value is None else repr(round(value, 3))


def _series_name(sample: Sample) -> str:
    name, labels = sample
    inside = ",".join(f'{key}="{_escape(value)}"' for key, value in labels)
    return f"{name}{{{inside}}}"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"')


def fired(situation: Situation, expected: Mapping[str, list[dict[str, str]]], folder: Path) -> None:
    """promtool evaluates the rules (annotations aside: they do not decide firing, and
    `promtool check rules` checks their templates) on the situation's series at its end:
    every alert fires with exactly the labels ``expected`` gives, and no other fires."""
    rules = yaml.safe_load(ALERTS.read_text())
    for group in rules["groups"]:
        for rule in group["rules"]:
            rule.pop("annotations", None)
    (folder / "rules.yml").write_text(yaml.safe_dump(rules))
    names = [rule["alert"] for rule in alert_rules()]
    unknown = set(expected) - set(names)
    assert not unknown, f"not in alerts.yml: {unknown}"
    severity = {rule["alert"]: rule["labels"]["severity"] for rule in alert_rules()}
    test = {
        "rule_files": ["rules.yml"],
        "evaluation_interval": "1m",
        "tests": [
            {
                "name": situation.name,
                "interval": "1m",
                "input_series": [
                    {"series": _series_name(sample), "values": values}
                    for sample, values in sorted(situation.series().items())
                ],
                "alert_rule_test": [
                    {
                        "eval_time": f"{BEFORE_MIN + DURING_MIN - 1}m",
                        "alertname": name,
                        "exp_alerts": [
                            {"exp_labels": {**labels, "severity": severity[name]}}
                            for labels in expected.get(name, [])
                        ],
                    }
                    for name in names
                ],
            }
        ],
    }
    (folder / "test.yml").write_text(yaml.safe_dump(test, width=1 << 20))
    result = run_promtool("test", "rules", "test.yml", cwd=folder)
    assert result.returncode == 0, f"{situation.name}:\n{result.stdout}\n{result.stderr}"


def scrape_twice(port: int, gap_s: float = 1.0) -> tuple[str, str, float]:
    first = _scrape(port)
    started = time.monotonic()
    time.sleep(gap_s)  # the time between two scrapes is the measurement, not a wait for state
    second = _scrape(port)
    return first, second, time.monotonic() - started


def _scrape(port: int) -> str:
    text = scrape_metrics(port)
    assert text is not None
    return text


def metric(scrape: str, name: str, **labels: str) -> float | None:
    for sample_name, sample_labels, value in samples(scrape):
        if sample_name == name and all(sample_labels.get(k) == v for k, v in labels.items()):
            return value
    return None


@pytest.mark.slow  # half a minute per ledger: started early, it ends no core's run late
def test_each_situation_fires_exactly_its_alerts_on_real_scrapes(
    make_stack: type[Stack],
    sandbox: SandboxProcess,
    database_url: str,
    tmp_path: Path,
) -> None:
    port = free_port()
    stack = make_stack(
        database_url,
        GBQ_METRICS_PORT=str(port),
        GBQ_HEARTBEAT_TTL_S="2",
        GBQ_BREAKER_CONSECUTIVE_FAILURES="2",
        GBQ_BREAKER_COOLDOWN_S="600",  # open for the whole outage: no probe closes it
    )
    worker = stack.start_worker(concurrency=2)
    stack.start_scheduler()
    wait_until(lambda: scrape_metrics(port), timeout_s=60, what="the metrics endpoint")
    stack.publisher.publish_many([paid(f"OK-{n}") for n in range(3)])
    assert stack.wait_settled(3) == {"delivered": 3}
    scrapes: list[str] = []

    def situation(name: str, before: str) -> Situation:
        first, second, gap = scrape_twice(port)
        scrapes.extend((first, second))
        return Situation(name, before, first, second, gap)

    def ready(check: Any) -> str:
        def scraped() -> str | None:
            text = scrape_metrics(port)
            return text if text is not None and check(text) else None

        return wait_until(scraped, timeout_s=60, what="the situation in the metrics")

    healthy = ready(lambda text: metric(text, "gbq_workers_alive") == 2)  # a pool of two
    scrapes.append(healthy)
    fired(situation("healthy", healthy), {}, tmp_path)

    # A dead letter: Gameball refuses an order for good.
    sandbox.faults(reject_count=1, reject_code=7)
    stack.publisher.publish(paid("DEAD-1"))
    assert stack.wait_settled(4) == {"delivered": 3, "dead": 1}
    fired(situation("a dead letter", healthy), {"GbqDeadLettersAppearing": [{}]}, tmp_path)
    after_dead = _scrape(port)

    # Redeemed points the customer does not have: the order goes, the redemption parks.
    short = paid(
        "PARKED-1",
        100,
        total_paid=Decimal(60),
        total_discount=Decimal(40),
        redemption=Redemption(redeemed_amount=Decimal(40)),
    )
    stack.publisher.publish(short)
    assert stack.wait_settled(5) == {"delivered": 4, "dead": 1}
    ready(lambda text: metric(text, "gbq_parked_redemptions") == 1)
    fired(situation("points parked", after_dead), {"GbqRedemptionsParked": [{}]}, tmp_path)
    resolved = stack.gbq("redemptions", "resolve", "PARKED-1")
    assert resolved.returncode == 0, resolved.stderr
    after_dead = ready(lambda text: metric(text, "gbq_parked_redemptions") == 0)

    # A checkout host whose spool holds an event and does not drain (as its relay reports).
    client = redis.Redis.from_url(stack.settings.effective_redis_url())
    spool = Spool(tmp_path / "checkout-host" / "spool.db")
    event = paid("SPOOLED-1")
    spool.add([InboxEntry(event.event_id, event_to_json(event), time.time() - 30)])
    report(client, spool)
    spool_labels = {"host": socket.gethostname(), "path": str(spool.path.resolve())}
    fired(
        situation("a spool that does not drain", after_dead),
        {"GbqSpoolNotDraining": [spool_labels]},
        tmp_path,
    )
    client.delete(SPOOLS_KEY)

    # A stopped worker, with an order published meanwhile.
    before_stop = ready(lambda text: metric(text, "gbq_spooled_events") is None)
    worker.kill()
    ready(lambda text: metric(text, "gbq_workers_alive") == 0)
    stack.publisher.publish(paid("STOPPED-1"))
    # In the ledger once the scheduler ingests what no worker took (GBQ_REDRIVE_AFTER_S).
    ready(lambda text: (metric(text, "gbq_oldest_sendable_age_seconds") or 0) > 0)
    fired(
        situation("a stopped worker", before_stop),
        {"GbqNoWorker": [{}], "GbqOldestSendableTooOld": [{}]},
        tmp_path,
    )

    # A disabled account: delivery pauses until a probe succeeds.
    stack.start_worker("w2", concurrency=2)
    assert stack.wait_settled(6) == {"delivered": 5, "dead": 1}
    before_pause = ready(lambda text: metric(text, "gbq_workers_alive") == 2)  # a pool of two
    sandbox.faults(account_disabled=True)
    stack.publisher.publish(paid("PAUSED-1"))
    ready(lambda text: metric(text, "gbq_breaker_state", state="paused") == 1)
    ready(lambda text: (metric(text, "gbq_oldest_sendable_age_seconds") or 0) > 0)
    fired(
        situation("a disabled account", before_pause),
        {"GbqDeliveryPaused": [{"state": "paused"}], "GbqOldestSendableTooOld": [{}]},
        tmp_path,
    )

    # A Gameball outage: the breaker opens and stays open.
    sandbox.faults(reset=True)  # the account back: a probe ends the pause
    assert stack.wait_settled(7) == {"delivered": 6, "dead": 1}
    before_outage = ready(lambda text: metric(text, "gbq_breaker_state", state="closed") == 1)
    sandbox.faults(outage=True)
    stack.publisher.publish_many([paid(f"OUTAGE-{n}") for n in range(4)])
    ready(lambda text: metric(text, "gbq_breaker_state", state="open") == 1)
    fired(
        situation("a Gameball outage", before_outage),
        {"GbqBreakerOpenTooLong": [{"state": "open"}], "GbqOldestSendableTooOld": [{}]},
        tmp_path,
    )
    client.close()

    # Every series the rules and the dashboard read exists in these scrapes.
    seen = [sample for text in scrapes for sample in samples(text)]
    missing = [
        (where, selector)
        for where, expr in _every_expr()
        for selector in selectors(expr)
        if selector.name not in PROMETHEUS_OWN and not _found(selector, seen)
    ]
    assert not missing, missing
    labels = {(name, key) for name, sample_labels, _ in seen for key in sample_labels}
    assert not [
        (where, label)
        for where, expr, label in _labels_named()
        if not any(
            (selector.name, label) in labels or selector.name in PROMETHEUS_OWN
            for selector in selectors(expr)
        )
    ]


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_a_ledger_whose_standby_does_not_stream_fires_its_alert(
    make_stack: type[Stack], sandbox: SandboxProcess, database_url: str, tmp_path: Path
) -> None:
    """GBQ_LEDGER_STANDBYS=1 on a PostgreSQL with no standby: the inbox keeps what the
    ledger ingests, and the alert says why, before Redis's memory grows for long."""
    port = free_port()
    stack = make_stack(database_url, GBQ_METRICS_PORT=str(port), GBQ_LEDGER_STANDBYS="1")
    stack.start_worker(concurrency=1)
    stack.start_scheduler()
    stack.publisher.publish_many([paid(f"KEPT-{n}") for n in range(3)])
    assert stack.wait_settled(3) == {"delivered": 3}

    def kept(text: str | None) -> str | None:
        return text if text and metric(text, "gbq_inbox_kept") == 3 else None

    scraped = wait_until(lambda: kept(scrape_metrics(port)), timeout_s=60, what="3 kept")
    assert metric(scraped, "gbq_ledger_standbys_seen") == 0
    assert metric(scraped, "gbq_ledger_standbys_required") == 1
    assert metric(scraped, "gbq_inbox_depth") == 0  # kept entries are not waiting
    first, second, gap = scrape_twice(port)
    fired(
        Situation("no standby streams", scraped, first, second, gap),
        {"GbqLedgerStandbysNotConfirming": [{}]},
        tmp_path,
    )
    status = stack.gbq("status")
    assert "inbox entries kept until the ledger's standbys have them: 3" in status.stdout


def _every_expr() -> list[tuple[str, str]]:
    return [(rule["alert"], rule["expr"]) for rule in alert_rules()] + list(dashboard_exprs())


def _found(selector: Selector, seen: list[tuple[str, dict[str, str], float]]) -> bool:
    return any(selector.matches(name, labels) for name, labels, _ in seen)


LABEL_IN_TEXT = re.compile(r"\{\{\s*(?:\$labels\.)?(\w+)\s*\}\}")
GROUPING = re.compile(r"\b(?:by|on)\s*\(([^)]*)\)")


def _labels_named() -> list[tuple[str, str, str]]:
    """Labels the rules' annotations, the dashboard's legends and the groupings name."""
    named = [
        (rule["alert"], rule["expr"], label)
        for rule in alert_rules()
        for text in rule.get("annotations", {}).values()
        for label in LABEL_IN_TEXT.findall(text)
    ]
    for panel in json.loads(DASHBOARD.read_text())["panels"]:
        for target in panel["targets"]:
            grouped = [
                label.strip()
                for grouping in GROUPING.findall(target["expr"])
                for label in grouping.split(",")
                if label.strip()
            ]
            named.extend(
                (panel["title"], target["expr"], label)
                for label in [*LABEL_IN_TEXT.findall(target["legendFormat"]), *grouped]
                if label != "le"  # a histogram's buckets
            )
    return named
