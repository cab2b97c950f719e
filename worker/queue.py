"""The worker side of Redis: re-sending delivery messages and clearing the inbox."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import redis

from producers.quarantine import Poison
from producers.transport import (
    INBOX_DUE_KEY,
    INBOX_KEY,
    INBOX_SHA_KEY,
    ORDER_INBOX_PREFIX,
    InboxEntry,
    enqueue,
)
from producers.untrusted import UnreadableError, printable


@dataclass(frozen=True)
class UnreadableEntry:
    """An inbox entry that is not one of ours: its key as stored, and the poison."""

    event_id: bytes
    poison: Poison


class RedisQueue:
    """What the worker and the scheduler do with Redis besides Celery's own consuming."""

    def __init__(self, client: redis.Redis) -> None:
        self.client = client

    def enqueue(self, event_ids: Iterable[str]) -> int:
        """Queue a delivery message for each event (the ledger already has them)."""
        return enqueue(self.client, event_ids)

    def inbox_done(self, done: Iterable[tuple[str | bytes, str | None]]) -> None:
        """Forget inbox entries, given as (event_id, order_id), once the ledger has them."""
        pairs = list(done)
        if pairs:
            pipe = self.client.pipeline(transaction=True)
            pipe.hdel(INBOX_KEY, *[event_id for event_id, _ in pairs])
            pipe.hdel(INBOX_SHA_KEY, *[event_id for event_id, _ in pairs])
            pipe.zrem(INBOX_DUE_KEY, *[event_id for event_id, _ in pairs])
            for event_id, order_id in pairs:
                if order_id is not None:
                    pipe.srem(ORDER_INBOX_PREFIX + order_id, event_id)
            pipe.execute()

    def inbox_entry(self, event_id: str) -> InboxEntry | None:
        """The inbox's entry of one event (None if there is none, or it is unreadable)."""
        envelope = self.client.hget(INBOX_KEY, event_id)
        if envelope is None:
            return None
        try:
            return InboxEntry.from_envelope(event_id, envelope)
        except UnreadableError:
            return None  # the inbox sweep buries it

    def inbox_for_order(self, order_id: str) -> list[InboxEntry]:
        """An order's events that are published but not yet ingested (unreadable entries
        are left to the scheduler's inbox sweep)."""
        key = ORDER_INBOX_PREFIX + order_id
        ids = list(self.client.smembers(key))
        if not ids:
            return []
        entries, _, gone = self._read(ids)
        if gone:
            self.client.srem(key, *gone)
        return entries

    def inbox_older_than(
        self, published_before: float, limit: int
    ) -> tuple[list[InboxEntry], list[UnreadableEntry]]:
        """Inbox entries published before ``published_before`` (epoch s), oldest first, and
        those among them that cannot be read."""
        ids = self.client.zrangebyscore(INBOX_DUE_KEY, "-inf", published_before, start=0, num=limit)
        if not ids:
            return [], []
        entries, unreadable, gone = self._read(ids)
        if gone:  # hash entry gone (ingested): drop the index entry
            self.client.zrem(INBOX_DUE_KEY, *gone)
        return entries, unreadable

    def _read(self, ids: list[Any]) -> tuple[list[InboxEntry], list[UnreadableEntry], list[bytes]]:
        envelopes = self.client.hmget(INBOX_KEY, ids)
        entries, unreadable, gone = [], [], []
        for event_id, envelope in zip(ids, envelopes, strict=True):
            if envelope is None:
                gone.append(event_id)
                continue
            try:
                entries.append(InboxEntry.from_envelope(event_id, envelope))
            except UnreadableError as error:
                problem = f"inbox entry {printable(event_id, 120)}: {error}"
                unreadable.append(UnreadableEntry(event_id, Poison.of("inbox", problem, envelope)))
        return entries, unreadable, gone
