"""Outages and Gameball's rate limit, with the shared breaker and limiter."""

from __future__ import annotations

import json
import statistics
import subprocess

import pytest

from harness.processes import GBQ, SandboxProcess, wait_until
from harness.scenario import Scenario, generate, wallets
from harness.stack import Stack
from producers.keys import BREAKER_KEY
from worker.coordination.ratelimit import bucket_of
from worker.gameball.payloads import build_request
from worker.settings import SANDBOX_API_KEY

pytestmark = pytest.mark.integration
ALLOWED_RATE = 360 / 30  # Gameball's sustained limit, calls per second
# Gameball's documented limits, per resource (rate-limiting.mdx): orders and transactions
# each have their own 30/s and 360/30 s, as gbq's limiter paces them.
LIMITED = ("--rate-limit-per-s", "30", "--rate-limit-per-30s", "360")
LIMITS_ON = {"GBQ_RATE_LIMIT_PER_S": "30", "GBQ_RATE_LIMIT_PER_30S": "360"}


def calls(sandbox: SandboxProcess) -> list[dict[str, object]]:
    rows: list[dict[str, object]] = sandbox.http.get(
        "/_sandbox/requests", params={"limit": 100_000}
    ).json()["requests"]
    return rows


def drain_report(rows: list[dict[str, object]]) -> tuple[float, float]:
    """(applied calls per second between the first and the last, share of 429s)."""
    applied = [float(r["at"]) for r in rows if r["applied"]]  # type: ignore[arg-type]
    rate = (len(applied) - 1) / (applied[-1] - applied[0])
    return rate, sum(r["status"] == 429 for r in rows) / len(rows)


@pytest.mark.slow(rank=0)
@pytest.mark.timeout(400)
def test_outage_with_1000_pending_costs_only_probes_and_then_drains_at_the_limit(
    make_stack: type[Stack], start_sandbox: type[SandboxProcess], sqlite_url: str
) -> None:
    """Gameball down with 1,000 events waiting: a handful of calls (probes), none dead,
    then the backlog drains at Gameball's rate, oldest first (within each resource Gameball
    limits apart), without 429 storms."""
    scenario = generate(seed=11, orders=300, total_events=1000)
    sandbox = start_sandbox(*LIMITED)
    stack = make_stack(sqlite_url, gameball=sandbox.url, GBQ_BREAKER_COOLDOWN_S="2", **LIMITS_ON)
    # Given Gameball down and 1,000 events published
    sandbox.faults(outage=True)
    for worker in ("w1", "w2", "w3"):
        stack.start_worker(worker, concurrency=2)
    stack.start_scheduler()
    for start in range(0, 1000, 100):
        stack.publisher.publish_many(scenario.events[start : start + 100])
    # When the outage lasts through five failed probes after the breaker opened
    redis_client = stack.publisher._redis
    wait_until(
        lambda: b'"open"' in (redis_client.get(BREAKER_KEY) or b""),
        timeout_s=60,
        what="the breaker to open",
    )
    opened_with = sandbox.state(transactions=False)["request_counts"]["total"]
    wait_until(
        lambda: sandbox.state(transactions=False)["request_counts"]["total"] >= opened_with + 5,
        timeout_s=120,
        what="five probes",
    )
    during = sandbox.state(transactions=False)["request_counts"]["total"]
    sandbox.faults(outage=False)
    # Then: calls during the outage were a few (the run that opened it, and probes)
    assert during <= 5 + 6 + 5 + 2, during  # failure run + in flight + probes + slack
    print(f"\noutage: {during} calls for 1000 events ({during / 1000:.3f} per event)")
    assert stack.wait_settled(1000, timeout_s=300) == {"delivered": 1000}
    assert wallets(sandbox.state(transactions=False)) == dict(scenario.expected)
    # and the drain kept to the limit, oldest first
    rows = [r for r in calls(sandbox) if r["status"] != 503]
    rate, share_429 = drain_report(rows)
    print(
        f"drain: {rate:.2f} calls/s ({rate / ALLOWED_RATE:.0%} of {ALLOWED_RATE}/s), "
        f"429s {share_429:.2%}"
    )
    assert share_429 < 0.02
    assert rate >= 0.9 * ALLOWED_RATE
    # Oldest first, among the orders: Gameball limits orders and transactions apart
    # (rate-limiting.mdx), so each drains at its own pace, and a refund follows its own
    # order's paid event (its place is that order's, proven by the ordering tests). The few
    # events tried during the outage come back when their backoff says: left out.
    published = {event_id: n for n, event_id in enumerate(scenario.event_ids)}
    failed = {str(r["transaction_id"]) for r in calls(sandbox) if r["status"] == 503}
    order = [published[event_id] for event_id in _applied_ids(rows, scenario, failed)["orders"]]
    head, tail = order[: len(order) // 5], order[-(len(order) // 5) :]
    print(
        f"orders: median published place {statistics.median(head)} (first fifth applied)"
        f", {statistics.median(tail)} (last fifth), of {len(published)}"
    )
    assert statistics.median(head) < statistics.median(tail), order


def _applied_ids(
    rows: list[dict[str, object]], scenario: Scenario, leave_out: set[str]
) -> dict[str, list[str]]:
    """The event ids of the applied calls, per rate-limited resource, in the order the
    sandbox applied them (but those of the transactions ``leave_out`` names)."""
    by_transaction = {
        build_request(event, "v3.0").transaction_id: event for event in scenario.events
    }
    applied: dict[str, list[str]] = {}
    for row in rows:
        if row["applied"] and str(row["transaction_id"]) not in leave_out:
            resource = bucket_of("POST", str(row["path"]))
            event = by_transaction[str(row["transaction_id"])]
            applied.setdefault(resource, []).append(event.event_id)
    return applied


@pytest.mark.slow(rank=2)
@pytest.mark.timeout(300)
def test_three_workers_drain_a_backlog_at_gameballs_rate_with_few_429s(
    make_stack: type[Stack], start_sandbox: type[SandboxProcess], sqlite_url: str
) -> None:
    """A 1,000-event backlog, 3 workers, Gameball enforcing 30/s and 360/30 s."""
    scenario = generate(seed=12, orders=400, total_events=1000)
    sandbox = start_sandbox(*LIMITED)
    stack = make_stack(sqlite_url, gameball=sandbox.url, **LIMITS_ON)
    for start in range(0, 1000, 100):
        stack.publisher.publish_many(scenario.events[start : start + 100])
    for worker in ("w1", "w2", "w3"):
        stack.start_worker(worker, concurrency=2)
    stack.start_scheduler()
    assert stack.wait_settled(1000, timeout_s=240) == {"delivered": 1000}
    rate, share_429 = drain_report(calls(sandbox))
    print(
        f"\nrate: {rate:.2f} calls/s = {rate / ALLOWED_RATE:.0%} of the allowed "
        f"{ALLOWED_RATE}/s; 429s {share_429:.2%} of calls"
    )
    assert share_429 < 0.02
    assert rate >= 0.9 * ALLOWED_RATE
    assert wallets(sandbox.state(transactions=False)) == dict(scenario.expected)


def test_wrong_key_pauses_keeps_budgets_and_a_fixed_key_delivers_everything(
    make_stack: type[Stack], sandbox: SandboxProcess, sqlite_url: str
) -> None:
    """401: the breaker pauses, status names the cause, no attempt is spent; after the
    key is fixed and the workers restarted, everything is delivered."""
    scenario = generate(seed=13, orders=10, total_events=30)
    stack = make_stack(sqlite_url, GBQ_GAMEBALL_API_KEY="wrong-key-123")
    worker, scheduler = stack.start_worker(concurrency=2), stack.start_scheduler()
    stack.publisher.publish_many(scenario.events)
    redis_client = stack.publisher._redis
    wait_until(
        lambda: b'"paused"' in (redis_client.get(BREAKER_KEY) or b""),
        timeout_s=60,
        what="the breaker to pause",
    )
    wait_until(lambda: stack.states()["pending"] == 0, timeout_s=60, what="every event to be seen")
    # gbq status names the cause
    status = subprocess.run(
        [*GBQ, "status", "--json"],
        env=stack.env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    report = json.loads(status.stdout)
    assert report["breaker"]["state"] == "paused"
    assert report["breaker"]["reason"].startswith("unauthorized")
    assert "GBQ_GAMEBALL_API_KEY" in report["breaker"]["explanation"]
    assert "wrong-key-123" not in status.stdout
    assert report["events"].get("dead", 0) == 0
    # no event spent an attempt; the few calls made were the first ones and probes
    assert {stack.event(e).attempts for e in scenario.event_ids} == {0}
    refused = sandbox.state(transactions=False)["request_counts"]["by_status"].get("401", 0)
    assert 1 <= refused <= 10
    # When the key is fixed and the workers restarted
    worker.stop()
    scheduler.stop()
    stack.env["GBQ_GAMEBALL_API_KEY"] = SANDBOX_API_KEY
    stack.start_worker("fixed", concurrency=2)
    stack.start_scheduler("scheduler-2")
    # Then everything is delivered, each on its first counted attempt
    assert stack.wait_settled(30, timeout_s=120) == {"delivered": 30}
    assert wallets(sandbox.state(transactions=False)) == dict(scenario.expected)
    assert {stack.event(e).attempts for e in scenario.event_ids} == {1}
