"""Interleavings of two deliverers that a test can only hit by placing one inside the other:
the real Deliverer, ledger, Redis queue and sandbox, with the second worker's step run at
the exact point where the race opens."""

from __future__ import annotations

import json
import multiprocessing
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
import redis
from sqlalchemy import Engine, text
from sqlalchemy import event as sa_event
from sqlalchemy.exc import OperationalError

from harness.processes import SandboxProcess, wait_until
from producers.events import OrderPaid, OrderRefunded
from producers.keys import BREAKER_KEY, QUEUE
from producers.publisher import Publisher
from worker.ledger.core import new_event, order_lock_key
from worker.ledger.engine import create_ledger_engine
from worker.ledger.repository import Ledger
from worker.process.runtime import Runtime, build_runtime
from worker.rules.breaker import Breaker, State
from worker.rules.states import EventState
from worker.settings import Settings

pytestmark = pytest.mark.integration
START = datetime(2026, 11, 1, tzinfo=UTC)


@pytest.fixture
def workers(driven_settings: Settings) -> Iterator[tuple[Runtime, Runtime]]:
    first, second = build_runtime(driven_settings), build_runtime(driven_settings)
    yield first, second
    for runtime in (first, second):
        runtime.close()


def test_paid_settling_between_a_refunds_check_and_its_park_still_wakes_the_refund(
    driven_settings: Settings, workers: tuple[Runtime, Runtime], sandbox: SandboxProcess
) -> None:
    """Worker A reads 'paid not delivered yet' for a refund that came back by id (a
    re-sent message: its read and its park are two transactions); before A parks it,
    worker B delivers the paid event and wakes the order's waiting events (none yet). The
    refund must still be released at once, not after GBQ_REDRIVE_AFTER_S."""
    paid, refund = race_order("O-race", customer="c-race")
    with Publisher(driven_settings) as publisher:
        publisher.publish_many([paid, refund])
    worker_a, worker_b = workers
    worker_a.ledger.ingest([new_event(refund, None)], datetime.now(UTC))
    queue = redis.Redis.from_url(driven_settings.effective_redis_url())
    queue.delete(QUEUE)  # the deliveries below are driven by hand
    park = worker_a.ledger.park

    def park_after_b_delivers_paid(*args: object, **kwargs: object) -> bool:
        assert worker_b.deliverer.handle((), {"event_id": paid.event_id}) == "delivered"
        return park(*args, **kwargs)  # type: ignore[arg-type]

    worker_a.ledger.park = park_after_b_delivers_paid  # type: ignore[method-assign]
    assert worker_a.deliverer.handle((), {"event_id": refund.event_id}) == "waiting"
    # Then the refund is pending again with a message queued, not parked for an hour
    row = worker_a.ledger.get(refund.event_id)
    assert row is not None
    assert row.state == EventState.PENDING
    queued = [
        message for message in queue.lrange(QUEUE, 0, -1) if refund.event_id.encode() in message
    ]
    assert len(queued) == 1
    # and delivering that message credits the wallet exactly once: 100 - 40
    worker_a.ledger.park = park  # type: ignore[method-assign]
    assert worker_b.deliverer.handle((), {"event_id": refund.event_id}) == "delivered"
    assert sandbox.balance("c-race") == 60
    queue.close()


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_a_refund_parked_in_its_first_transaction_is_woken_by_a_settle_that_waited(
    driven_settings: Settings, workers: tuple[Runtime, Runtime], sandbox: SandboxProcess
) -> None:
    """A refund's own message: worker A reads its order (paid not delivered) and parks it
    in the same transaction, with no re-check after. Worker B delivers the paid event in
    between A's read and A's commit: B must wait for A (the order's lock), so that its
    release sees the parked refund and delivers it, once. Had B not waited, A would park
    the refund after B's release: it would sit until GBQ_REDRIVE_AFTER_S (an hour here)."""
    paid, refund = race_order("O-atomic")
    with Publisher(driven_settings) as publisher:
        publisher.publish_many([paid, refund])
    worker_a, worker_b = workers
    # the paid event is in the ledger already, so that B's claim of it waits on nothing
    # but the order's lock (not on A's insert of the row)
    worker_b.ledger.ingest([new_event(paid, None)], datetime.now(UTC))
    queue = redis.Redis.from_url(driven_settings.effective_redis_url())
    queue.delete(QUEUE)  # the deliveries below are driven by hand
    results: dict[str, str] = {}
    b = threading.Thread(
        target=lambda: results.update(
            b=worker_b.deliverer.handle(
                (), {"event_id": paid.event_id, "event": paid.model_dump(mode="json")}
            )
        )
    )

    def b_between_the_read_and_the_park(_c: Any, _cur: Any, statement: str, *_: Any) -> None:
        if statement.startswith("SELECT gbq_events.order_id, gbq_events.event_id") and (
            not b.is_alive() and "b" not in results
        ):
            b.start()  # A holds its transaction open here until B waits, or B is done
            wait_until(
                lambda: "b" in results or waits_for_order(worker_b.ledger.engine, "O-atomic"),
                timeout_s=30,
                what="B to wait for A's transaction, or to finish",
            )

    sa_event.listen(worker_a.ledger.engine, "after_cursor_execute", b_between_the_read_and_the_park)
    message = {"event_id": refund.event_id, "event": refund.model_dump(mode="json")}
    results["a"] = worker_a.deliverer.handle((), message)
    b.join(60)
    assert results == {"a": "waiting", "b": "delivered"}
    row = worker_a.ledger.get(refund.event_id)
    assert row is not None
    assert row.state == EventState.DELIVERED  # by B, right after the paid event
    assert [m for m in queue.lrange(QUEUE, 0, -1) if refund.event_id.encode() in m] == []
    assert len(worker_a.ledger.attempts_of(refund.event_id)) == 1
    assert sandbox.balance("c-O-atomic") == 60
    queue.close()


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_a_refund_parked_while_its_paid_event_settles_is_still_woken(
    driven_settings: Settings, workers: tuple[Runtime, Runtime], sandbox: SandboxProcess
) -> None:
    """Worker B's transaction that settles the paid event has run its release of the
    order's waiting events (none yet) and not committed; meanwhile worker A finds the
    paid event in flight, parks the refund and re-checks. Under READ COMMITTED each could
    miss the other (a lost wakeup until GBQ_REDRIVE_AFTER_S): the order's lock makes A's
    park wait for B's commit, so A's re-check sees the paid event delivered."""
    paid, refund = race_order("O-overlap")
    worker_a, worker_b = workers
    # The refund is in the ledger already and comes back by id (a re-sent message): a
    # refund's own ingest takes the order's lock, so it would wait for B at once.
    worker_a.ledger.ingest([new_event(refund, None)], datetime.now(UTC))
    queue = redis.Redis.from_url(driven_settings.effective_redis_url())
    released_ran, go = threading.Event(), threading.Event()

    def pause_after_the_release(_c: Any, _cur: Any, statement: str, *_: Any) -> None:
        if statement.startswith("UPDATE gbq_events SET state") and (
            "WHERE gbq_events.order_id = " in statement and not released_ran.is_set()
        ):
            released_ran.set()
            go.wait(60)  # B's transaction stays open here until the test lets it go

    sa_event.listen(worker_b.ledger.engine, "after_cursor_execute", pause_after_the_release)
    results: dict[str, str] = {}
    b = threading.Thread(
        target=lambda: results.update(
            b=worker_b.deliverer.handle(
                (), {"event_id": paid.event_id, "event": paid.model_dump(mode="json")}
            )
        )
    )
    a = threading.Thread(
        target=lambda: results.update(
            a=worker_a.deliverer.handle((), {"event_id": refund.event_id})
        )
    )
    b.start()
    try:
        wait_until(released_ran.is_set, timeout_s=30, what="B's release, not committed")
        a.start()
        wait_until(
            lambda: "a" in results or waits_for_order(worker_a.ledger.engine, "O-overlap"),
            timeout_s=30,
            what="A to finish or to wait for B",
        )
    finally:
        go.set()
        b.join(60)
    a.join(60)
    assert results == {"b": "delivered", "a": "waiting"}
    row = worker_a.ledger.get(refund.event_id)
    assert row is not None
    assert row.state == EventState.PENDING  # woken by A's re-check, not left waiting
    queued = [m for m in queue.lrange(QUEUE, 0, -1) if refund.event_id.encode() in m]
    assert len(queued) == 1
    assert worker_b.deliverer.handle((), {"event_id": refund.event_id}) == "delivered"
    assert sandbox.balance("c-O-overlap") == 60
    queue.close()


def test_a_ledger_failure_after_the_claim_hands_the_event_back_at_once(
    driven_settings: Settings, workers: tuple[Runtime, Runtime], sandbox: SandboxProcess
) -> None:
    """Gameball applied the call, then recording it failed (a deadlock's victim, a lost
    connection): the event goes back to pending with a message queued at once, not after
    its lease (GBQ_LEASE_S); the next delivery settles it from Gameball's "already
    exists", and the wallet is credited once."""
    paid, _ = race_order("O-handback")
    worker, _ = workers
    queue = redis.Redis.from_url(driven_settings.effective_redis_url())
    record = worker.ledger.record_and_settle

    def fail_once(*args: Any, **kwargs: Any) -> Any:
        worker.ledger.record_and_settle = record  # type: ignore[method-assign]
        raise OperationalError("UPDATE gbq_events", {}, Exception("deadlock detected"))

    worker.ledger.record_and_settle = fail_once  # type: ignore[method-assign]
    message = {"event_id": paid.event_id, "event": paid.model_dump(mode="json")}
    with pytest.raises(OperationalError):
        worker.deliverer.handle((), message)
    row = worker.ledger.get(paid.event_id)
    assert row is not None
    assert (row.state, row.lease_owner, row.attempts) == (EventState.PENDING, None, 0)
    assert [m for m in queue.lrange(QUEUE, 0, -1) if paid.event_id.encode() in m]
    assert sandbox.balance("c-O-handback") == 100  # applied by the unrecorded call
    assert worker.deliverer.handle((), {"event_id": paid.event_id}) == "delivered"
    assert sandbox.balance("c-O-handback") == 100
    queue.close()


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_an_event_ingested_twice_at_once_never_deadlocks(database_url: str) -> None:
    """Each event ingested at the same moment by two processes: by its own message
    (ingest and claim) and by a batch read of its order's inbox, as a refund's delivery
    does. PostgreSQL's speculative insertion deadlocked the two on the (customer,
    transaction time) index, 7 to 10 times in these 1,000 orders (a victim that had
    claimed was left in flight until its lease expired), until ingests took their order's
    lock."""
    context = multiprocessing.get_context("spawn")
    errors, in_step = context.Queue(), context.Barrier(2)
    processes = [
        context.Process(target=ingest_in_step, args=(database_url, how, in_step, errors))
        for how in ("claim", "batch")
    ]
    for process in processes:
        process.start()
    for process in processes:
        process.join(180)
    assert [process.exitcode for process in processes] == [0, 0]
    assert sorted([errors.get(timeout=10), errors.get(timeout=10)]) == [[], []]
    ledger = Ledger(create_ledger_engine(database_url))
    assert ledger.counts_by_state() == {"in_flight": 2 * IN_STEP_ORDERS}
    ledger.engine.dispose()


IN_STEP_ORDERS = 1000


def ingest_in_step(url: str, how: str, in_step: Any, errors: Any) -> None:
    """One side of the test above, in its own process: each order's events as its
    messages would ("claim"), or as its inbox read would ("batch"), in step with the other."""
    ledger, now, found = Ledger(create_ledger_engine(url)), datetime.now(UTC), []
    for number in range(IN_STEP_ORDERS):
        pair = race_order(f"O-twice-{number}")
        for event in pair:
            in_step.wait(30)
            try:
                if how == "claim":
                    lease = now + timedelta(seconds=60)
                    ledger.ingest_and_claim(new_event(event, None), "w", now, lease)
                elif event is pair[0]:
                    ledger.ingest([new_event(e, None) for e in pair], now)
            except OperationalError as error:
                found.append(str(error).splitlines()[0])
    errors.put(found)
    ledger.engine.dispose()


def race_order(order_id: str, customer: str = "") -> tuple[OrderPaid, OrderRefunded]:
    """An order paid 100 and its refund of 40, five minutes later."""
    customer = customer or f"c-{order_id}"
    paid = OrderPaid(
        order_id=order_id,
        customer_id=customer,
        occurred_at=START,
        total_price=Decimal(100),
        total_paid=Decimal(100),
    )
    refund = OrderRefunded(
        order_id=order_id,
        refund_id="R1",
        customer_id=customer,
        occurred_at=START + timedelta(minutes=5),
        amount=Decimal(40),
    )
    return paid, refund


def waits_for_order(engine: Engine, order_id: str) -> bool:
    """Whether a PostgreSQL backend waits for this order's lock (advisory locks are the
    database's: other tests' schemas take theirs meanwhile)."""
    query = text(
        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted "
        "AND classid = 6775409 AND objid = :objid AND objsubid = 2"
    )
    objid = order_lock_key(order_id) & 0xFFFFFFFF  # pg_locks shows the key as an oid
    with engine.connect() as connection:
        return bool(connection.execute(query, {"objid": objid}).scalar())


def test_a_successful_probe_makes_the_events_the_breaker_held_back_due_at_once(
    driven_settings: Settings, workers: tuple[Runtime, Runtime]
) -> None:
    """Deferred by an open breaker to the next probe (a cool-down away); when a probe
    succeeds they are due now, not up to a cool-down later."""
    worker, _ = workers
    events = [
        OrderPaid(
            order_id=f"O-held-{number}",
            customer_id="c-held",
            occurred_at=START + timedelta(minutes=number),
            total_price=Decimal(10),
            total_paid=Decimal(10),
        )
        for number in range(3)
    ]
    client = redis.Redis.from_url(driven_settings.effective_redis_url())
    opened = Breaker(State.OPEN, time.time(), "test: Gameball down")
    client.set(BREAKER_KEY, opened.to_json())
    for event in events[:2]:
        assert (
            worker.deliverer.handle(
                (), {"event_id": event.event_id, "event": event.model_dump(mode="json")}
            )
            == "deferred"
        )
    held = [worker.ledger.get(event.event_id) for event in events[:2]]
    assert all(
        row
        and row.next_attempt_at
        and row.next_attempt_at > datetime.now(UTC) + timedelta(seconds=20)
        for row in held
    )
    # When the cool-down has passed and the next call (the probe) succeeds
    client.set(BREAKER_KEY, replace(opened, since=time.time() - 31).to_json())
    assert (
        worker.deliverer.handle(
            (), {"event_id": events[2].event_id, "event": events[2].model_dump(mode="json")}
        )
        == "delivered"
    )
    # Then the breaker is closed and the held-back events are sent again at once, oldest
    # first, at the front of the queue
    assert Breaker.from_json(client.get(BREAKER_KEY)).state is State.CLOSED
    for event in events[:2]:
        row = worker.ledger.get(event.event_id)
        assert row is not None
        assert row.state == EventState.PENDING
        assert row.next_attempt_at is None
    front = [json.loads(m)["headers"]["id"] for m in reversed(client.lrange(QUEUE, -2, -1))]
    assert front == [events[0].event_id, events[1].event_id]
    client.close()
