"""The worker side of Redis: re-sending delivery messages and clearing the inbox."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import redis

from producers.keys import (
    INBOX_DUE_KEY,
    INBOX_KEPT_KEY,
    INBOX_KEY,
    INBOX_SHA_KEY,
    ORDER_INBOX_PREFIX,
)
from producers.lua import script
from producers.quarantine import Poison
from producers.transport import enqueue
from producers.untrusted import UnreadableError, printable
from producers.wire import InboxEntry


@dataclass(frozen=True)
class UnreadableEntry:
    """An inbox entry that is not one of ours: its key as stored, and the poison."""

    event_id: bytes
    poison: Poison


# KEYS: the inbox, its content hashes, its due index, the kept set, then for each id its
# order's set (the inbox itself for an event without an order; only forgetting reads
# them); ARGV: forget or keep, then the ids. One atomic command: a MULTI pipeline of four
# commands per delivery cost the worker several times the CPU.
_INBOX_DONE = script("worker.coordination", "inbox_done")


# KEYS: an order's set of inbox ids, the inbox. Returns {id, envelope, id, envelope...} of
# the order's entries, and drops from the set the ids the inbox no longer holds. One round
# trip instead of two or three: every refund and cancellation reads its order's inbox.
_ORDER_INBOX = script("worker.coordination", "order_inbox")


class RedisQueue:
    """What the worker and the scheduler do with Redis besides Celery's own consuming."""

    def __init__(self, client: redis.Redis, *, keep_done: bool = False) -> None:
        """``keep_done`` (``GBQ_LEDGER_STANDBYS``): inbox entries the ledger has stay, kept,
        until the scheduler knows its standbys have them (``forget_kept``)."""
        self.client = client
        self.keep_done = keep_done
        self._inbox_done = client.register_script(_INBOX_DONE)
        self._order_inbox = client.register_script(_ORDER_INBOX)

    def enqueue(self, event_ids: Iterable[str]) -> int:
        """Queue a delivery message for each event (the ledger already has them)."""
        return enqueue(self.client, event_ids)

    def inbox_done(self, done: Iterable[tuple[str | bytes, str | None]]) -> None:
        """Inbox entries, given as (event_id, order_id), that the ledger has: forgotten, or
        with ``keep_done`` kept until the ledger's standbys have them too."""
        pairs = list(done)
        if not pairs:
            return
        orders = [
            INBOX_KEY if order_id is None else ORDER_INBOX_PREFIX + order_id
            for _, order_id in pairs
        ]
        self._inbox_done(
            keys=[INBOX_KEY, INBOX_SHA_KEY, INBOX_DUE_KEY, INBOX_KEPT_KEY, *orders],
            args=["keep" if self.keep_done else "forget", *(event_id for event_id, _ in pairs)],
        )

    # --- entries kept until the ledger's standbys have them ------------------------------

    def time(self) -> float:
        """Redis's clock (epoch s): the one that marks kept entries."""
        seconds, micros = self.client.time()
        return float(seconds) + micros / 1_000_000

    def kept_before(
        self, before: float, limit: int
    ) -> tuple[list[tuple[InboxEntry, float]], list[bytes]]:
        """Kept entries marked before ``before`` (Redis time), oldest first, each with its
        mark, and the ids among them whose entry cannot be read or is gone (to forget)."""
        marked = self.client.zrangebyscore(
            INBOX_KEPT_KEY, "-inf", before, start=0, num=limit, withscores=True
        )
        if not marked:
            return [], []
        marks: dict[Any, Any] = dict(marked)  # type: ignore[arg-type]
        entries, unreadable, gone = self._read(list(marks))
        kept = [(entry, float(marks[entry.event_id.encode()])) for entry in entries]
        return kept, [entry.event_id for entry in unreadable] + gone

    def keep_again(self, event_ids: Iterable[str | bytes]) -> None:
        """Mark kept entries again, at Redis's time now: checked again later."""
        ids = list(event_ids)
        if ids:  # keeping reads no order's set: the four keys are all it needs
            self._inbox_done(
                keys=[INBOX_KEY, INBOX_SHA_KEY, INBOX_DUE_KEY, INBOX_KEPT_KEY],
                args=["keep", *ids],
            )

    def forget_kept(self, done: Iterable[tuple[str | bytes, str | None]]) -> None:
        """Forget kept entries, given as (event_id, order_id): the ledger and its standbys
        have them. (An order unknown, as for an unreadable entry: its set drops the id when
        it is next read.)"""
        pairs = list(done)
        if not pairs:
            return
        ids = [event_id for event_id, _ in pairs]
        pipe = self.client.pipeline(transaction=True)
        pipe.hdel(INBOX_KEY, *ids)
        pipe.hdel(INBOX_SHA_KEY, *ids)
        pipe.zrem(INBOX_KEPT_KEY, *ids)
        for event_id, order_id in pairs:
            if order_id is not None:
                pipe.srem(ORDER_INBOX_PREFIX + order_id, event_id)
        pipe.execute()

    @contextmanager
    def get_meanwhile(self, key: str) -> Iterator[Callable[[], bytes | None]]:
        """Send ``GET key`` now; the function yielded reads its reply. Redis answers while
        the caller does something else (the worker: its ledger transaction), so the round
        trip costs no wait. A reply left unread ends its connection (it would be the next
        command's), and the connection goes back to the pool either way."""
        pool = self.client.connection_pool
        connection = pool.get_connection()
        unread = True

        def reply() -> bytes | None:
            nonlocal unread
            value = connection.read_response()
            unread = False
            return value if isinstance(value, bytes) else None

        try:
            connection.send_command("GET", key)  # type: ignore[no-untyped-call]
            yield reply
        finally:
            if unread:
                connection.disconnect()  # type: ignore[no-untyped-call]
            pool.release(connection)

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
        """An order's events that are published but not yet ingested, and with
        ``keep_done`` those ingested but still kept (unreadable entries are left to the
        scheduler's inbox sweep)."""
        found = self._order_inbox(keys=[ORDER_INBOX_PREFIX + order_id, INBOX_KEY])
        entries = []
        for event_id, envelope in zip(found[::2], found[1::2], strict=True):
            try:
                entries.append(InboxEntry.from_envelope(event_id, envelope))
            except UnreadableError:
                continue  # the inbox sweep buries it
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
