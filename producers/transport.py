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

Nothing here imports the worker's delivery code: tasks are sent by name.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any

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
from producers.wire import InboxEntry, content_sha256, order_id_of, task_message


def redis_client(url: str, timeout_s: float) -> redis.Redis:
    """A client that gives up after ``timeout_s``: no retries, no reconnect loops."""
    return redis.Redis.from_url(
        url,
        socket_timeout=timeout_s,
        socket_connect_timeout=timeout_s,
        retry=Retry(NoBackoff(), 0),
        health_check_interval=0,
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
) -> list[str]:
    """Write entries to the inbox and queue their messages, atomically; returns the ids that
    the inbox already holds with other content (the first content is kept).

    An entry whose id the inbox holds with the same content is already on its way: nothing
    is written. One with other content is a conflict: with ``refuse_conflicts`` (checkout's
    ``publish()``) nothing at all is written and the ids come back to be refused; otherwise
    (relaying a spool, whose caller is gone) it goes to ``gbq:conflicts``, where the
    scheduler records it on the event. ``poisons`` found on the way (unreadable spool rows)
    are quarantined first.
    """
    if poisons:
        quarantine(client, poisons)
    if not entries:
        return []
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
    return [
        raw.decode() if isinstance(raw, bytes) else str(raw)
        for raw in _PUSH_SCRIPT(keys=keys, args=args, client=client)
    ]


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
