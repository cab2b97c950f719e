"""The worker's Redis bookkeeping (worker.coordination.queue) on a real Redis: reading an order's
published events and clearing inbox entries, each in one command."""

from __future__ import annotations

import json

import pytest
import redis

from producers.keys import INBOX_DUE_KEY, INBOX_KEY, INBOX_SHA_KEY, ORDER_INBOX_PREFIX
from tests.conftest import redis_for
from worker.coordination.queue import RedisQueue

pytestmark = pytest.mark.integration


def _envelope(event_id: str) -> str:
    event = {"event_id": event_id, "kind": "refunded", "order_id": "A"}
    return json.dumps({"event": event, "published_at": 1.5})


def test_an_orders_inbox_is_read_whole_and_its_index_kept_clean(redis_url: str) -> None:
    """Readable entries come back; an unreadable one is skipped but left for the inbox
    sweep to bury; ids whose entry is gone (ingested) leave the order's index; bytes that
    are not UTF-8 in the index break nothing."""
    client = redis.Redis.from_url(redis_url)
    queue = RedisQueue(client)
    index = ORDER_INBOX_PREFIX + "A"
    client.hset(INBOX_KEY, mapping={"refunded:A1": _envelope("refunded:A1"), "bad": "{oops"})
    client.hset(INBOX_KEY, b"\xff\xfe", _envelope("refunded:A2"))
    client.sadd(index, "refunded:A1", "bad", "ingested:A3", b"\xff\xfe", b"\x00gone")
    entries = queue.inbox_for_order("A")
    assert [entry.event_id for entry in entries] == ["refunded:A1"]
    assert entries[0].published_at == 1.5
    assert client.smembers(index) == {b"refunded:A1", b"bad", b"\xff\xfe"}
    assert client.hexists(INBOX_KEY, "bad")  # the sweep's to bury, with its bytes
    assert queue.inbox_for_order("nothing-published") == []


def test_clearing_entries_takes_every_trace(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    queue = RedisQueue(client)
    for event_id, order in (("refunded:A1", "A"), ("cashback:C", None)):
        client.hset(INBOX_KEY, event_id, _envelope(event_id))
        client.hset(INBOX_SHA_KEY, event_id, "sha")
        client.zadd(INBOX_DUE_KEY, {event_id: 1.5})
        if order:
            client.sadd(ORDER_INBOX_PREFIX + order, event_id)
    queue.inbox_done([("refunded:A1", "A"), ("cashback:C", None)])
    assert not client.exists(INBOX_KEY, INBOX_SHA_KEY, INBOX_DUE_KEY, ORDER_INBOX_PREFIX + "A")
    queue.inbox_done([("refunded:A1", "A")])  # again: nothing left, no error
    assert not client.exists(INBOX_KEY)


def test_a_read_sent_meanwhile_is_answered_and_one_left_unread_ends_its_connection(
    any_redis_url: str,
) -> None:
    """``get_meanwhile`` sends a GET and reads its reply later, on a connection of the
    client's pool. A reply never read must not become the next command's answer: that
    connection is closed, and the pool's next command gets its own reply."""
    client = redis_for(any_redis_url, max_connections=1)  # TCP, unix socket, TLS, Sentinel
    queue = RedisQueue(client)
    client.set("some:key", b"\x00value")
    client.set("other:key", b"other")
    with queue.get_meanwhile("some:key") as read:
        assert read() == b"\x00value"
    with queue.get_meanwhile("missing:key") as read:
        assert read() is None
    with pytest.raises(RuntimeError), queue.get_meanwhile("some:key"):
        raise RuntimeError("the ledger failed meanwhile")  # its reply is never read
    assert client.get("other:key") == b"other"  # the one connection, clean again
    with queue.get_meanwhile("other:key") as read:
        assert read() == b"other"
    client.close()
