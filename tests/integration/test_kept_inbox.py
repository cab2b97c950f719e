"""GBQ_LEDGER_STANDBYS: the inbox keeps what the ledger ingested until its standbys have
it, and brings back what the ledger lost. Real Redis and PostgreSQL (the forgetting once
a real standby has flushed is in test_ledger_failover.py)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from pydantic import SecretStr
from sqlalchemy import Engine, create_engine, delete
from sqlalchemy.orm import Session

from harness.processes import SandboxProcess, wait_until
from harness.stack import Stack
from producers.events import OrderCancelled, OrderPaid, OrderRefunded
from producers.keys import (
    INBOX_DUE_KEY,
    INBOX_KEPT_KEY,
    INBOX_KEY,
    INBOX_SHA_KEY,
    ORDER_INBOX_PREFIX,
    QUEUE,
)
from producers.outbox import create_outbox_table, stage
from producers.publisher import Publisher
from producers.spool import Spool
from producers.transport import redis_client
from tests.conftest import redis_for
from worker.coordination.queue import RedisQueue
from worker.flows.scheduler import Scheduler
from worker.ledger.engine import create_ledger_engine
from worker.ledger.models import EventRow
from worker.ledger.outbox import staged
from worker.ledger.repository import Ledger
from worker.settings import Settings

pytestmark = pytest.mark.integration
PAID = OrderPaid(
    order_id="O-kept",
    customer_id="c",
    occurred_at=datetime(2026, 11, 1, tzinfo=UTC),
    total_price=Decimal(10),
    total_paid=Decimal(10),
)


def test_a_kept_entry_leaves_the_due_index_but_stays_in_the_inbox_and_its_order(
    any_redis_url: str, tmp_path: Path
) -> None:
    with Publisher(Settings(home=tmp_path, redis_url=SecretStr(any_redis_url))) as publisher:
        publisher.publish(PAID)
    client = redis_for(any_redis_url)
    queue = RedisQueue(client, keep_done=True)
    before = queue.time()
    queue.inbox_done([(PAID.event_id, PAID.order_id)])
    assert client.hexists(INBOX_KEY, PAID.event_id)
    assert client.hexists(INBOX_SHA_KEY, PAID.event_id)  # a changed re-publish is still refused
    assert client.zscore(INBOX_DUE_KEY, PAID.event_id) is None  # no sweep ingests it again
    # Its order's later refunds and cancellations still see it (the ledger may lose it)
    assert client.sismember(ORDER_INBOX_PREFIX + PAID.order_id, PAID.event_id)
    assert [e.event_id for e in queue.inbox_for_order(PAID.order_id)] == [PAID.event_id]
    (entry, marked), *others = queue.kept_before(queue.time() + 1, 10)[0]
    assert (entry.event_id, others) == (PAID.event_id, [])
    assert before <= marked <= queue.time()  # Redis's clock
    queue.forget_kept([(PAID.event_id, PAID.order_id)])
    assert not client.exists(
        INBOX_KEY, INBOX_SHA_KEY, INBOX_KEPT_KEY, ORDER_INBOX_PREFIX + PAID.order_id
    )
    client.close()


def scheduler_keeping(
    home: Path, redis_url: str, database_url: str, outbox_engine: Engine | None = None
) -> tuple[Scheduler, Ledger, Settings]:
    """A scheduler with GBQ_LEDGER_STANDBYS=1 that looks at kept entries every tick."""
    settings = Settings(
        home=home,
        redis_url=SecretStr(redis_url),
        database_url=SecretStr(database_url),
        ledger_standbys=1,
        redrive_after_s=0.0001,
    )
    ledger = Ledger(create_ledger_engine(database_url))
    scheduler = Scheduler(
        settings,
        ledger=ledger,
        redis_client=redis_client(redis_url, 5),
        spool=Spool(settings.effective_spool_path),
        outbox_engine=outbox_engine,
    )
    return scheduler, ledger, settings


@pytest.fixture
def kept_scheduler(
    tmp_path: Path, redis_url: str, database_url: str
) -> Iterator[tuple[Scheduler, Ledger]]:
    scheduler, ledger, settings = scheduler_keeping(tmp_path, redis_url, database_url)
    with Publisher(settings) as publisher:
        publisher.publish(PAID)
    yield scheduler, ledger
    ledger.engine.dispose()


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_without_a_standby_kept_entries_stay_and_what_the_ledger_lost_comes_back(
    kept_scheduler: tuple[Scheduler, Ledger], redis_url: str
) -> None:
    scheduler, ledger = kept_scheduler
    client = redis_for(redis_url)
    client.delete(QUEUE)  # the message lost: the inbox sweep ingests the entry, and keeps it
    assert scheduler.tick().counts["inbox"] == 1
    assert client.zscore(INBOX_KEPT_KEY, PAID.event_id) is not None
    # No standby streams from this PostgreSQL: nothing is forgotten
    report = scheduler.tick().counts
    assert report.get("kept_forgotten", 0) == 0
    assert client.hexists(INBOX_KEY, PAID.event_id)
    # A failover lost the ledger's row: the kept entry brings it back, and stays kept
    with ledger.engine.begin() as connection:
        connection.execute(delete(EventRow).where(EventRow.event_id == PAID.event_id))
    assert scheduler.tick().counts["kept_ingested_again"] == 1
    assert ledger.states_of([PAID.event_id]) == {PAID.event_id: "pending"}
    assert client.zscore(INBOX_KEPT_KEY, PAID.event_id) is not None
    client.close()


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_a_refund_whose_ingest_a_failover_lost_still_goes_before_the_cancel(
    make_stack: type[Stack], sandbox: SandboxProcess, database_url: str
) -> None:
    """A worker ingested the refund and took its message, then the ledger failed over and
    lost it. Its kept inbox entry is still in its order's set: the later cancellation
    brings it back and waits for it. (Before, the cancel went first and the refund came
    back only to be answered 302 "already cancelled" and die.)"""
    order = "O-kept-refund"
    paid = OrderPaid(
        order_id=order,
        customer_id="c-kr",
        occurred_at=PAID.occurred_at,
        total_price=Decimal(10),
        total_paid=Decimal(10),
    )
    refund = OrderRefunded(
        order_id=order,
        refund_id="R-kept",
        customer_id="c-kr",
        occurred_at=PAID.occurred_at + timedelta(minutes=1),
        amount=Decimal(4),
    )
    cancel = OrderCancelled(
        order_id=order, customer_id="c-kr", occurred_at=PAID.occurred_at + timedelta(minutes=2)
    )
    stack = make_stack(database_url, GBQ_LEDGER_STANDBYS="1")
    stack.publisher.publish_many([paid, refund])
    client = stack.publisher._redis
    for raw in client.lrange(QUEUE, 0, -1):
        if json.loads(raw)["headers"]["id"] == refund.event_id:
            assert client.lrem(QUEUE, 1, raw) == 1  # its message taken, its ingest lost
    RedisQueue(client, keep_done=True).inbox_done([(refund.event_id, order)])
    stack.start_worker(concurrency=1)
    assert stack.wait_settled(1, timeout_s=60) == {"delivered": 1}  # the paid event
    stack.publisher.publish(cancel)
    # The cancel read its order's set: the refund is in the ledger again, the cancel waits
    wait_until(
        lambda: (
            stack.ledger.states_of([refund.event_id, cancel.event_id])
            == {refund.event_id: "pending", cancel.event_id: "waiting"}
        ),
        timeout_s=30,
        what="the cancel to wait for the refund it brought back",
    )
    stack.start_scheduler()  # its redrive sends the refund (its message is gone)
    assert stack.wait_settled(3, timeout_s=60) == {"delivered": 3}
    ours = {order, "R-kept", f"{order}-cancel"}
    applied = [t["transaction_id"] for t in sandbox.state()["transactions"]]
    assert [t for t in applied if t in ours] == [order, "R-kept", f"{order}-cancel"]
    assert sandbox.balance("c-kr") == 0


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_with_standbys_the_outbox_goes_through_the_inbox_and_outlives_a_failover(
    tmp_path: Path, redis_url: str, database_url: str
) -> None:
    """The application's own database holds the outbox: once its row is deleted, only the
    inbox's kept entry can bring the event back after a ledger failover lost it."""
    application = create_engine(f"sqlite:///{tmp_path / 'shop.db'}")
    create_outbox_table(application)
    scheduler, ledger, _ = scheduler_keeping(tmp_path, redis_url, database_url, application)
    with Session(application) as session, session.begin():
        stage(session, PAID)
    client = redis_for(redis_url)
    assert scheduler.tick().counts["outbox"] == 1
    assert staged(application, 10) == []
    assert client.hexists(INBOX_KEY, PAID.event_id)  # in the inbox, with its message
    client.delete(QUEUE)  # no worker here: the inbox sweep ingests it, and keeps it
    assert scheduler.tick().counts["inbox"] == 1
    assert ledger.states_of([PAID.event_id]) == {PAID.event_id: "pending"}
    assert client.zscore(INBOX_KEPT_KEY, PAID.event_id) is not None
    with ledger.engine.begin() as connection:  # a failover lost the ledger's row
        connection.execute(delete(EventRow).where(EventRow.event_id == PAID.event_id))
    assert scheduler.tick().counts["kept_ingested_again"] == 1
    assert ledger.states_of([PAID.event_id]) == {PAID.event_id: "pending"}
    client.close()
    ledger.engine.dispose()
