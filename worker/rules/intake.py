"""What a worker accepts from its queue: ``gbq.deliver`` requests, and nothing else.

Every raw item taken from Redis passes :func:`screen` before kombu or Celery look at it.
Celery trusts its broker: a body that is not base64 or not JSON, a JSON array where it
expects ``[args, kwargs, embed]``, or a deeply nested envelope raise inside its consumer
and end the worker ("Unrecoverable error"), and headers such as ``timelimit``, ``eta`` or
``callbacks`` are obeyed. Here, a raw item is either

- ``Accepted``: a protocol-2 ``gbq.deliver`` request whose arguments have the shape the
  task takes, **rebuilt** by :func:`producers.wire.task_envelope`, so Celery only
  ever sees messages of the one shape this project writes; every other header (time
  limits, ETA, expiry, retries, callbacks, chains, groups) is dropped, never obeyed; or
- ``Refused``: with the reason, to be quarantined and kept as a dead letter ``malformed``.

The event inside an accepted message is validated by the task, which has the ledger to
record field-by-field errors. This module is pure: no Redis, no kombu, no Celery.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
from dataclasses import dataclass
from typing import Any, Final

from producers.untrusted import UnreadableError, load_json
from producers.wire import DELIVER_TASK, checked_event_id, task_envelope

MAX_MESSAGE_BYTES: Final = 1024 * 1024  # base64 of the largest event, plus headers
_KWARGS: Final = frozenset({"event_id", "event", "published_at"})


@dataclass(frozen=True)
class Accepted:
    """A delivery request, rebuilt in the one shape Celery is given."""

    event_id: str
    message: dict[str, Any]


@dataclass(frozen=True)
class Refused:
    problem: str


def screen(raw: bytes | str) -> Accepted | Refused:
    """Decide what to do with one raw queue item; never raises."""
    try:
        event_id, event, published_at = _request(raw)
    except UnreadableError as error:
        return Refused(str(error))
    return Accepted(event_id, task_envelope(event_id, event, published_at))


def _request(raw: bytes | str) -> tuple[str, dict[str, Any] | None, float | None]:
    envelope = _object(load_json(raw, max_bytes=MAX_MESSAGE_BYTES), "the message")
    headers = _object(envelope.get("headers"), "headers")
    properties = _object(envelope.get("properties"), "properties")
    task = headers.get("task")
    if task != DELIVER_TASK:
        raise UnreadableError(
            f"headers.task is {_shown(task)}: only {DELIVER_TASK} messages are accepted"
        )
    _expect(envelope.get("content-type"), "application/json", "content-type")
    encoding = envelope.get("content-encoding")
    _expect(
        encoding.lower() if isinstance(encoding, str) else encoding, "utf-8", "content-encoding"
    )
    _expect(properties.get("body_encoding"), "base64", "properties.body_encoding")
    if headers.get("compression") is not None:
        raise UnreadableError("compressed bodies are not accepted")
    body = envelope.get("body")
    if not isinstance(body, str):
        raise UnreadableError("body is not a string")
    try:
        decoded = base64.b64decode(body, validate=True)
    except (binascii.Error, ValueError):
        raise UnreadableError("body is not valid base64") from None
    parts = load_json(decoded)
    if not isinstance(parts, list) or len(parts) != 3:
        raise UnreadableError("the body is not [args, kwargs, embed]")
    args, kwargs, embed = parts
    if args != []:
        raise UnreadableError(f"{DELIVER_TASK} takes no positional arguments")
    if embed is not None and not isinstance(embed, dict):
        raise UnreadableError("the body's embed part is not an object")
    return _arguments(_object(kwargs, "kwargs"))


def _arguments(kwargs: dict[str, Any]) -> tuple[str, dict[str, Any] | None, float | None]:
    unknown = set(kwargs) - _KWARGS
    if unknown:
        raise UnreadableError(f"unknown arguments: {', '.join(sorted(map(_shown, unknown)))}")
    event_id = checked_event_id(kwargs.get("event_id"))
    event, published_at = kwargs.get("event"), kwargs.get("published_at")
    if event is not None and not isinstance(event, dict):
        raise UnreadableError("event is not a JSON object")
    if published_at is not None and (
        isinstance(published_at, bool)
        or not isinstance(published_at, int | float)
        or not math.isfinite(published_at)
    ):
        raise UnreadableError("published_at is not a finite number")
    return event_id, event, None if published_at is None else float(published_at)


def _object(value: Any, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise UnreadableError(f"{what} is not a JSON object")
    return value


def _expect(value: Any, wanted: str, what: str) -> None:
    if value != wanted:
        raise UnreadableError(f"{what} is {_shown(value)}, not {wanted}")


def _shown(value: Any) -> str:
    """A short, safe rendering of a value taken from hostile input."""
    if value is None:
        return "missing"
    text = repr(value) if isinstance(value, str) else f"a {type(value).__name__}"
    return text[:60]


def recover(raw: bytes) -> dict[str, Any] | None:
    """The event that unreadable input holds, if any can be found in it now: as a queue
    item, as the task's arguments, as an unacked entry, as an inbox envelope or as an event
    itself. ``gbq dlq retry`` uses it, so that a dead letter ``malformed`` whose bytes hold
    an event (one buried for a reason since lifted) can be retried like any other."""
    try:
        found = load_json(raw, max_bytes=MAX_MESSAGE_BYTES + 1024)
    except UnreadableError:
        return None
    candidates: list[Any] = [found]
    if isinstance(found, list) and len(found) == 3:  # kombu's unacked entry
        candidates.insert(0, found[0])
    for candidate in candidates:
        event = _event_in(candidate)
        if event is not None:
            return event
    return None


def _event_in(value: Any) -> dict[str, Any] | None:
    if not isinstance(value, dict):
        return None
    if "headers" in value:  # a queue item
        verdict = screen(json.dumps(value))
        if not isinstance(verdict, Accepted):
            return None
        _, kwargs, _ = json.loads(base64.b64decode(verdict.message["body"]))
        event = kwargs.get("event")
    elif "kwargs" in value:  # the task's arguments, as the task kept them
        kwargs = value["kwargs"]
        event = kwargs.get("event") if isinstance(kwargs, dict) else None
    elif "event" in value:  # an inbox envelope
        event = value["event"]
    else:
        event = value
    return event if isinstance(event, dict) and "kind" in event else None
