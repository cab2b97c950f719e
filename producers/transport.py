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

import base64
import hashlib
import json
import math
import os
import socket
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Final

import redis
from redis.backoff import NoBackoff
from redis.commands.core import Script
from redis.retry import Retry

from producers.events import MAX_EVENT_BYTES, Event, InvalidEventError, parse_event
from producers.quarantine import Poison, quarantine
from producers.untrusted import UnreadableError, load_json, printable

QUEUE: Final = "gbq"
DELIVER_TASK: Final = "gbq.deliver"
INBOX_KEY: Final = "gbq:inbox"
INBOX_DUE_KEY: Final = "gbq:inbox:due"
ORDER_INBOX_PREFIX: Final = "gbq:inbox:order:"  # + order id: ids of its events in the inbox
INBOX_SHA_KEY: Final = "gbq:inbox:sha"  # event_id → content hash of the first accepted
CONFLICTS_KEY: Final = "gbq:conflicts"  # envelopes found conflicting while relaying a spool
MAX_EVENT_ID_LENGTH: Final = 300  # the ledger's key column
MAX_ENVELOPE_BYTES: Final = MAX_EVENT_BYTES + 1024
_ORIGIN: Final = f"{os.getpid()}@{socket.gethostname()}"


@dataclass(frozen=True)
class InboxEntry:
    """One event on its way: its id, its JSON and when it was first published."""

    event_id: str
    event_json: str
    published_at: float  # epoch seconds
    envelope: bytes | None = field(default=None, compare=False, repr=False)  # as read back

    @property
    def order_id(self) -> str | None:
        return _order_id(json.loads(self.event_json))

    def event(self) -> Event:
        """The event this entry holds, validated; UnreadableError (naming the bad fields) if
        it is invalid or is not the event the entry is filed under."""
        try:
            event = parse_event(self.event_json, accepted=True)
        except InvalidEventError as error:
            raise UnreadableError(str(error)) from None
        if event.event_id != self.event_id:
            raise UnreadableError(
                f"filed as {printable(self.event_id, 120)} but holds {event.event_id!r:.120}"
            )
        return event

    @classmethod
    def from_envelope(cls, event_id: str | bytes, envelope: str | bytes) -> InboxEntry:
        """Read an inbox hash entry; raises UnreadableError if it is not one of ours."""
        data = load_json(envelope, max_bytes=MAX_ENVELOPE_BYTES)
        if not isinstance(data, dict) or set(data) != {"event", "published_at"}:
            raise UnreadableError('not an inbox envelope {"event": …, "published_at": …}')
        entry = cls.of(event_id, data["event"], data["published_at"])
        raw = envelope.encode("utf-8", "surrogatepass") if isinstance(envelope, str) else envelope
        return replace(entry, envelope=raw)

    @classmethod
    def of(cls, event_id: object, event: object, published_at: object) -> InboxEntry:
        """Check the parts of an entry read back from Redis or the spool (not the event's
        fields: the ledger's ingest validates those, with field-by-field errors)."""
        if not isinstance(event, dict):
            raise UnreadableError("the event is not a JSON object")
        if (
            isinstance(published_at, bool)
            or not isinstance(published_at, int | float)
            or not math.isfinite(published_at)
        ):
            raise UnreadableError("published_at is not a finite number")
        return cls(checked_event_id(event_id), json.dumps(event), float(published_at))


def content_sha256(event: str | dict[str, Any]) -> str:
    """The hash of an event's content, whatever its serialisation (key order, spacing: a
    spool relay writes the JSON again): the inbox and the ledger compare re-publishes of
    one id with it."""
    data = json.loads(event) if isinstance(event, str) else event
    canonical = json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8", "surrogatepass")).hexdigest()


def checked_event_id(value: object) -> str:
    """An event id read back from storage, or UnreadableError."""
    if isinstance(value, bytes):
        try:
            value = value.decode("utf-8")
        except UnicodeDecodeError:
            raise UnreadableError("the event id is not UTF-8") from None
    if not isinstance(value, str) or not 0 < len(value) <= MAX_EVENT_ID_LENGTH:
        raise UnreadableError(f"the event id is not a string of 1 to {MAX_EVENT_ID_LENGTH} chars")
    if not value.isprintable():
        raise UnreadableError("the event id has unprintable characters")
    return value


def redis_client(url: str, timeout_s: float) -> redis.Redis:
    """A client that gives up after ``timeout_s``: no retries, no reconnect loops."""
    return redis.Redis.from_url(
        url,
        socket_timeout=timeout_s,
        socket_connect_timeout=timeout_s,
        retry=Retry(NoBackoff(), 0),
        health_check_interval=0,
    )


def task_message(
    event_id: str, event: dict[str, Any] | None = None, published_at: float | None = None
) -> bytes:
    """A Celery protocol-2 message for ``gbq.deliver``, as kombu's Redis transport stores it.

    The task id is the event id. ``event`` may be omitted when the ledger already has
    the event (re-sends by the scheduler).
    """
    return json.dumps(task_envelope(event_id, event, published_at), separators=(",", ":")).encode()


def task_envelope(
    event_id: str, event: dict[str, Any] | None = None, published_at: float | None = None
) -> dict[str, Any]:
    """The message of :func:`task_message` before serialisation: the only shape a worker
    passes on to Celery (``worker.intake`` rebuilds every accepted message with it)."""
    kwargs: dict[str, Any] = {"event_id": event_id}
    if event is not None:
        kwargs["event"] = event
        kwargs["published_at"] = published_at
    body = json.dumps(
        [[], kwargs, {"callbacks": None, "errbacks": None, "chain": None, "chord": None}]
    ).encode()
    return {
        "body": base64.b64encode(body).decode(),
        "content-encoding": "utf-8",
        "content-type": "application/json",
        "headers": {
            "lang": "py",
            "task": DELIVER_TASK,
            "id": event_id,
            "shadow": None,
            "eta": None,
            "expires": None,
            "group": None,
            "group_index": None,
            "retries": 0,
            "timelimit": [None, None],
            "root_id": event_id,
            "parent_id": None,
            "argsrepr": "()",
            "kwargsrepr": repr({"event_id": event_id}),
            "origin": _ORIGIN,
            "ignore_result": True,
        },
        "properties": {
            "correlation_id": event_id,
            "reply_to": "",
            "delivery_mode": 2,
            "delivery_info": {"exchange": "", "routing_key": QUEUE},
            "priority": 0,
            "body_encoding": "base64",
            "delivery_tag": str(uuid.uuid4()),
        },
    }


# KEYS: inbox, due, queue, content hashes, conflicts, then one order index per event (the
# inbox key itself when the event has no order). ARGV: mode, then 5 per event.
_PUSH = """
local n = (#ARGV - 1) / 5
local conflicts = {}
for i = 0, n - 1 do
  local id, sha = ARGV[2 + i * 5], ARGV[6 + i * 5]
  local first = redis.call('HGET', KEYS[4], id)
  if first and first ~= sha then conflicts[#conflicts + 1] = id end
end
if #conflicts > 0 and ARGV[1] == 'all-or-nothing' then return conflicts end
for i = 0, n - 1 do
  local id, envelope, score = ARGV[2 + i * 5], ARGV[3 + i * 5], ARGV[4 + i * 5]
  local message, sha = ARGV[5 + i * 5], ARGV[6 + i * 5]
  local first = redis.call('HGET', KEYS[4], id)
  if not first then
    redis.call('HSET', KEYS[1], id, envelope)
    redis.call('HSET', KEYS[4], id, sha)
    redis.call('ZADD', KEYS[2], 'NX', score, id)
    if KEYS[5 + i + 1] ~= KEYS[1] then redis.call('SADD', KEYS[5 + i + 1], id) end
    redis.call('LPUSH', KEYS[3], message)
  elseif first ~= sha then
    redis.call('LPUSH', KEYS[5], envelope)
  end
end
return conflicts
"""
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
        order_id = _order_id(event)
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


def _order_id(event: dict[str, Any]) -> str | None:
    value = event.get("order_id")
    return value if isinstance(value, str) else None


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
