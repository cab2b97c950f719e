"""Prometheus metrics from the scheduler, JSON logs from the worker, no secrets in either."""

from __future__ import annotations

import base64
import json
import re
import subprocess
import sys
import time
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest
import redis
from pydantic import SecretStr

from harness.processes import SandboxProcess, free_port, scrape_metrics, wait_until
from harness.scenario import generate
from harness.stack import Stack
from producers.events import OrderRefunded
from worker.settings import key_fingerprint

pytestmark = pytest.mark.integration
API_KEY, SECRET_KEY = "obs-test-APIKEY-31f", "obs-test-SECRET-c2e"


def metric(text: str, sample: str) -> float:
    """The value of one sample, e.g. 'gbq_queue_depth' or 'gbq_breaker_state{state="open"}'."""
    for line in text.splitlines():
        name, _, value = line.rpartition(" ")
        if name == sample:
            return float(value)
    raise AssertionError(f"{sample} not in the metrics")


def test_metrics_and_json_logs(
    make_stack: type[Stack], start_sandbox: type[SandboxProcess], sqlite_url: str
) -> None:
    """After deliveries, /metrics reports them and the worker's JSON lines describe each."""
    sandbox = start_sandbox(
        "--api-key",
        API_KEY,
        "--secret-key",
        SECRET_KEY,
        "--rate-limit-per-s",
        "0",
        "--rate-limit-per-30s",
        "0",
    )
    port = free_port()
    scenario = generate(seed=41, orders=5, total_events=20)
    stack = make_stack(
        sqlite_url,
        gameball=sandbox.url,
        GBQ_METRICS_PORT=str(port),
        GBQ_LOG_FORMAT="json",
        GBQ_GAMEBALL_API_KEY=API_KEY,
        GBQ_GAMEBALL_SECRET_KEY=SECRET_KEY,
    )
    worker = stack.start_worker(concurrency=2)
    stack.start_scheduler()

    def scrape() -> str | None:
        return scrape_metrics(port)

    wait_until(scrape, timeout_s=60, what="the metrics endpoint")
    stack.publisher.publish_many(scenario.events)
    assert stack.wait_settled(20) == {"delivered": 20}
    text = scrape()  # one scrape, right away: the histogram is current at each one
    assert text is not None
    assert metric(text, "gbq_delivery_latency_seconds_count") == 20
    assert 'gbq_events{kind="cashback",reason="",state="delivered"}' in text
    assert metric(text, 'gbq_attempts_total{outcome="delivered",reason="accepted"}') == 20
    assert metric(text, 'gbq_breaker_state{state="closed"}') == 1
    assert metric(text, "gbq_queue_depth") == 0
    assert metric(text, "gbq_oldest_sendable_age_seconds") == 0
    assert metric(text, "gbq_oldest_waiting_age_seconds") == 0
    # A refund whose paid event has not come: waiting is normal, not a stuck queue.
    stack.publisher.publish(
        OrderRefunded(
            order_id="NOT-YET-PAID",
            refund_id="R1",
            customer_id="c-wait",
            occurred_at=datetime(2026, 1, 1, tzinfo=UTC),
            amount=Decimal(1),
        )
    )
    waiting = wait_until(
        lambda: (t := scrape()) and metric(t, "gbq_oldest_waiting_age_seconds") > 0 and t,
        timeout_s=30,
        what="the refund to wait",
    )
    assert metric(waiting, "gbq_oldest_sendable_age_seconds") == 0
    worker.stop()
    lines = [json.loads(line) for line in worker.output().splitlines()]  # every line
    fingerprint = key_fingerprint(SecretStr(API_KEY))
    assert any(
        line["message"].startswith(f"delivering to {sandbox.url} API v4.1, key {fingerprint}")
        for line in lines
    )
    deliveries = [line for line in lines if "attempt" in line]
    assert len(deliveries) == 20
    assert {line["outcome"] for line in deliveries} == {"accepted"}
    assert all(line["event_id"] and line["level"] == "INFO" for line in deliveries)
    assert any(line.get("order_id") for line in deliveries)
    everything = worker.output() + text + stack.folder.joinpath("scheduler.log").read_text()
    assert API_KEY not in everything
    assert SECRET_KEY not in everything


@pytest.mark.slow
def test_task_events_are_off_until_flower_asks_for_them(
    make_stack: type[Stack], sqlite_url: str, redis_url: str
) -> None:
    """A worker publishes no Celery task events (they cost CPU on every task) until a
    monitor asks through the control channel, as Flower does: then every delivery's
    task-received and task-succeeded are published."""
    stack = make_stack(sqlite_url)
    stack.start_worker(concurrency=1)
    listener = redis.Redis.from_url(redis_url).pubsub(ignore_subscribe_messages=True)
    listener.psubscribe("*celeryev*")
    first, second = generate(seed=43, orders=2, total_events=2).events
    stack.publisher.publish(first)
    assert stack.wait_settled(1) == {"delivered": 1}
    assert task_events(listener, until=None, timeout_s=1.0) == []
    celery = str(Path(sys.executable).parent / "celery")
    enabled = subprocess.run(
        [celery, "-A", "worker.process.app", "control", "enable_events", "--timeout", "10"],
        env=stack.env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert enabled.returncode == 0, enabled.stderr
    assert "task events enabled" in enabled.stdout
    stack.publisher.publish(second)
    assert stack.wait_settled(2) == {"delivered": 2}
    seen = task_events(listener, until="task-succeeded", timeout_s=30)
    assert ("task-received", second.event_id) in seen
    assert ("task-succeeded", None) in seen


def task_events(
    listener: redis.client.PubSub, *, until: str | None, timeout_s: float
) -> list[tuple[str, str | None]]:
    """(type, event_id in the task's kwargs) of the task-* events published, read for
    ``timeout_s`` or until one of type ``until``."""
    seen: list[tuple[str, str | None]] = []
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        message = listener.get_message(timeout=0.2)
        if message is None:
            continue
        body = json.loads(base64.b64decode(json.loads(message["data"])["body"]))
        for event in body if isinstance(body, list) else [body]:  # the worker buffers some
            kind = event.get("type", "")
            if kind.startswith("task-"):
                found = re.search(r"'event_id': '([^']+)'", str(event.get("kwargs") or ""))
                seen.append((kind, found.group(1) if found else None))
        if until in {kind for kind, _ in seen}:
            break
    return seen
