"""The whole pipeline: publish → Redis → Celery worker → ledger → sandbox."""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from harness.processes import GBQ, SandboxProcess, pool_children, wait_until
from harness.scenario import generate, wallets
from harness.services import RedisServer
from harness.stack import Stack
from producers.events import (
    CashbackAwarded,
    Event,
    LineItem,
    OrderCancelled,
    OrderPaid,
    OrderRefunded,
)
from producers.keys import QUEUE
from producers.transport import enqueue
from producers.wire import task_message
from worker.coordination.shared_breaker import SharedBreaker, breaker_config
from worker.gameball.payloads import build_request
from worker.settings import SANDBOX_API_KEY, SANDBOX_SECRET_KEY, Settings

pytestmark = pytest.mark.integration
T0 = datetime(2026, 2, 1, 12, 0, tzinfo=UTC)


def test_500_events_across_100_orders_are_delivered_exactly(
    make_stack: type[Stack], sandbox: SandboxProcess, database_url: str, any_redis_url: str
) -> None:
    """Every event delivered; every wallet equals the balance computed from the events.
    On every Redis form and both ledgers, published from the workers' host and from a
    checkout host of its own, in turn (an order's events may come from both)."""
    # Given a running worker and scheduler
    scenario = generate(seed=1, orders=100, total_events=500)
    stack = make_stack(database_url, redis=any_redis_url)
    stack.start_worker(concurrency=3)
    stack.start_scheduler()
    publishers = [stack.publisher, stack.checkout_host()]
    # When 500 events are published (pipelined in batches, as a busy checkout would)
    for number, start in enumerate(range(0, len(scenario.events), 50)):
        batch = scenario.events[start : start + 50]
        assert publishers[number % 2].publish_many(batch) == "queued"
    # Then every event is delivered and the wallets are exact
    states = stack.wait_settled(len(scenario.events), timeout_s=180)
    assert states == {"delivered": 500}
    assert wallets(sandbox.state(transactions=False)) == dict(scenario.expected)
    transactions = sandbox.state()["transactions"]
    assert len(transactions) == 500
    assert len({t["transaction_id"] for t in transactions}) == 500


def applied_order(sandbox: SandboxProcess) -> list[str]:
    """Transaction ids in the order the sandbox applied them."""
    return [t["transaction_id"] for t in sandbox.state()["transactions"]]


def test_publishing_twice_and_duplicate_messages_credit_once(
    make_stack: type[Stack], sandbox: SandboxProcess, sqlite_url: str
) -> None:
    """Re-publishing every event and replaying Celery messages never credits twice."""
    scenario = generate(seed=2, orders=30, total_events=100)
    stack = make_stack(sqlite_url)
    stack.start_worker(concurrency=3)
    stack.start_scheduler()
    # When every event is published twice (again from a checkout host of its own), and 50
    # raw messages are delivered again
    stack.publisher.publish_many(scenario.events)
    stack.checkout_host().publish_many(scenario.events)
    stack.wait_settled(100)
    redis_client = stack.publisher._redis  # the same Redis the workers consume
    enqueue(redis_client, scenario.event_ids[:50])
    stack.publisher.publish_many(scenario.events[50:])
    wait_until(lambda: redis_client.llen(QUEUE) == 0, timeout_s=60, what="the queue to drain")
    # Then each transaction was applied once and the wallets are exact
    assert stack.wait_settled(100) == {"delivered": 100}
    assert sorted(applied_order(sandbox)) == sorted(
        build_request(event, "v3.0").transaction_id for event in scenario.events
    )
    assert wallets(sandbox.state(transactions=False)) == dict(scenario.expected)


def test_refund_published_before_its_paid_event_waits_then_follows_it(
    make_stack: type[Stack], sandbox: SandboxProcess, sqlite_url: str
) -> None:
    """A refund and a cancel ahead of their order wait, then go after it, in order."""
    paid = OrderPaid(
        order_id="ORD-9",
        customer_id="c-9",
        occurred_at=T0,
        total_price=Decimal(100),
        total_paid=Decimal(100),
    )
    refund = OrderRefunded(
        order_id="ORD-9",
        refund_id="RF-1",
        customer_id="c-9",
        occurred_at=T0 + timedelta(minutes=1),
        amount=Decimal(30),
    )
    cancel = OrderCancelled(
        order_id="ORD-9", customer_id="c-9", occurred_at=T0 + timedelta(minutes=2)
    )
    stack = make_stack(sqlite_url)
    stack.start_worker(concurrency=2)
    stack.start_scheduler()
    # Given the cancel and the refund published first (cancel before refund, even)
    stack.publisher.publish(cancel)
    stack.publisher.publish(refund)
    wait_until(lambda: stack.states()["waiting"] == 2, timeout_s=60, what="both to wait")
    assert sandbox.state()["request_counts"]["total"] == 0  # nothing sent ahead of paid
    # When the paid event arrives
    stack.publisher.publish(paid)
    # Then all three go, in the order they happened
    assert stack.wait_settled(3) == {"delivered": 3}
    assert applied_order(sandbox) == ["ORD-9", "RF-1", "ORD-9-cancel"]
    assert sandbox.balance("c-9") == 0
    history = sandbox.state()["transactions"]
    assert [t["points"] for t in history] == [100, -30, -70]


def test_outage_then_recovery_delivers_everything(
    make_stack: type[Stack], sandbox: SandboxProcess, sqlite_url: str
) -> None:
    """Gameball down for a while: the breaker holds events back, nothing dies, all delivered."""
    scenario = generate(seed=3, orders=20, total_events=60)
    sandbox.faults(outage=True)
    stack = make_stack(sqlite_url)
    stack.start_worker(concurrency=2)
    stack.start_scheduler()
    stack.publisher.publish_many(scenario.events)
    # While Gameball is down, the breaker opens and events are deferred; none delivered
    wait_until(
        lambda: (
            SharedBreaker(stack.publisher._redis, breaker_config(Settings.model_construct()))
            .current()
            .state
            == "open"
        ),
        timeout_s=60,
        what="the circuit breaker to open",
    )
    assert stack.states()["delivered"] == 0
    # When it comes back
    sandbox.faults(outage=False)
    assert stack.wait_settled(60) == {"delivered": 60}
    assert wallets(sandbox.state(transactions=False)) == dict(scenario.expected)


def test_responses_dropped_after_apply_do_not_double_credit(
    make_stack: type[Stack], sandbox: SandboxProcess, sqlite_url: str
) -> None:
    """20% of calls applied then cut off: retried, answered 305, credited once."""
    scenario = generate(seed=4, orders=40, total_events=120)
    sandbox.faults(drop_after_apply_rate=0.2)
    stack = make_stack(sqlite_url)
    stack.start_worker(concurrency=3)
    stack.start_scheduler()
    stack.publisher.publish_many(scenario.events)
    assert stack.wait_settled(120) == {"delivered": 120}
    state = sandbox.state()
    assert state["request_counts"]["dropped"] >= 10
    assert len(state["transactions"]) == 120
    assert wallets(state) == dict(scenario.expected)
    # each dropped response was an applied call; its retry was answered 305 / 9004, once
    last_codes = [stack.event(event_id).last_code for event_id in scenario.event_ids]
    assert last_codes.count(9004) + last_codes.count(305) == state["request_counts"]["dropped"]


@pytest.mark.slow
def test_worker_killed_mid_delivery_recovers_in_seconds(
    make_stack: type[Stack], sandbox: SandboxProcess, sqlite_url: str
) -> None:
    """SIGKILL a whole worker (main process and pool) with requests in flight. Its leases
    are 10 minutes long (what a slow call may need), yet everything is delivered within the
    2-minute deadline: the scheduler sees its heartbeats stop and hands the leases back."""
    scenario = generate(seed=5, orders=15, total_events=40)
    sandbox.faults(latency_s=1.0)
    stack = make_stack(sqlite_url, GBQ_LEASE_S="600", GBQ_HEARTBEAT_TTL_S="3")
    worker = stack.start_worker("doomed", concurrency=4)
    scheduler = stack.start_scheduler()
    stack.publisher.publish_many(scenario.events)
    wait_until(
        lambda: stack.states()["in_flight"] >= 2 and stack.states()["delivered"] >= 1,
        timeout_s=60,
        what="deliveries in flight",
    )
    # When the worker and its children die at once
    worker.kill()
    in_flight = stack.states()["in_flight"]
    assert in_flight >= 1
    stack.start_worker("replacement", concurrency=4)
    # Then everything is delivered, exactly once in effect, long before any lease expires
    assert stack.wait_settled(40, timeout_s=120) == {"delivered": 40}
    assert "stopped beating: handed back" in scheduler.output()
    state = sandbox.state()
    assert len(state["transactions"]) == 40
    assert wallets(state) == dict(scenario.expected)


def test_a_pool_child_killed_mid_delivery_hands_its_lease_back_at_once(
    make_stack: type[Stack], sandbox: SandboxProcess, sqlite_url: str
) -> None:
    """SIGKILL one pool child (an OOM kill) mid-call: the worker's main process releases
    that child's lease, so the requeued message delivers now, not after GBQ_LEASE_S."""
    scenario = generate(seed=15, orders=2, total_events=2)
    sandbox.faults(latency_s=2.0)
    stack = make_stack(sqlite_url, GBQ_LEASE_S="600", GBQ_REDRIVE_AFTER_S="600")
    worker = stack.start_worker("w1", concurrency=1)
    stack.publisher.publish(scenario.events[0])
    wait_until(lambda: stack.states()["in_flight"] == 1, timeout_s=60, what="a call in flight")
    children = pool_children(worker.popen.pid)
    assert len(children) == 1
    # When the child dies mid-call
    os.kill(children[0], signal.SIGKILL)
    # Then the event is delivered long before its 600 s lease could expire
    assert stack.wait_settled(1, timeout_s=60) == {"delivered": 1}
    assert "released 1 lease(s) at once" in worker.output()
    paid = scenario.events[0]
    assert isinstance(paid, OrderPaid)
    assert sandbox.balance(paid.customer_id) == int(paid.total_paid)  # credited once


def test_redis_down_while_publishing_spools_and_delivers_later(
    make_stack: type[Stack], sandbox: SandboxProcess, sqlite_url: str, tmp_path: Path
) -> None:
    """Redis unreachable: publish() spools and returns; all delivered after Redis returns."""
    scenario = generate(seed=6, orders=20, total_events=60)
    server = RedisServer(tmp_path / "redis").start()
    try:
        stack = make_stack(sqlite_url, redis=server.url)
        stack.start_worker(concurrency=2)
        stack.start_scheduler()
        stack.publisher.publish_many(scenario.events[:30])
        # When Redis goes away mid-stream
        server.stop()
        started = time.monotonic()
        outcomes = [stack.publisher.publish(event) for event in scenario.events[30:]]
        elapsed = time.monotonic() - started
        # Then publishing still returns, quickly, having spooled
        assert outcomes == ["spooled"] * 30
        assert elapsed < 30 * 1.0
        assert stack.publisher.spool.count() == 30
        # And once Redis is back (AOF restores what it had), everything is delivered
        server.start()
        assert stack.wait_settled(60, timeout_s=180) == {"delivered": 60}
        assert stack.publisher.spool.count() == 0
        assert wallets(sandbox.state(transactions=False)) == dict(scenario.expected)
    finally:
        server.kill()


def test_redis_restart_mid_run_loses_nothing(
    make_stack: type[Stack], sandbox: SandboxProcess, sqlite_url: str, tmp_path: Path
) -> None:
    """A Redis restart (AOF on) with messages queued and in flight loses no event."""
    scenario = generate(seed=7, orders=30, total_events=90)
    sandbox.faults(latency_s=0.05)
    server = RedisServer(tmp_path / "redis").start()
    try:
        stack = make_stack(sqlite_url, redis=server.url)
        stack.start_worker(concurrency=2)
        stack.start_scheduler()
        stack.publisher.publish_many(scenario.events)
        wait_until(
            lambda: stack.states()["delivered"] >= 10, timeout_s=60, what="delivery to start"
        )
        server.stop()
        server.start()
        assert stack.wait_settled(90, timeout_s=90) == {"delivered": 90}
        assert wallets(sandbox.state(transactions=False)) == dict(scenario.expected)
    finally:
        server.kill()


def test_permanent_rejection_is_dead_with_gameballs_code_and_blocks_the_order(
    make_stack: type[Stack], sandbox: SandboxProcess, sqlite_url: str
) -> None:
    """A 4xx kills the paid event with Gameball's code and message; its refund is blocked."""
    first = OrderPaid(
        order_id="A",
        customer_id="c-1",
        occurred_at=T0,
        total_price=Decimal(10),
        total_paid=Decimal(10),
    )
    rejected = OrderPaid(
        order_id="B",
        customer_id="c-1",
        occurred_at=T0 + timedelta(minutes=1),
        total_price=Decimal(20),
        total_paid=Decimal(20),
    )
    refund = OrderRefunded(
        order_id="B",
        refund_id="B-R1",
        customer_id="c-1",
        occurred_at=T0 + timedelta(minutes=5),
        amount=Decimal(5),
    )
    stack = make_stack(sqlite_url)
    stack.start_worker(concurrency=1)
    stack.start_scheduler()
    stack.publisher.publish(first)
    wait_until(lambda: stack.states()["delivered"] == 1, timeout_s=60, what="the first order")
    sandbox.faults(reject_count=1, reject_code=7)
    stack.publisher.publish_many([rejected, refund])
    assert stack.wait_settled(3) == {"delivered": 1, "dead": 2}
    dead = stack.event("paid:B")
    assert (dead.dead_reason, dead.last_code, dead.last_message) == (
        "rejected",
        3003,  # code 7 "Invalid Value" in v4.1's numbering (the default version)
        "Injected error 7",
    )
    assert dead.attempts == 1
    assert stack.event("refunded:B:B-R1").dead_reason == "blocked"
    assert sandbox.balance("c-1") == 10


def test_transactions_of_one_customer_at_one_instant_are_all_delivered(
    make_stack: type[Stack], sandbox: SandboxProcess, database_url: str
) -> None:
    """Gameball refuses a second transaction of a customer at the same millisecond (304):
    the ledger gives each event its own transaction time once, a millisecond apart, and
    sends that time on every attempt."""
    orders = [
        OrderPaid(
            order_id=f"SAME-{number}",
            customer_id="c-same",
            occurred_at=T0,
            total_price=Decimal(5),
            total_paid=Decimal(5),
        )
        for number in range(5)
    ]
    stack = make_stack(database_url)
    stack.start_worker(concurrency=2)
    stack.start_scheduler()
    stack.publisher.publish_many(orders)
    assert stack.wait_settled(5) == {"delivered": 5}
    assert sandbox.balance("c-same") == 25
    times = sorted(stack.event(order.event_id).transaction_time for order in orders)
    assert times == [T0 + timedelta(milliseconds=n) for n in range(5)]


def test_malformed_messages_become_dead_letters(make_stack: type[Stack], sqlite_url: str) -> None:
    """Garbage on the queue is kept as a dead letter 'malformed', raw bytes exactly."""
    stack = make_stack(sqlite_url)
    stack.start_worker(concurrency=1)
    stack.start_scheduler()
    redis_client = stack.publisher._redis
    good = json.loads(task_message("paid:X"))
    bad_kwargs = {
        **good,
        "body": base64.b64encode(json.dumps([[], {"event_id": 42}, {}]).encode()).decode(),
    }
    not_json = {**good, "body": base64.b64encode(b"{definitely not json").decode()}
    bad_event = {
        **good,
        "body": base64.b64encode(
            json.dumps([[], {"event_id": "paid:X", "event": {"kind": "paid"}}, {}]).encode()
        ).decode(),
    }
    pushed = [json.dumps(message).encode() for message in (bad_kwargs, not_json, bad_event)]
    for raw in pushed:
        redis_client.lpush(QUEUE, raw)
    assert stack.wait_settled(3, timeout_s=60) == {"dead": 3}
    with stack.ledger.engine.begin() as connection:
        rows = connection.execute(
            text("SELECT dead_reason, raw, last_message FROM gbq_events ORDER BY raw")
        ).all()
    assert {row.dead_reason for row in rows} == {"malformed"}
    assert sorted(row.raw for row in rows if row.raw in pushed) == sorted(pushed[:2])
    messages = " ".join(row.last_message for row in rows)
    assert "the event id is not a string" in messages
    assert "not JSON" in messages
    assert "order_id" in messages  # the invalid event's field-by-field error is kept


def test_a_refund_whose_message_is_lost_still_goes_before_the_cancel(
    make_stack: type[Stack], sandbox: SandboxProcess, sqlite_url: str
) -> None:
    """The earlier refund's message is gone (a crashed worker held it): the cancel still
    waits for it, because ordering also looks at the order's un-ingested inbox entries."""
    paid = OrderPaid(
        order_id="ORD-L",
        customer_id="c-l",
        occurred_at=T0,
        total_price=Decimal(100),
        total_paid=Decimal(100),
    )
    refund = OrderRefunded(
        order_id="ORD-L",
        refund_id="RF-L",
        customer_id="c-l",
        occurred_at=T0 + timedelta(minutes=1),
        amount=Decimal(40),
    )
    cancel = OrderCancelled(
        order_id="ORD-L", customer_id="c-l", occurred_at=T0 + timedelta(minutes=2)
    )
    stack = make_stack(sqlite_url)
    stack.publisher.publish_many([paid, refund, cancel])
    client = stack.publisher._redis
    for raw in client.lrange(QUEUE, 0, -1):
        if json.loads(raw)["headers"]["id"] == refund.event_id:
            assert client.lrem(QUEUE, 1, raw) == 1  # the refund's message is lost
    stack.start_worker(concurrency=2)
    stack.start_scheduler()
    assert stack.wait_settled(3, timeout_s=60) == {"delivered": 3}
    assert applied_order(sandbox) == ["ORD-L", "RF-L", "ORD-L-cancel"]
    assert sandbox.balance("c-l") == 0


def test_a_refund_that_arrives_after_its_orders_later_cancellation_is_not_a_dead_letter(
    make_stack: type[Stack], sandbox: SandboxProcess, database_url: str
) -> None:
    """A refund held in another checkout host's spool reaches us after the order's later
    cancellation went: Gameball answers it "already cancelled", and that cancellation has
    taken back the refund's share too. Delivered (nothing missing), not a dead letter. A
    refund that happened *after* the cancellation is still refused."""
    order = {"order_id": "ORD-LATE", "customer_id": "c-late"}
    paid = OrderPaid(**order, occurred_at=T0, total_price=Decimal(100), total_paid=Decimal(100))
    early = OrderRefunded(
        **order, refund_id="RF-EARLY", occurred_at=T0 + timedelta(minutes=1), amount=Decimal(30)
    )
    cancel = OrderCancelled(**order, occurred_at=T0 + timedelta(minutes=2))
    after = OrderRefunded(
        **order, refund_id="RF-AFTER", occurred_at=T0 + timedelta(minutes=3), amount=Decimal(5)
    )
    stack = make_stack(database_url)
    stack.start_worker(concurrency=2)
    stack.start_scheduler()
    stack.publisher.publish_many([paid, cancel])
    assert stack.wait_settled(2, timeout_s=60) == {"delivered": 2}
    stack.publisher.publish_many([early, after])
    assert stack.wait_settled(4, timeout_s=60) == {"delivered": 3, "dead": 1}
    late = stack.event(early.event_id)
    assert (late.state, late.last_code) == ("delivered", 9001)  # v4.1's "already cancelled"
    assert "later cancellation" in late.last_message
    refused = stack.event(after.event_id)
    assert (refused.state, refused.dead_reason, refused.last_code) == ("dead", "rejected", 9001)
    assert applied_order(sandbox) == ["ORD-LATE", "ORD-LATE-cancel"]
    assert sandbox.balance("c-late") == 0


def test_a_refund_beyond_what_was_paid_dies_at_once_and_the_cancellation_goes(
    make_stack: type[Stack], sandbox: SandboxProcess, sqlite_url: str
) -> None:
    """Refunds that returned the whole order make Gameball count it cancelled: a further
    refund is answered "already cancelled" while the order's later cancellation still
    waits behind it. No later cancellation was applied, so the refund is refused at once
    (not retried for its whole window, holding the cancellation back), and the
    cancellation, answered "already cancelled" too, is delivered."""
    order = {"order_id": "ORD-OVER", "customer_id": "c-over"}
    paid = OrderPaid(**order, occurred_at=T0, total_price=Decimal(100), total_paid=Decimal(100))
    refunds = [
        OrderRefunded(
            **order,
            refund_id=f"RF-OVER-{n}",
            occurred_at=T0 + timedelta(minutes=1 + n),
            amount=Decimal(amount),
        )
        for n, amount in enumerate((60, 40, 5))
    ]
    cancel = OrderCancelled(**order, occurred_at=T0 + timedelta(minutes=9))
    stack = make_stack(sqlite_url)
    stack.start_worker(concurrency=2)
    stack.start_scheduler()
    stack.publisher.publish_many([paid, *refunds, cancel])
    assert stack.wait_settled(5, timeout_s=60) == {"delivered": 4, "dead": 1}
    beyond = stack.event(refunds[2].event_id)
    assert (beyond.state, beyond.dead_reason, beyond.last_code) == ("dead", "rejected", 9001)
    assert stack.event(cancel.event_id).last_code == 9001
    assert sandbox.balance("c-over") == 0


def test_a_republish_with_other_content_after_delivery_is_recorded_not_sent(
    make_stack: type[Stack], sandbox: SandboxProcess, database_url: str
) -> None:
    """Re-publishing a delivered order with a new amount (a bug in checkout): the first
    content was sent and stays; the other is recorded on the event, shown by `gbq events`
    and `gbq status`, and never sent."""
    stack = make_stack(database_url)
    stack.start_worker(concurrency=1)
    stack.start_scheduler()
    first = OrderPaid(
        order_id="CHG",
        customer_id="c-chg",
        occurred_at=datetime.now(UTC) - timedelta(minutes=2),
        total_price=Decimal(20),
        total_paid=Decimal(20),
    )
    stack.publisher.publish(first)
    assert stack.wait_settled(1) == {"delivered": 1}
    # When: the inbox no longer holds it, so publish() cannot see the conflict itself
    assert stack.publisher.publish(first.model_copy(update={"total_paid": Decimal(15)}))
    wait_until(lambda: stack.event("paid:CHG").conflicts == 1, timeout_s=30, what="the conflict")
    # Then
    row = stack.event("paid:CHG")
    assert (row.state, json.loads(row.payload)["total_paid"]) == ("delivered", "20")
    assert json.loads(row.conflict_payload)["total_paid"] == "15"
    assert sandbox.balance("c-chg") == 20
    assert len([r for r in sandbox.requests() if r["transaction_id"] == "CHG"]) == 1
    shown = subprocess.run(
        [*GBQ, "events", "CHG", "--wide"],  # the other content whole, not cut to 80 columns
        env=stack.env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert "conflict" in shown.stdout
    assert '"total_paid":"15"' in shown.stdout.replace(" ", "")
    status = subprocess.run(
        [*GBQ, "status"], env=stack.env, capture_output=True, text=True, check=False
    )
    assert "published again with other content: 1" in status.stdout


def test_a_refund_waits_then_expires_without_its_paid_event(
    make_stack: type[Stack], sandbox: SandboxProcess, sqlite_url: str
) -> None:
    """A refund whose paid event never comes waits (normal: nothing is sent), then dies
    `expired` when GBQ_WAITING_WINDOW_S runs out."""
    stack = make_stack(sqlite_url, GBQ_WAITING_WINDOW_S="3")
    stack.start_worker(concurrency=1)
    stack.start_scheduler()
    stack.publisher.publish(
        OrderRefunded(
            order_id="NEVER-PAID",
            refund_id="R1",
            customer_id="c-never",
            occurred_at=T0,
            amount=Decimal(1),
        )
    )
    wait_until(lambda: stack.states() == {"waiting": 1}, timeout_s=30, what="the refund to wait")
    assert stack.wait_settled(1, timeout_s=60) == {"dead": 1}
    row = stack.event("refunded:NEVER-PAID:R1")
    assert (row.dead_reason, row.attempts) == ("expired", 0)
    assert [r for r in sandbox.requests() if r["transaction_id"] == "R1"] == []


@pytest.mark.parametrize("version", ["v3.0", "v4.0", "v4.1"])
def test_refunds_and_cancellations_take_back_bonus_points_too(
    make_stack: type[Stack], sandbox: SandboxProcess, sqlite_url: str, version: str
) -> None:
    """A double-points campaign on mats: 3 mats and 2 bottles earn 40 base + 30 bonus.
    A partial refund of 2 mats names them (20 base + 20 bonus back); the cancellation
    names what is left, so the wallet ends at exactly 0 (Gameball reverses cashback only
    for a refund without line items: the bonus would stay)."""
    sandbox.rules(campaign_multipliers={"category:mats": "2"})
    mat = LineItem(product_id="mat", quantity=3, price=Decimal(10), category=("mats",))
    bottle = LineItem(product_id="bottle", quantity=2, price=Decimal(5))
    paid = OrderPaid(
        order_id="BONUS",
        customer_id="c-bonus",
        occurred_at=T0,
        total_price=Decimal(40),
        total_paid=Decimal(40),
        line_items=(mat, bottle),
    )
    partial = OrderRefunded(
        order_id="BONUS",
        refund_id="BONUS-R1",
        customer_id="c-bonus",
        occurred_at=T0 + timedelta(minutes=1),
        amount=Decimal(20),
        line_items=(mat.model_copy(update={"quantity": 2}),),
    )
    cancel = OrderCancelled(
        order_id="BONUS", customer_id="c-bonus", occurred_at=T0 + timedelta(minutes=2)
    )
    stack = make_stack(sqlite_url, GBQ_GAMEBALL_API_VERSION=version)
    stack.start_worker(concurrency=1)
    stack.start_scheduler()
    stack.publisher.publish(paid)
    wait_until(lambda: sandbox.balance("c-bonus") == 70, timeout_s=60, what="70 points earned")
    stack.publisher.publish(partial)
    wait_until(lambda: sandbox.balance("c-bonus") == 30, timeout_s=60, what="40 points back")
    stack.publisher.publish(cancel)
    assert stack.wait_settled(3) == {"delivered": 3}
    assert sandbox.balance("c-bonus") == 0
    cancelled = [r for r in sandbox.requests() if r["transaction_id"] == "BONUS-cancel"]
    assert len(cancelled) == 1
    assert json.loads(stack.event("cancelled:BONUS").reversal_lines) == [
        {"productId": "mat", "quantity": 1, "price": 10},
        {"productId": "bottle", "quantity": 2, "price": 5},
    ]


@pytest.mark.parametrize(
    ("kind", "version"), [("order", "v4.1"), ("cashback", "v4.1"), ("cashback", "v3.0")]
)
def test_a_304_from_a_transaction_gbq_never_sent_moves_the_time_and_delivers(
    make_stack: type[Stack], sandbox: SandboxProcess, sqlite_url: str, kind: str, version: str
) -> None:
    """Another system recorded a transaction of the customer at our instant: Gameball
    answers 304/9003. The worker reads Gameball's records (the order's; for a cashback,
    which has no order, the customer's list in v4 and the id's in v3): not ours, so it
    moves its time on by a millisecond and sends again; nothing is dead-lettered."""
    v4 = version != "v3.0"
    foreign = {
        "customerId" if v4 else "playerUniqueId": "c-clash",
        "orderId": "FOREIGN-1",
        "orderDate": "2026-02-01T12:00:00.000Z",  # T0
        "totalPrice": 3,
        "totalPaid": 3,
    }
    headers = {"APIKey": SANDBOX_API_KEY, "secretKey": SANDBOX_SECRET_KEY}
    answer = httpx.post(
        f"{sandbox.url}/api/{version}/integrations/{'orders' if v4 else 'order'}",
        json=foreign,
        headers=headers,
    )
    assert answer.status_code == 200
    stack = make_stack(sqlite_url, GBQ_GAMEBALL_API_VERSION=version)
    stack.start_worker(concurrency=1)
    stack.start_scheduler()
    four = Decimal(4)
    ours: Event = (
        OrderPaid(
            order_id="OURS",
            customer_id="c-clash",
            occurred_at=T0,
            total_price=four,
            total_paid=four,
        )
        if kind == "order"
        else CashbackAwarded(
            transaction_id="OURS", customer_id="c-clash", occurred_at=T0, amount=four
        )
    )
    stack.publisher.publish(ours)
    assert stack.wait_settled(1) == {"delivered": 1}
    row = stack.event(f"{'paid' if kind == 'order' else 'cashback'}:OURS")
    assert (row.attempts, row.transaction_time) == (2, T0 + timedelta(milliseconds=1))
    assert sandbox.balance("c-clash") == 7
    codes = [r["code"] for r in sandbox.requests() if r["transaction_id"] == "OURS"]
    assert codes == [9003 if v4 else 304, None]


def foreign_writes(sandbox: SandboxProcess, version: str) -> None:
    """Another system's order SHARED-1 and cashback SHARED-2, straight to the sandbox."""
    v4 = version != "v3.0"
    base = f"{sandbox.url}/api/{version}/integrations"
    who = {"customerId" if v4 else "playerUniqueId": "c-foreign"}
    headers = {"APIKey": SANDBOX_API_KEY, "secretKey": SANDBOX_SECRET_KEY}
    order = {**who, "orderId": "SHARED-1", "totalPrice": 7, "totalPaid": 7}
    cashback = {
        **who,
        "transactionId": "SHARED-2",
        "transactionTime": "2026-02-01T11:00:00.000Z",
        "amount": 5,
    }
    for path, body in (
        ("orders" if v4 else "order", order),
        ("transactions/cashback" if v4 else "transaction/cashback", cashback),
    ):
        assert httpx.post(f"{base}/{path}", json=body, headers=headers).status_code == 200


@pytest.mark.parametrize("version", ["v3.0", "v4.1"])
def test_an_id_held_by_another_transaction_is_dead_never_counted_delivered(
    make_stack: type[Stack], sandbox: SandboxProcess, sqlite_url: str, version: str
) -> None:
    """Gameball's order, refund and cashback ids share one namespace. Another system
    recorded order SHARED-1 and cashback SHARED-2; our refund and cashback named SHARED-1
    and our order SHARED-2 are answered "already exists". The worker reads Gameball's
    records, sees the ids are not theirs, and dead-letters them with the code instead of
    counting them delivered. A cashback whose answer was lost is answered "already
    exists" too, and the records prove it ours: delivered, credited once."""
    foreign_writes(sandbox, version)
    taken = 305 if version == "v3.0" else 9004
    stack = make_stack(sqlite_url, GBQ_GAMEBALL_API_VERSION=version)
    stack.start_worker(concurrency=1)
    stack.start_scheduler()
    ten, minute = Decimal(10), timedelta(minutes=1)
    stack.publisher.publish(
        OrderPaid(
            order_id="MINE", customer_id="c-ns", occurred_at=T0, total_price=ten, total_paid=ten
        )
    )
    assert stack.wait_settled(1) == {"delivered": 1}
    sandbox.faults(drop_after_apply_count=1)
    stack.publisher.publish(
        CashbackAwarded(
            transaction_id="MINE-CB", customer_id="c-ns", occurred_at=T0 + minute, amount=Decimal(4)
        )
    )
    assert stack.wait_settled(2) == {"delivered": 2}
    stack.publisher.publish_many(
        [
            OrderRefunded(
                order_id="MINE",
                refund_id="SHARED-1",
                customer_id="c-ns",
                occurred_at=T0 + 2 * minute,
                amount=Decimal(2),
            ),
            CashbackAwarded(
                transaction_id="SHARED-1",
                customer_id="c-ns",
                occurred_at=T0 + 3 * minute,
                amount=Decimal(3),
            ),
            OrderPaid(
                order_id="SHARED-2",
                customer_id="c-ns",
                occurred_at=T0 + 4 * minute,
                total_price=Decimal(6),
                total_paid=Decimal(6),
            ),
        ]
    )
    assert stack.wait_settled(5) == {"delivered": 2, "dead": 3}
    assert sandbox.balance("c-ns") == 14  # the order and the cashback, once; nothing else
    assert sandbox.balance("c-foreign") == 12
    for event_id in ("refunded:MINE:SHARED-1", "cashback:SHARED-1", "paid:SHARED-2"):
        row = stack.event(event_id)
        assert (row.dead_reason, row.last_code, row.attempts) == ("rejected", taken, 1)
        assert "belongs to another transaction at Gameball" in row.last_message
    lost = stack.event("cashback:MINE-CB")
    assert (lost.state, lost.attempts, lost.last_code) == ("delivered", 2, taken)


def test_a_refund_named_like_a_known_order_is_refused_unsent(
    make_stack: type[Stack], sandbox: SandboxProcess, sqlite_url: str
) -> None:
    """The ledger knows order B: a refund of A named "B" would be answered "already
    exists" and never apply. It is dead before any call, and A's cancellation (which
    waited for it) still goes."""
    stack = make_stack(sqlite_url)
    stack.start_worker(concurrency=1)
    stack.start_scheduler()
    ten = Decimal(10)
    stack.publisher.publish_many(
        [
            OrderPaid(
                order_id=order, customer_id="c-kr", occurred_at=T0, total_price=ten, total_paid=ten
            )
            for order in ("A", "B")
        ]
    )
    assert stack.wait_settled(2) == {"delivered": 2}
    stack.publisher.publish(
        OrderRefunded(
            order_id="A",
            refund_id="B",
            customer_id="c-kr",
            occurred_at=T0 + timedelta(minutes=1),
            amount=Decimal(3),
        )
    )
    stack.publisher.publish(
        OrderCancelled(order_id="A", customer_id="c-kr", occurred_at=T0 + timedelta(minutes=2))
    )
    assert stack.wait_settled(4) == {"delivered": 3, "dead": 1}
    row = stack.event("refunded:A:B")
    assert (row.dead_reason, row.attempts) == ("rejected", 0)
    assert "is also an order id" in row.last_message
    assert [r["transaction_id"] for r in sandbox.requests()] == ["A", "B", "A-cancel"]
    assert sandbox.balance("c-kr") == 10


def test_reconcile_finds_what_gameball_lost_and_redrives_it(
    make_stack: type[Stack], sandbox: SandboxProcess, sqlite_url: str
) -> None:
    """`gbq reconcile` agrees with Gameball after delivery (orders and a cashback, with the
    customer's balance as Gameball holds it); when Gameball has no record of delivered
    events (here: its state wiped), it says so (exit 1) and --redrive sends them again,
    after which everything agrees."""
    stack = make_stack(sqlite_url)
    stack.start_worker(concurrency=1)
    stack.start_scheduler()
    stack.publisher.publish_many(
        [
            *(
                OrderPaid(
                    order_id=f"REC-{n}",
                    customer_id="c-rec",
                    occurred_at=T0 + timedelta(minutes=n),
                    total_price=Decimal(5),
                    total_paid=Decimal(5),
                )
                for n in range(3)
            ),
            CashbackAwarded(
                transaction_id="REC-CB", customer_id="c-rec", occurred_at=T0, amount=Decimal(4)
            ),
        ]
    )
    assert stack.wait_settled(4) == {"delivered": 4}

    def reconcile(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*GBQ, "reconcile", *args], env=stack.env, capture_output=True, text=True, check=False
        )

    def lines(result: subprocess.CompletedProcess[str]) -> list[dict[str, Any]]:
        return [json.loads(line) for line in result.stdout.splitlines()]

    agreed = reconcile("--customer", "c-rec", "--json")
    assert agreed.returncode == 0, agreed.stderr
    *findings, balance = lines(agreed)
    assert sorted((f["transaction_id"], f["verdict"]) for f in findings) == [
        ("REC-0", "agreed"),
        ("REC-1", "agreed"),
        ("REC-2", "agreed"),
        ("REC-CB", "agreed"),
    ]
    assert balance["customer_id"] == "c-rec"
    assert balance["gameball_balance"]["totalPointsBalance"] == 19  # v4.1, the default
    sandbox.reset()  # Gameball "loses" them
    lost = reconcile("--customer", "c-rec", "--json")
    assert lost.returncode == 1
    *findings, balance = lines(lost)
    assert {f["verdict"] for f in findings} == {"missing_at_gameball"}
    assert balance["gameball_balance"] is None  # Gameball no longer knows the customer
    partly = reconcile("--order", "REC-0", "--order", "REC-2", "--redrive", "--json")
    assert partly.returncode == 1
    assert [f["verdict"] for f in lines(partly)] == ["missing_at_gameball"] * 2
    assert "re-driven: 2" in partly.stderr
    wait_until(lambda: sandbox.balance("c-rec") == 10, timeout_s=60, what="the re-sent orders")
    assert reconcile("--order", "REC-0", "--order", "REC-2").returncode == 0
    shown = reconcile("--customer", "c-rec", "--redrive")
    assert "balance of c-rec at Gameball: totalPointsBalance 10" in shown.stdout
    assert "re-driven: 2" in shown.stderr  # REC-1 and the cashback
    wait_until(lambda: sandbox.balance("c-rec") == 19, timeout_s=60, what="the re-sent rest")
    assert reconcile("--customer", "c-rec").returncode == 0
