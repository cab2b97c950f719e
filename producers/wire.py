"""The wire format, as plain values: the Redis keys and queue that events travel through,
the inbox envelope, and the one Celery message shape gbq writes (and the worker's intake
rebuilds). ``producers.transport`` writes them to Redis."""

from __future__ import annotations

import base64
import hashlib
import json
import math
import os
import socket
import uuid
from dataclasses import dataclass, field, replace
from typing import Any, Final

from producers.events import MAX_EVENT_BYTES, Event, InvalidEventError, parse_event
from producers.keys import QUEUE
from producers.untrusted import UnreadableError, load_json, printable

DELIVER_TASK: Final = "gbq.deliver"
MAX_EVENT_ID_LENGTH: Final = 300  # the ledger's key column
ORIGIN: Final = f"{os.getpid()}@{socket.gethostname()}"  # a Celery header: who sent it
MAX_ENVELOPE_BYTES: Final = MAX_EVENT_BYTES + 1024


@dataclass(frozen=True)
class InboxEntry:
    """One event on its way: its id, its JSON and when it was first published."""

    event_id: str
    event_json: str
    published_at: float  # epoch seconds
    envelope: bytes | None = field(default=None, compare=False, repr=False)  # as read back

    @property
    def order_id(self) -> str | None:
        return order_id_of(json.loads(self.event_json))

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
    passes on to Celery (``worker.rules.intake`` rebuilds every accepted message with it)."""
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
            "origin": ORIGIN,
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


def order_id_of(event: dict[str, Any]) -> str | None:
    value = event.get("order_id")
    return value if isinstance(value, str) else None
