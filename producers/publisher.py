"""``Publisher``: what checkout calls. It returns in milliseconds and never waits on Gameball.

``publish(event)`` writes the event to the Redis inbox and queues its delivery in one
round trip, under short timeouts (``GBQ_PUBLISH_TIMEOUT_S``). If Redis cannot be reached it
writes the event to the local spool instead and still returns normally. It raises only:

    InvalidEventError(ValueError)   the event is invalid, field by field (or is not an event,
                                    a mapping or JSON at all)
      ConflictingEventError         its id was already published with other content, and
                                    the inbox still holds that first content
    PublishError(RuntimeError)      neither Redis nor the spool could take the event

``Publisher.from_env()`` raises ``SettingsError(ValueError)`` for a bad ``GBQ_`` value.

Acknowledged means replicated, when asked: with ``GBQ_REDIS_MIN_REPLICAS`` set, "queued"
means that many replicas confirmed the write within ``GBQ_REDIS_REPLICA_WAIT_S`` (Redis
``WAIT``, in the same round trip); otherwise the events are spooled as well and the call
returns "spooled" (a second copy is harmless: the inbox keeps the first). Either answer
then means the event survives the loss of one machine.

Relay and order: once this publisher has spooled, a background thread relays the spool
to Redis (oldest first) as soon as Redis answers again (``producers.relay``), and reports
what is left for ``gbq status`` and the metrics (``producers.spool_report``). Until the
spool is empty, later calls spool too, behind the spooled events, without waiting for
Redis: so one process's events reach Redis in the order it published them, across a Redis
outage (a refund never overtakes an earlier one), and checkout never waits for the relay.
A publisher created over a spool that still holds events relays it the same way.

``stage(session, event)`` writes to the transactional outbox instead, inside the caller's
own SQLAlchemy transaction.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Literal

import redis

from producers.events import (
    Event,
    FieldProblem,
    InvalidEventError,
    as_event,
    event_to_json,
    shared_id_problems,
)
from producers.outbox import stage as stage_in_outbox
from producers.relay import SpoolRelay
from producers.settings import PublisherSettings, load_publisher_settings, redact_url
from producers.spool import Spool
from producers.transport import NotReplicatedError, push_to_inbox, redis_client
from producers.wire import InboxEntry

log = logging.getLogger(__name__)
Destination = Literal["queued", "spooled"]


class PublishError(RuntimeError):
    """The event could be persisted nowhere: not in Redis, not in the spool."""


class ConflictingEventError(InvalidEventError):
    """An event id already published with other content (the first content is kept: an
    event id stands for one event; a changed order needs a refund or a new id)."""

    def __init__(self, event_ids: Iterable[str]) -> None:
        super().__init__(
            FieldProblem("event_id", f"{event_id} was already published with other content")
            for event_id in event_ids
        )


class Publisher:
    """Publishes events for delivery; safe to share between threads of one process."""

    def __init__(self, settings: PublisherSettings, *, redis_url: str | None = None) -> None:
        self.settings = settings
        url = redis_url or settings.effective_redis_url()
        self._where = redact_url(url)
        self._redis = redis_client(url, settings.publish_timeout_s)
        self.spool = Spool(settings.effective_spool_path, replication=settings.replication)
        self._lock = threading.Lock()  # spooling, and the relay's last step, one at a time
        self.relay = SpoolRelay(self.spool, self._redis, self._lock, self._caught_up)
        # Events left in the spool (a crash, a restart during an outage) go first.
        self._spooled = self.spool.count() > 0  # new events queue behind the spool's
        if self._spooled:
            self.relay.wake()

    @classmethod
    def from_env(cls) -> Publisher:
        """A publisher configured by ``GBQ_*`` variables; SettingsError (one line per bad
        variable, as ``gbq`` prints them) if one holds a value gbq cannot use."""
        return cls(load_publisher_settings())

    def __repr__(self) -> str:
        return f"Publisher(redis={self._where!r}, spool={str(self.spool.path)!r})"

    def publish(self, event: Event | Mapping[str, Any]) -> Destination:
        """Accept one event for delivery; "queued" in Redis or "spooled" locally."""
        return self.publish_many([event])

    def publish_many(self, events: Iterable[Event | Mapping[str, Any]]) -> Destination:
        """Accept several events in one round trip (all validated before any is written)."""
        parsed = [as_event(event) for event in events]
        problems = shared_id_problems(parsed)
        if problems:
            raise InvalidEventError(problems)
        now = time.time()
        entries = _distinct([InboxEntry(e.event_id, event_to_json(e), now) for e in parsed])
        if not entries:
            return "queued"
        if self._spooled:
            with self._lock:
                if self._spooled:  # the relay has not emptied the spool yet: keep the order
                    return self._spool(entries, None)
        try:
            conflicts = push_to_inbox(
                self._redis,
                entries,
                refuse_conflicts=True,
                replication=self.settings.replication,
            )
        except (redis.RedisError, OSError) as error:
            with self._lock:
                return self._spool(entries, error)
        if conflicts:
            raise ConflictingEventError(conflicts)
        return "queued"

    def _caught_up(self) -> None:
        """The relay found the spool empty (under ``_lock``): publish to Redis again."""
        self._spooled = False

    def _spool(self, entries: Sequence[InboxEntry], cause: BaseException | None) -> Destination:
        """Spool ``entries`` (under ``_lock``): Redis failed (``cause``), or the spool is
        not relayed yet; the relay thread moves them once Redis answers."""
        why = (
            "earlier events are still in the spool"
            if cause is None
            else f"Redis at {self._where} failed ({type(cause).__name__})"
        )
        not_replicated = isinstance(cause, NotReplicatedError)
        try:
            self.spool.add(entries)
            self._spooled = True
            self.relay.wake()
        except Exception as error:
            raise PublishError(
                f"could not persist {len(entries)} event(s): {why}, and the spool at "
                f"{self.spool.path} failed "
                f"({type(error).__name__}: {error})"
            ) from error
        if not_replicated:
            log.warning(
                "Redis at %s took %d event(s) but %s: spooled them to %s as well",
                self._where,
                len(entries),
                cause,
                self.spool.path,
            )
        elif cause is not None:
            log.warning(
                "Redis at %s unreachable (%s): spooled %d event(s) to %s",
                self._where,
                type(cause).__name__,
                len(entries),
                self.spool.path,
            )
        return "spooled"

    def stage(self, session: Any, event: Event | Mapping[str, Any]) -> None:
        """Stage ``event`` in the outbox inside ``session``'s transaction (a SQLAlchemy
        ``Session``); it is relayed once the caller commits, and vanishes on rollback."""
        stage_in_outbox(session, as_event(event))

    def relay_spool(self, limit: int = 500) -> int:
        """Move up to ``limit`` spooled events to Redis now; returns how many moved (the
        background relay does this by itself)."""
        return self.spool.relay(self._redis, limit)

    def close(self) -> None:
        """Stop the relay (what it has not moved stays in the spool, for the next
        publisher on it or a scheduler sharing the path) and close the connection."""
        self.relay.stop()
        self._redis.close()

    def __enter__(self) -> Publisher:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


def _distinct(entries: list[InboxEntry]) -> list[InboxEntry]:
    """One entry per event id; the same id twice with other content is refused."""
    first: dict[str, InboxEntry] = {}
    for entry in entries:
        seen = first.setdefault(entry.event_id, entry)
        if seen.event_json != entry.event_json:
            raise ConflictingEventError([entry.event_id])
    return list(first.values())
