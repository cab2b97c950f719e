"""Hostile input never stops delivery.

Poison is written straight into Redis (the queue, kombu's unacked hash, the inbox, the
quarantine), the spool file and the outbox table, as anyone with access to them could,
while a canary stream of good events flows through real workers and a real scheduler.
Exact outcome: the same worker processes alive, every canary delivered with exact
wallets, one dead letter ``malformed`` per poison holding its bytes, no sweep failing,
and the operator CLI printing every dead letter without a traceback.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import redis
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from sqlalchemy import insert, select

from harness.processes import GBQ, SandboxProcess, wait_until
from harness.services import RedisServer, sqlite_ledger
from harness.stack import Process, Stack
from producers.events import OrderPaid, event_to_json
from producers.keys import INBOX_DUE_KEY, INBOX_KEY, ORDER_INBOX_PREFIX, QUARANTINE_KEY, QUEUE
from producers.outbox import outbox_table
from producers.quarantine import KEEP_BYTES
from producers.spool import Spool
from producers.wire import InboxEntry
from tests import poison as catalogue
from tests.conftest import redis_for
from tests.factories import paid, refund
from worker.ledger.models import EventRow
from worker.rules.intake import Refused, screen

pytestmark = pytest.mark.integration
ORDERS = 24


def _seed_unacked(client: redis.Redis, entries: list[catalogue.Poison]) -> None:
    """kombu's unacked hash, as a crashed worker (or an intruder) would leave it: old enough
    for the next starting worker to restore at once."""
    old = time.time() - 7200
    for number, entry in enumerate(entries):
        tag = f"poison-tag-{number}"
        client.hset("unacked", tag, entry.raw)
        client.zadd("unacked_index", {tag: old})


def _seed_inbox(client: redis.Redis, canary_order: str) -> list[catalogue.Poison]:
    old = time.time() - 3600
    poisons = []
    for key, found in catalogue.inbox_envelopes():
        client.hset(INBOX_KEY, key, found.raw)
        client.zadd(INBOX_DUE_KEY, {key: old})
        poisons.append(found)
    # Delivery reads an order's inbox index too: poison there must not stop the order.
    client.sadd(ORDER_INBOX_PREFIX + canary_order, b"paid:INBOX-1", b"\xff\xfe")
    return poisons


def _seed_spool(path: Path, good: OrderPaid) -> list[catalogue.Poison]:
    Spool(path).add([])  # creates the file and table
    rows = catalogue.spool_rows()
    with sqlite3.connect(path) as connection:
        connection.executemany(
            "INSERT INTO spool (event_id, event_json, published_at) VALUES (?, ?, ?)",
            [row[:3] for row in rows],
        )
    Spool(path).add([InboxEntry(good.event_id, event_to_json(good), time.time())])
    return [row[3] for row in rows]


def _seed_outbox(stack: Stack, good: OrderPaid) -> list[catalogue.Poison]:
    rows = catalogue.outbox_rows()
    now = datetime.now(UTC)
    with stack.ledger.engine.begin() as connection:
        for event_id, event_json, _ in rows:
            connection.execute(
                insert(outbox_table).values(
                    event_id=event_id, event_json=event_json, created_at=now
                )
            )
        connection.execute(
            insert(outbox_table).values(
                event_id=good.event_id, event_json=event_to_json(good), created_at=now
            )
        )
    return [row[2] for row in rows]


def _malformed(stack: Stack) -> dict[str, Any]:
    with stack.ledger.engine.connect() as connection:
        rows = connection.execute(select(EventRow).where(EventRow.kind == "malformed")).all()
    return {row.raw_sha256: row for row in rows}


def _cli(stack: Stack, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*GBQ, *args], env=stack.env, capture_output=True, text=True, timeout=60, check=False
    )


def test_poison_everywhere_never_stops_delivery(
    make_stack: type[Stack], sandbox: SandboxProcess, database_url: str, any_redis_url: str
) -> None:
    """On every Redis form (TCP, unix socket, TLS) and both ledgers."""
    stack = make_stack(database_url, redis=any_redis_url)
    client = redis_for(stack.settings.effective_redis_url())
    orders = [f"CANARY-{n}" for n in range(ORDERS)]
    # Given: poison waiting in every place a process reads, before any process starts
    poisons = list(catalogue.QUARANTINE_GARBAGE)
    client.lpush(QUARANTINE_KEY, *[found.raw for found in poisons])
    unacked = catalogue.unacked_entries(QUEUE)
    _seed_unacked(client, unacked)
    poisons += unacked
    poisons += _seed_inbox(client, orders[3])
    spooled, staged = paid("SPOOLED"), paid("STAGED")
    poisons += _seed_spool(stack.settings.effective_spool_path, spooled)
    poisons += _seed_outbox(stack, staged)
    assert len({found.raw for found in poisons}) == len(poisons)  # one dead letter each

    # When: workers and a scheduler run while canaries and queue poison arrive interleaved
    workers = [stack.start_worker("w1"), stack.start_worker("w2")]
    pids = [worker.popen.pid for worker in workers]
    scheduler = stack.start_scheduler()
    queue_poisons = catalogue.queue_poisons()
    forged = catalogue.forged_headers()
    for number, order in enumerate(orders):
        stack.publisher.publish(paid(order))
        if number % 3 == 0:
            stack.publisher.publish(refund(order))
        for found in queue_poisons[number::ORDERS]:
            client.lpush(QUEUE, found.raw)
        if number < len(forged):
            forged_event = paid(f"FORGED-{number}")
            client.lpush(
                QUEUE,
                forged[number](forged_event.event_id, json.loads(event_to_json(forged_event))),
            )
    poisons += queue_poisons
    canaries = (
        [f"paid:{order}" for order in orders]
        + [f"refunded:{order}:{order}-R1" for order in orders[::3]]
        + [f"paid:FORGED-{n}" for n in range(len(forged))]
        + [spooled.event_id, staged.event_id]
    )

    # Then: everything settles, exactly
    states = stack.wait_settled(len(canaries) + len(poisons), timeout_s=120)
    assert states == {"delivered": len(canaries), "dead": len(poisons)}
    for event_id in canaries:
        assert stack.event(event_id).state == "delivered", event_id
    for order in orders:
        assert sandbox.balance(f"cust-{order}") == (5 if order in orders[::3] else 10), order
    kept = _malformed(stack)
    assert len(kept) == len(poisons)
    for found in poisons:
        row = kept.get(hashlib.sha256(found.raw).hexdigest())
        assert row is not None, f"no dead letter for {found.name}"
        assert (row.state, row.dead_reason) == ("dead", "malformed")
        assert (row.raw, row.raw_length) == (found.raw[:KEEP_BYTES], len(found.raw)), found.name
    for worker, pid in zip(workers, pids, strict=True):
        assert worker.alive()
        assert worker.popen.pid == pid
        assert "Unrecoverable error" not in worker.output()
        assert "Traceback" not in worker.output()
    assert scheduler.alive()
    assert "failed" not in scheduler.output()  # no sweep ever failed, let alone twice
    assert client.llen(QUARANTINE_KEY) == 0
    assert client.hlen("unacked") == 0

    # And the operator CLI shows and exports every one of them
    listing = _cli(stack, "dlq", "list", "--json", "--limit", "1000")
    assert listing.returncode == 0, listing.stderr
    assert len(json.loads(listing.stdout)) == len(poisons)
    lines = _cli(stack, "dlq", "list", "--jsonl", "--limit", "1000")
    assert [json.loads(line)["reason"] for line in lines.stdout.splitlines()] == [
        "malformed"
    ] * len(poisons)
    exported = _cli(stack, "dlq", "export", "--reason", "malformed")
    assert exported.returncode == 0, exported.stderr
    for line in exported.stdout.splitlines():
        record = json.loads(line)
        assert record["event"] is None
        assert record["raw_length"] >= len(record["raw_base64"]) * 3 // 4 - 2
    table = _cli(stack, "dlq", "list", "--limit", "1000")
    assert table.returncode == 0, table.stderr
    assert "\x1b[31m" not in table.stdout
    assert "\x00" not in table.stdout
    for name in ("item deeply nested", "item is NUL bytes", "body not UTF-8"):
        found = next(p for p in poisons if p.name == name)
        shown = _cli(stack, "dlq", "show", kept[hashlib.sha256(found.raw).hexdigest()].event_id)
        assert shown.returncode == 0, shown.stderr
        assert "Traceback" not in shown.stderr + shown.stdout
        assert "\x00" not in shown.stdout


# --- random input against a live worker -----------------------------------------------------


@pytest.fixture(scope="module")
def live(
    tmp_path_factory: pytest.TempPathFactory, sandbox_process: SandboxProcess
) -> Iterator[tuple[Stack, redis.Redis, list[Process]]]:
    """A worker and a scheduler on a Redis and ledger of their own, for many examples."""
    folder = tmp_path_factory.mktemp("live")
    server = RedisServer(folder / "redis").start()
    stack = Stack(
        folder,
        redis_url=server.url,
        database_url=sqlite_ledger(folder),
        gameball_url=sandbox_process.url,
    )
    processes = [stack.start_worker("fuzz", concurrency=1), stack.start_scheduler()]
    client = redis.Redis.from_url(server.url)
    yield stack, client, processes
    stack.close()
    server.kill()


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=25,
)
raw_items = (
    st.binary(min_size=1, max_size=3000)
    | json_values.map(lambda value: json.dumps(value).encode())
    | json_values.map(lambda value: catalogue.with_body(json.dumps(value)))
    | st.binary(max_size=500).map(catalogue.with_body)
)


@settings(
    max_examples=40 if os.environ.get("CI") else 25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(raw_items)
def test_random_bytes_and_json_on_the_queue_become_dead_letters(
    live: tuple[Stack, redis.Redis, list[Process]], raw: bytes
) -> None:
    """Whatever lands on the queue: the worker lives on and the bytes are a dead letter."""
    assume(isinstance(screen(raw), Refused))
    stack, client, processes = live
    client.lpush(QUEUE, raw)
    digest = hashlib.sha256(raw).hexdigest()
    row = wait_until(
        lambda: _malformed(stack).get(digest), timeout_s=20, what="the raw item's dead letter"
    )
    assert row.raw == raw[:KEEP_BYTES]
    for process in processes:
        assert process.alive(), process.output()[-3000:]
