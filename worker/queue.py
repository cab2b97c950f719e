"""The worker side of Redis: re-sending delivery messages and clearing the inbox."""

from __future__ import annotations

from collections.abc import Iterable

import redis

from producers.transport import (
    INBOX_DUE_KEY,
    INBOX_KEY,
    ORDER_INBOX_PREFIX,
    InboxEntry,
    enqueue,
)


class RedisQueue:
    """What the worker and the scheduler do with Redis besides Celery's own consuming."""

    def __init__(self, client: redis.Redis) -> None:
        self.client = client

    def enqueue(self, event_ids: Iterable[str]) -> int:
        """Queue a delivery message for each event (the ledger already has them)."""
        return enqueue(self.client, event_ids)

    def inbox_done(self, done: Iterable[tuple[str, str | None]]) -> None:
        """Forget inbox entries, given as (event_id, order_id), once the ledger has them."""
        pairs = list(done)
        if pairs:
            pipe = self.client.pipeline(transaction=True)
            pipe.hdel(INBOX_KEY, *[event_id for event_id, _ in pairs])
            pipe.zrem(INBOX_DUE_KEY, *[event_id for event_id, _ in pairs])
            for event_id, order_id in pairs:
                if order_id is not None:
                    pipe.srem(ORDER_INBOX_PREFIX + order_id, event_id)
            pipe.execute()

    def inbox_for_order(self, order_id: str) -> list[InboxEntry]:
        """An order's events that are published but not yet ingested."""
        key = ORDER_INBOX_PREFIX + order_id
        ids = [
            raw.decode() if isinstance(raw, bytes) else str(raw)
            for raw in self.client.smembers(key)
        ]
        if not ids:
            return []
        envelopes = self.client.hmget(INBOX_KEY, ids)
        gone = [
            event_id for event_id, envelope in zip(ids, envelopes, strict=True) if envelope is None
        ]
        if gone:
            self.client.srem(key, *gone)
        return [
            InboxEntry.from_envelope(event_id, envelope)
            for event_id, envelope in zip(ids, envelopes, strict=True)
            if envelope is not None
        ]

    def inbox_older_than(self, published_before: float, limit: int) -> list[InboxEntry]:
        """Inbox entries published before ``published_before`` (epoch s), oldest first."""
        ids = [
            raw.decode() if isinstance(raw, bytes) else str(raw)
            for raw in self.client.zrangebyscore(
                INBOX_DUE_KEY, "-inf", published_before, start=0, num=limit
            )
        ]
        if not ids:
            return []
        envelopes = self.client.hmget(INBOX_KEY, ids)
        entries, orphans = [], []
        for event_id, envelope in zip(ids, envelopes, strict=True):
            if envelope is None:
                orphans.append(event_id)  # hash entry gone (ingested): drop the index entry
            else:
                entries.append(InboxEntry.from_envelope(event_id, envelope))
        if orphans:
            self.client.zrem(INBOX_DUE_KEY, *orphans)
        return entries
