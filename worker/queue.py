"""The worker side of Redis: re-sending delivery messages and clearing the inbox."""

from __future__ import annotations

from collections.abc import Iterable

import redis

from producers.transport import INBOX_DUE_KEY, INBOX_KEY, InboxEntry, enqueue


class RedisQueue:
    """What the worker and the scheduler do with Redis besides Celery's own consuming."""

    def __init__(self, client: redis.Redis) -> None:
        self.client = client

    def enqueue(self, event_ids: Iterable[str]) -> int:
        """Queue a delivery message for each event (the ledger already has them)."""
        return enqueue(self.client, event_ids)

    def inbox_done(self, event_ids: Iterable[str]) -> None:
        """Forget inbox entries once the ledger holds their events."""
        ids = list(event_ids)
        if ids:
            pipe = self.client.pipeline(transaction=True)
            pipe.hdel(INBOX_KEY, *ids)
            pipe.zrem(INBOX_DUE_KEY, *ids)
            pipe.execute()

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
