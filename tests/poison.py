"""A catalogue of hostile input, by where it is written: the queue, kombu's unacked hash,
the inbox, the spool, the outbox and the quarantine. Each poison carries the exact bytes
the dead letter must keep. Classes of fault, several examples of each: not JSON, the wrong
JSON type at every level, bad encodings, NUL bytes, deep nesting, sizes past the limits,
other tasks, other serializers, forged execution headers."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from producers.wire import DELIVER_TASK, task_envelope

DEEP = 100_000  # far past any recursion limit


@dataclass(frozen=True)
class Poison:
    name: str
    raw: bytes  # what is written (and what the dead letter must keep)


def deeply_nested(depth: int = DEEP) -> str:
    return "[" * depth + "]" * depth


def _event(order_id: str) -> dict[str, Any]:
    return {
        "kind": "paid",
        "order_id": order_id,
        "customer_id": "poisoned",
        "occurred_at": (datetime.now(UTC) - timedelta(minutes=1)).isoformat(),
        "total_price": "10",
        "total_paid": "10",
    }


def message(**changes: Any) -> dict[str, Any]:
    """A well-formed gbq.deliver message (of an event no test expects), then ``changes``:
    top-level keys replaced, or ``headers``/``properties`` merged in."""
    base = task_envelope("paid:POISON", _event("POISON"), 1.0)
    for key, value in changes.items():
        if key in {"headers", "properties"} and isinstance(value, dict):
            base[key] = {**base[key], **value}
        else:
            base[key] = value
    return base


def with_body(body: bytes | str, **changes: Any) -> bytes:
    data = body.encode() if isinstance(body, str) else body
    return json.dumps(message(body=base64.b64encode(data).decode(), **changes)).encode()


def _item(value: Any) -> bytes:
    return json.dumps(value).encode()


def queue_poisons() -> list[Poison]:
    """Raw items for the ``gbq`` list, each refused by the worker's screen."""
    kwargs = {"event_id": "paid:POISON"}
    embed = {"callbacks": None, "errbacks": None, "chain": None, "chord": None}
    items: dict[str, bytes] = {
        # the item itself
        "item not JSON": b"{definitely not json",
        "item is NUL bytes": b"\x00" * 64,
        "item not UTF-8": b'{"body": "\xff\xfe"}',
        "item JSON array": b"[1, 2, 3]",
        "item JSON null": b"null",
        "item JSON string": b'"a string"',
        "item JSON number": b"42",
        "item NaN": b'{"body": NaN}',
        "item deeply nested": f'{{"headers": {deeply_nested()}}}'.encode(),
        "item nested past the limit": _item(message(headers={"x": json.loads(deeply_nested(40))})),
        "item too large": _item(message(headers={"padding": "x" * (1024 * 1024)})),
        "item with a huge integer": b'{"body": ' + b"9" * 5000 + b"}",
        # the envelope's fields
        "headers missing": _item({k: v for k, v in message().items() if k != "headers"}),
        "headers a list": _item(message(headers=[1, 2])),
        "properties a string": _item(message(properties="p")),
        "another task": _item(message(headers={"task": "celery.chord_unlock"})),
        "protocol 1 (no task header)": _item(message(headers={"task": None})),
        "pickle content type": _item(message(**{"content-type": "application/x-python-serialize"})),
        "binary encoding": _item(message(**{"content-encoding": "binary"})),
        "compressed": _item(message(headers={"compression": "application/x-gzip"})),
        "body encoding not base64": _item(
            message(properties={"body_encoding": "utf-8"}, body="[[], {}, {}]")
        ),
        "body not base64": _item(message(body="@@@ not base64 @@@")),
        "body a number": _item(message(body=5)),
        # the body: [args, kwargs, embed]
        "body not JSON": with_body(b"{definitely not json"),
        "body NUL bytes": with_body(b"\x00\x00\x00"),
        "body not UTF-8": with_body(b"\xff\xfe[[]]"),
        "body JSON null": with_body("null"),
        "body JSON string": with_body('"x"'),
        "body a dict": with_body(json.dumps(kwargs)),
        "body of 2 elements": with_body(json.dumps([[], kwargs])),
        "body of 4 elements": with_body(json.dumps([[], kwargs, embed, 1])),
        "body deeply nested": with_body(deeply_nested()),
        "positional arguments": with_body(json.dumps([["paid:POISON"], {}, embed])),
        "kwargs a list": with_body(json.dumps([[], ["event_id"], embed])),
        "embed a string": with_body(json.dumps([[], kwargs, "embed"])),
        "unknown argument": with_body(json.dumps([[], {**kwargs, "countdown": 5}, embed])),
        "event_id a number": with_body(json.dumps([[], {"event_id": 42}, embed])),
        "event_id empty": with_body(json.dumps([[], {"event_id": ""}, embed])),
        "event_id with NUL": with_body(json.dumps([[], {"event_id": "paid:\u0000"}, embed])),
        "event_id too long": with_body(json.dumps([[], {"event_id": "x" * 301}, embed])),
        "event a list": with_body(json.dumps([[], {**kwargs, "event": [1]}, embed])),
        "published_at a string": with_body(
            json.dumps([[], {**kwargs, "event": {}, "published_at": "now"}, embed])
        ),
        "published_at true": with_body(
            json.dumps([[], {**kwargs, "event": {}, "published_at": True}, embed])
        ),
    }
    return [Poison(name, raw) for name, raw in items.items()]


def forged_headers() -> list[Callable[[str, dict[str, Any]], bytes]]:
    """Valid requests with execution headers Celery would obey: each must be delivered as
    if the header were not there (given an event id and the event)."""

    def forge(headers: dict[str, Any], embed: dict[str, Any] | None = None) -> Any:
        def build(event_id: str, event: dict[str, Any]) -> bytes:
            base = task_envelope(event_id, event, 1.0)
            base["headers"] = {**base["headers"], **headers}
            if embed is not None:
                body = [[], {"event_id": event_id, "event": event, "published_at": 1.0}, embed]
                base["body"] = base64.b64encode(json.dumps(body).encode()).decode()
            return json.dumps(base).encode()

        return build

    future = (datetime.now(UTC) + timedelta(days=30)).isoformat()
    past = (datetime.now(UTC) - timedelta(days=30)).isoformat()
    chained = {"task": DELIVER_TASK, "args": [], "kwargs": {"event_id": "paid:POISON"}}
    return [
        forge({"timelimit": [0.001, 0.001]}),  # would kill the task at once
        forge({"eta": future}),  # would hold it in memory for a month
        forge({"expires": past}),  # would revoke it unrun
        forge({"retries": 99, "shadow": "evil"}),
        forge({}, {"callbacks": [chained], "chain": [chained], "errbacks": None, "chord": None}),
    ]


def unacked_entries(queue: str) -> list[Poison]:
    """Entries for kombu's ``unacked`` hash (restored by a starting worker)."""
    refused = json.loads(with_body("null"))
    entries = {
        "unacked not JSON": b"\x00not json",
        "unacked a dict": _item({"a": 1}),
        "unacked of 2 elements": _item([message(), ""]),
        "unacked to another queue": _item([message(), "", "celery"]),
        "unacked to an exchange": _item([message(), "gbq", queue]),
        "unacked queue not a string": _item([message(), "", [queue]]),
        "unacked deeply nested": f'[{deeply_nested()}, "", "{queue}"]'.encode(),
        "unacked message refused": _item([refused, "", queue]),
    }
    return [Poison(name, raw) for name, raw in entries.items()]


def inbox_envelopes() -> list[tuple[bytes, Poison]]:
    """(hash field, envelope) pairs for ``gbq:inbox`` that cannot be ingested."""
    good = _event("INBOX")
    pairs = {
        b"paid:INBOX-1": ("inbox not JSON", b"{not json (inbox)"),
        b"paid:INBOX-2": ("inbox a list", b"[1]"),
        b"paid:INBOX-3": ("inbox without published_at", _item({"event": good})),
        b"paid:INBOX-4": (
            "inbox published_at text",
            _item({"event": good, "published_at": "yesterday"}),
        ),
        b"paid:INBOX-5": ("inbox event a string", _item({"event": "x", "published_at": 1})),
        b"paid:INBOX-6": (
            "inbox invalid event",
            _item({"event": {**good, "total_paid": "-1"}, "published_at": 1}),
        ),
        b"paid:INBOX-7": (
            "inbox filed under another id",
            _item({"event": good, "published_at": 1}),
        ),
        b"\xff\xfe": ("inbox id not UTF-8", _item({"event": good, "published_at": 2})),
        b"paid:INBOX-9": ("inbox deeply nested", f'{{"event": {deeply_nested()}}}'.encode()),
        b"paid:INBOX-10": ("inbox NUL bytes", b"\x00\x01\x02"),
    }
    return [(key, Poison(name, raw)) for key, (name, raw) in pairs.items()]


def spool_rows() -> list[tuple[object, object, object, Poison]]:
    """(event_id, event_json, published_at) rows for the spool that cannot be relayed; the
    poison's bytes are the row's event_json."""

    good = {n: json.dumps(_event(f"SPOOL-{n}")) for n in (3, 4, 8)}

    too_old = json.dumps({**_event("SPOOL"), "occurred_at": "1970-01-01T00:00:00Z"})
    rows: list[tuple[object, object, object, str, bytes]] = [
        ("paid:SPOOL", "{not json (spool)", 1.0, "spool not JSON", b"{not json (spool)"),
        ("paid:SPOOL", "[1, 2]", 1.0, "spool a list", b"[1, 2]"),
        ("paid:SPOOL-3", good[3], "soon", "spool published_at text", good[3].encode()),
        (b"\xff", good[4], 1.0, "spool id a blob", good[4].encode()),
        ("paid:SPOOL", b"\x00\xffblob", 1.0, "spool JSON a blob", b"\x00\xffblob"),
        ("paid:SPOOL", 12345, 1.0, "spool JSON a number", b"12345"),
        (
            "paid:SPOOL",
            deeply_nested(DEEP + 1),
            1.0,
            "spool deeply nested",
            deeply_nested(DEEP + 1).encode(),
        ),
        ("paid:OTHER", good[8], 1.0, "spool filed under another id", good[8].encode()),
        ("paid:SPOOL", too_old, 1.0, "spool invalid event", too_old.encode()),
    ]
    return [(eid, ejson, at, Poison(name, raw)) for eid, ejson, at, name, raw in rows]


def outbox_rows() -> list[tuple[str, str, Poison]]:
    """(event_id, event_json) rows for ``gbq_outbox`` that cannot be ingested."""
    invalid = json.dumps({**_event("OUTBOX"), "customer_id": "a\u0000b"})
    rows = [
        ("paid:OUTBOX", "{not json (outbox)", "outbox not JSON"),
        ("paid:OUTBOX", "[null]", "outbox JSON a list"),
        ("paid:OUTBOX", deeply_nested(DEEP + 2), "outbox deeply nested"),
        ("paid:OUTBOX", invalid, "outbox invalid event (NUL)"),
        ("paid:ELSEWHERE", json.dumps(_event("OUTBOX-1")), "outbox filed under another id"),
        ("x" * 300, json.dumps(_event("OUTBOX-2")), "outbox id too long for the event"),
    ]
    return [(eid, ejson, Poison(name, ejson.encode())) for eid, ejson, name in rows]


QUARANTINE_GARBAGE = [
    Poison("quarantine not a record", b"\x00garbage in the quarantine"),
    Poison("quarantine a wrong record", _item({"source": 1, "raw": "x"})),
]
