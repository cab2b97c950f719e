"""How events travel through Redis: the inbox and the Celery queue, written atomically.

One ``MULTI`` per publish (or per batch) writes, for each event:

- ``gbq:inbox`` (hash): event_id → the envelope (the event and when it was published),
  the durable record until a worker has ingested it into the ledger;
- ``gbq:inbox:due`` (sorted set): event_id → publish time, so the scheduler can find
  entries no worker ingested in time (a lost message) and ingest them itself;
- ``gbq:inbox:order:<order id>`` (set): the ids of an order's events still in the inbox,
  so that ordering can take them into account before a worker has ingested them;
- a Celery protocol-2 message for the task ``gbq.deliver`` on the queue ``gbq``: the fast
  path. It is built here rather than through ``Celery.send_task`` so that it goes out
  in the same transaction as the inbox entry, under this module's short timeouts
  (``send_task`` can hang while the broker is down: celery#4296).

With ``GBQ_REDIS_MIN_REPLICAS`` set, the same round trip ends with Redis ``WAIT``: the
write counts only once that many replicas have it, so that it survives the primary's
loss (Redis replicates asynchronously: a primary that dies can take its last writes with
it, and a replica promoted by Sentinel never had them). A write the replicas did not
confirm in time raises :class:`NotReplicatedError`, and the caller keeps the events
elsewhere (``publish()`` spools them too, a relay keeps its rows).

Nothing here imports the worker's delivery code: tasks are sent by name.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Final

import redis
from redis.backoff import NoBackoff
from redis.commands.core import Script
from redis.retry import Retry

from producers.keys import (
    CONFLICTS_KEY,
    INBOX_DUE_KEY,
    INBOX_KEY,
    INBOX_SHA_KEY,
    ORDER_INBOX_PREFIX,
    QUEUE,
)
from producers.lua import script
from producers.quarantine import Poison, quarantine
from producers.redis_connect import connection_pool
from producers.wire import InboxEntry, content_sha256, order_id_of, task_message


def redis_client(url: str, timeout_s: float) -> redis.Redis:
    """A client that gives up after ``timeout_s``: no retries, no reconnect loops. Any
    form of ``GBQ_REDIS_URL``, Sentinel's included (``producers.redis_connect``)."""
    pool = connection_pool(
        url,
        socket_timeout=timeout_s,
        socket_connect_timeout=timeout_s,
        retry=Retry(NoBackoff(), 0),
        health_check_interval=0,
    )
    return redis.Redis.from_pool(pool)


@dataclass(frozen=True)
class Replication:
    """How many replicas must confirm a write (Redis ``WAIT``), and for how long to wait."""

    replicas: int = 0
    wait_s: float = 0.0

    @property
    def timeout_ms(self) -> int:
        return max(1, round(self.wait_s * 1000))  # WAIT 0 would wait forever


NOT_REPLICATED: Final = Replication()  # a write counts once the primary has it


class NotReplicatedError(redis.RedisError):
    """The primary took the write, but fewer replicas than required confirmed it in time:
    it would not survive the primary's loss."""

    def __init__(self, confirmed: int, required: Replication) -> None:
        self.confirmed, self.required = confirmed, required
        super().__init__(
            f"{confirmed} of {required.replicas} replica(s) confirmed the write within "
            f"{required.timeout_ms} ms"
        )


# KEYS: inbox, due, queue, content hashes, conflicts, then one order index per event (the
# inbox key itself when the event has no order). ARGV: mode, then 5 per event.
_PUSH = script("producers", "push_to_inbox")
_PUSH_SCRIPT = Script(None, _PUSH.encode())  # type: ignore[arg-type] # bound per call


def push_to_inbox(
    client: redis.Redis,
    entries: Sequence[InboxEntry],
    poisons: Sequence[Poison] = (),
    *,
    refuse_conflicts: bool = False,
    replication: Replication = NOT_REPLICATED,
) -> list[str]:
    """Write entries to the inbox and queue their messages, atomically; returns the ids that
    the inbox already holds with other content (the first content is kept).

    An entry whose id the inbox holds with the same content is already on its way: nothing
    is written. One with other content is a conflict: with ``refuse_conflicts`` (checkout's
    ``publish()``) nothing at all is written and the ids come back to be refused; otherwise
    (relaying a spool, whose caller is gone) it goes to ``gbq:conflicts``, where the
    scheduler records it on the event. ``poisons`` found on the way (unreadable spool rows)
    are quarantined first.

    With ``replication.replicas``, :class:`NotReplicatedError` when fewer replicas
    confirmed the write in time (nothing written, as for a refused conflict, needs none).
    """
    if replication.replicas:
        return _push_and_wait(client, entries, poisons, refuse_conflicts, replication)
    if poisons:
        quarantine(client, poisons)
    if not entries:
        return []
    return _decoded(_PUSH_SCRIPT(**_script_call(entries, refuse_conflicts), client=client))


def _script_call(entries: Sequence[InboxEntry], refuse_conflicts: bool) -> dict[str, list[Any]]:
    """The push script's keys and arguments for ``entries``."""
    keys = [INBOX_KEY, INBOX_DUE_KEY, QUEUE, INBOX_SHA_KEY, CONFLICTS_KEY]
    args: list[Any] = ["all-or-nothing" if refuse_conflicts else "each"]
    for entry in entries:
        event = json.loads(entry.event_json)  # once per event: this is checkout's hot path
        envelope = json.dumps({"event": event, "published_at": entry.published_at})
        order_id = order_id_of(event)
        # The order index lets ordering see events not yet in the ledger.
        keys.append(INBOX_KEY if order_id is None else ORDER_INBOX_PREFIX + order_id)
        args += [
            entry.event_id,
            envelope,
            entry.published_at,
            task_message(entry.event_id, event, entry.published_at),
            content_sha256(event),
        ]
    return {"keys": keys, "args": args}


def _push_and_wait(
    client: redis.Redis,
    entries: Sequence[InboxEntry],
    poisons: Sequence[Poison],
    refuse_conflicts: bool,
    replication: Replication,
) -> list[str]:
    """The poison, the push and a ``WAIT`` on one connection, in one round trip
    (``WAIT`` counts the writes of its own connection). A script Redis does not know
    (a restart, a failover) is loaded and the push sent again, with its ``WAIT``."""
    call = _script_call(entries, refuse_conflicts) if entries else None
    pipe = client.pipeline(transaction=False)
    quarantine(pipe, poisons)
    for attempt in (1, 2):
        if call is not None:
            pipe.evalsha(_PUSH_SCRIPT.sha, len(call["keys"]), *call["keys"], *call["args"])
        pipe.execute_command("WAIT", replication.replicas, replication.timeout_ms)  # type: ignore[no-untyped-call]
        replies = pipe.execute(raise_on_error=False)
        confirmed, pushed = replies[-1], replies[-2] if call is not None else []
        if isinstance(pushed, redis.exceptions.NoScriptError) and attempt == 1:
            client.script_load(_PUSH)
            pipe = client.pipeline(transaction=False)
            continue
        for reply in replies:
            if isinstance(reply, Exception):
                raise reply
        conflicts = _decoded(pushed)
        wrote_nothing = refuse_conflicts and bool(conflicts) and not poisons
        if int(confirmed) < replication.replicas and not wrote_nothing:
            raise NotReplicatedError(int(confirmed), replication)
        return conflicts
    raise AssertionError("unreachable: the second attempt returns or raises")


def _decoded(raws: Iterable[Any]) -> list[str]:
    return [raw.decode() if isinstance(raw, bytes) else str(raw) for raw in raws]


def enqueue(client: redis.Redis, event_ids: Iterable[str]) -> int:
    """Queue delivery messages for events the ledger already holds, at the *front* of the
    queue, the first id taken first; returns how many.

    kombu takes messages from the right (BRPOP) and publishing adds on the left, so the
    right end is the front. Re-sent events (due retries, recovered leases, released
    waiting events) are older than anything freshly published, so they go first: after
    an outage the backlog drains oldest first instead of behind newer, untried events.
    """
    messages = [task_message(event_id) for event_id in event_ids]
    if messages:
        client.rpush(QUEUE, *reversed(messages))
    return len(messages)
