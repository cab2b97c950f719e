"""The events a settle releases are delivered by the same task, oldest first: no message
each, no claim and park again for all but the oldest. Past INLINE_RELEASED, and when the
ledger fails on the way, what is left is queued. Real Deliverer, ledger, Redis, sandbox."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
import redis
from sqlalchemy import event
from sqlalchemy.exc import OperationalError

from harness.processes import SandboxProcess
from producers.events import LineItem, OrderCancelled, OrderPaid, OrderRefunded
from producers.keys import QUEUE
from producers.publisher import Publisher
from worker.flows.delivery import INLINE_BUDGET_S, INLINE_RELEASED
from worker.process.runtime import Runtime, build_runtime
from worker.rules.states import EventState
from worker.settings import Settings

pytestmark = pytest.mark.integration
START = datetime(2026, 11, 1, tzinfo=UTC)


@pytest.fixture
def worker(driven_settings: Settings) -> Iterator[Runtime]:
    runtime = build_runtime(driven_settings)
    yield runtime
    runtime.close()


@pytest.fixture
def queue(driven_settings: Settings) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(driven_settings.effective_redis_url())
    yield client
    client.close()


def order_with_refunds(order_id: str, refunds: int) -> tuple[OrderPaid, list[OrderRefunded]]:
    """Paid 1,000; refunds of 1, 2, 3... a minute apart (published newest first)."""
    paid = OrderPaid(
        order_id=order_id,
        customer_id=f"c-{order_id}",
        occurred_at=START,
        total_price=Decimal(1000),
        total_paid=Decimal(1000),
    )
    return paid, [
        OrderRefunded(
            order_id=order_id,
            refund_id=f"R{n}",
            customer_id=f"c-{order_id}",
            occurred_at=START + timedelta(minutes=n),
            amount=Decimal(n),
        )
        for n in range(refunds, 0, -1)
    ]


def park_refunds(
    worker: Runtime, driven_settings: Settings, paid: OrderPaid, refunds: list[OrderRefunded]
) -> None:
    """Each refund's message delivered before the paid one's: each waits."""
    with Publisher(driven_settings) as publisher:
        publisher.publish_many([paid, *refunds])
    for refund in refunds:
        message = {"event_id": refund.event_id, "event": refund.model_dump(mode="json")}
        assert worker.deliverer.handle((), message) == "waiting"


def queued(queue: redis.Redis, events: list[OrderRefunded]) -> list[str]:
    """The events with a message in the queue (the id quoted: R1 is a prefix of R10)."""
    messages = queue.lrange(QUEUE, 0, -1)
    return [e.event_id for e in events if any(f'"{e.event_id}"'.encode() in m for m in messages)]


def refund_calls(sandbox: SandboxProcess) -> list[str]:
    return [r["transaction_id"] for r in sandbox.requests() if r["transaction_id"][:1] == "R"]


def test_a_settle_delivers_the_refunds_it_released_oldest_first_in_its_own_task(
    worker: Runtime,
    driven_settings: Settings,
    queue: redis.Redis,
    sandbox: SandboxProcess,
) -> None:
    paid, refunds = order_with_refunds("O-inline", 3)
    park_refunds(worker, driven_settings, paid, refunds)
    queue.delete(QUEUE)  # the deliveries are driven by hand
    message = {"event_id": paid.event_id, "event": paid.model_dump(mode="json")}
    assert worker.deliverer.handle((), message) == "delivered"
    states = worker.ledger.states_of([r.event_id for r in refunds])
    assert set(states.values()) == {EventState.DELIVERED}
    assert refund_calls(sandbox) == ["R1", "R2", "R3"]  # once each, in occurrence order
    assert queued(queue, refunds) == []  # no message needed
    assert sandbox.balance("c-O-inline") == 1000 - 6


def test_past_the_bound_the_released_events_left_are_queued(
    worker: Runtime,
    driven_settings: Settings,
    queue: redis.Redis,
    sandbox: SandboxProcess,
) -> None:
    paid, refunds = order_with_refunds("O-many", INLINE_RELEASED + 2)
    park_refunds(worker, driven_settings, paid, refunds)
    queue.delete(QUEUE)
    message = {"event_id": paid.event_id, "event": paid.model_dump(mode="json")}
    assert worker.deliverer.handle((), message) == "delivered"
    oldest_first = sorted(refunds, key=lambda r: r.occurred_at)
    left = [r.event_id for r in oldest_first[INLINE_RELEASED:]]
    assert refund_calls(sandbox) == [f"R{n}" for n in range(1, INLINE_RELEASED + 1)]
    assert sorted(queued(queue, refunds)) == sorted(left)
    assert {worker.ledger.get(e).state for e in left} == {EventState.PENDING}  # type: ignore[union-attr]
    for event_id in left:
        assert worker.deliverer.handle((), {"event_id": event_id}) == "delivered"
    total = sum(n for n in range(1, INLINE_RELEASED + 3))
    assert sandbox.balance("c-O-many") == 1000 - total


def test_a_ledger_failure_among_the_released_events_queues_those_left(
    worker: Runtime,
    driven_settings: Settings,
    queue: redis.Redis,
    sandbox: SandboxProcess,
) -> None:
    """The second released event's claim fails (the ledger went away): the first stays
    delivered, the second and third are pending with a message each, and those messages
    deliver them once."""
    paid, refunds = order_with_refunds("O-fails", 3)
    park_refunds(worker, driven_settings, paid, refunds)
    queue.delete(QUEUE)
    claim, claims = worker.ledger.claim_in_order, []  # how a released event is claimed

    def fail_second(*args: Any, **kwargs: Any) -> Any:
        claims.append(args[0])
        if len(claims) == 2:
            raise OperationalError("UPDATE gbq_events", {}, Exception("server closed"))
        return claim(*args, **kwargs)

    worker.ledger.claim_in_order = fail_second  # type: ignore[method-assign]
    message = {"event_id": paid.event_id, "event": paid.model_dump(mode="json")}
    with pytest.raises(OperationalError):
        worker.deliverer.handle((), message)
    worker.ledger.claim_in_order = claim  # type: ignore[method-assign]
    assert len(claims) == 2
    assert refund_calls(sandbox) == ["R1"]
    second_and_third = [refunds[1].event_id, refunds[0].event_id]
    assert worker.ledger.states_of(second_and_third) == dict.fromkeys(
        second_and_third, EventState.PENDING
    )
    assert sorted(queued(queue, refunds)) == sorted(second_and_third)
    for event_id in second_and_third:
        assert worker.deliverer.handle((), {"event_id": event_id}) == "delivered"
    assert sandbox.balance("c-O-fails") == 1000 - 6


def test_a_task_that_has_run_its_budget_queues_the_released_events_at_the_front(
    worker: Runtime,
    driven_settings: Settings,
    queue: redis.Redis,
    sandbox: SandboxProcess,
) -> None:
    """Gameball slower than INLINE_BUDGET_S: the settle's own call uses the budget, so
    the task starts no other call; its three released refunds are queued at the front
    (where BRPOP takes first), and the pool process is free after one call."""
    paid, refunds = order_with_refunds("O-slow", 3)
    park_refunds(worker, driven_settings, paid, refunds)
    queue.delete(QUEUE)
    queue.lpush(QUEUE, b"a newer message")  # published meanwhile: the released go first
    sandbox.faults(latency_s=INLINE_BUDGET_S + 0.2)
    message = {"event_id": paid.event_id, "event": paid.model_dump(mode="json")}
    assert worker.deliverer.handle((), message) == "delivered"
    assert refund_calls(sandbox) == []  # no call after the budget was spent
    front = queue.lrange(QUEUE, -3, -1)  # the right end: taken first
    assert [
        e.event_id for e in refunds[::-1] if any(f'"{e.event_id}"'.encode() in m for m in front)
    ] == [
        "refunded:O-slow:R1",
        "refunded:O-slow:R2",
        "refunded:O-slow:R3",
    ]
    assert queue.lindex(QUEUE, 0) == b"a newer message"
    sandbox.faults(latency_s=0)
    for refund in sorted(refunds, key=lambda r: r.occurred_at):
        assert worker.deliverer.handle((), {"event_id": refund.event_id}) == "delivered"
    assert sandbox.balance("c-O-slow") == 1000 - 6


@contextmanager
def commits(runtime: Runtime) -> Iterator[list[str]]:
    """The ledger transactions committed meanwhile (one entry per commit)."""
    seen: list[str] = []

    def count(_connection: object) -> None:
        seen.append("commit")

    event.listen(runtime.ledger.engine, "commit", count)
    try:
        yield seen
    finally:
        event.remove(runtime.ledger.engine, "commit", count)


def paid_with_lines(order_id: str) -> OrderPaid:
    return OrderPaid(
        order_id=order_id,
        customer_id=f"c-{order_id}",
        occurred_at=START,
        total_price=Decimal(100),
        total_paid=Decimal(100),
        line_items=(
            LineItem(product_id="A", quantity=2, price=Decimal(30)),
            LineItem(product_id="B", quantity=1, price=Decimal(40)),
        ),
    )


def test_a_reversal_costs_two_ledger_transactions_its_order_time_and_lines_included(
    worker: Runtime,
    driven_settings: Settings,
    queue: redis.Redis,
    sandbox: SandboxProcess,
) -> None:
    """A refund and a cancellation (GBQ_GAMEBALL_REFUND_TIME=original, the default) are
    read with their order, moved to its time and given their lines in their claim's
    transaction: two commits each (claim, record), from a message of their own and
    released by their paid event's settle alike. The times and lines are as before."""
    paid = paid_with_lines("O-two")
    refund = OrderRefunded(
        order_id="O-two",
        refund_id="R-A",
        customer_id="c-O-two",
        occurred_at=START + timedelta(minutes=1),
        amount=Decimal(30),
        line_items=(LineItem(product_id="A", quantity=1, price=Decimal(30)),),
    )
    cancel = OrderCancelled(
        order_id="O-two", customer_id="c-O-two", occurred_at=START + timedelta(minutes=2)
    )
    with Publisher(driven_settings) as publisher:
        publisher.publish_many([paid, refund, cancel])

    def handle(sent: OrderPaid | OrderRefunded | OrderCancelled) -> str:
        message = {"event_id": sent.event_id, "event": sent.model_dump(mode="json")}
        return str(worker.deliverer.handle((), message))

    assert handle(cancel) == "waiting"  # parked in its first transaction
    with commits(worker) as paid_and_released:
        assert handle(paid) == "delivered"
    with commits(worker) as own_message:
        assert handle(refund) == "delivered"
    # The paid event (claim, record) released the cancellation, whose claim found the
    # refund (ingested from the inbox with it) before it and parked it again: 3 commits.
    # The refund (claim, record) released it once more: claim, record.
    assert len(paid_and_released) == 2 + 1
    assert len(own_message) == 2 + 2
    assert worker.ledger.get(cancel.event_id).state == EventState.DELIVERED  # type: ignore[union-attr]
    paid_time = worker.ledger.get(paid.event_id).transaction_time  # type: ignore[union-attr]
    times = {e.event_id: worker.ledger.get(e.event_id).transaction_time for e in (refund, cancel)}  # type: ignore[union-attr]
    assert times == {
        refund.event_id: paid_time + timedelta(milliseconds=1),
        cancel.event_id: paid_time + timedelta(milliseconds=2),
    }
    lines = json.loads(worker.ledger.get(cancel.event_id).reversal_lines)  # type: ignore[union-attr, arg-type]
    assert [(line["productId"], line["quantity"]) for line in lines] == [("A", 1), ("B", 1)]
    assert sandbox.balance("c-O-two") == 0
