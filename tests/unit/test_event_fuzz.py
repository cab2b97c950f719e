"""Fuzzing what checkout may hand to ``publish()``: every hostile value is refused with an
InvalidEventError naming its field, nothing else is ever raised, and whatever is accepted
can be carried to Gameball (serialised, sent as strict JSON, stored in the ledger)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from producers.events import MAX_EVENT_BYTES, InvalidEventError, as_event, event_to_json
from tests.poison import deeply_nested
from worker.gameball.payloads import build_request
from worker.ledger.core import new_event
from worker.ledger.models import EventRow

NOW = datetime.now(UTC)
LINE = {"product_id": "P-1", "quantity": 2, "price": "4.50", "title": "Mug", "tags": ["home"]}
BASES: dict[str, dict[str, Any]] = {
    "paid": {
        "kind": "paid",
        "order_id": "ORD-1",
        "customer_id": "c-1",
        "occurred_at": (NOW - timedelta(hours=1)).isoformat(),
        "total_price": "10",
        "total_paid": "9",
        "total_discount": "1",
        "line_items": [LINE],
        "extra": {"channel": "web", "store": 3},
    },
    "refunded": {
        "kind": "refunded",
        "order_id": "ORD-1",
        "refund_id": "R-1",
        "customer_id": "c-1",
        "occurred_at": (NOW - timedelta(minutes=30)).isoformat(),
        "amount": "4.50",
        "line_items": [LINE],
    },
    "cancelled": {
        "kind": "cancelled",
        "order_id": "ORD-1",
        "customer_id": "c-1",
        "occurred_at": (NOW - timedelta(minutes=10)).isoformat(),
    },
    "cashback": {
        "kind": "cashback",
        "transaction_id": "T-1",
        "customer_id": "c-1",
        "occurred_at": (NOW - timedelta(minutes=5)).isoformat(),
        "amount": "3",
    },
}

NAN_LIKE: list[Any] = [float("nan"), float("inf"), "NaN", "Infinity", "-Infinity", "sNaN"]
NOT_A_NUMBER: list[Any] = [True, False, None, [1], {"v": 1}, "abc", ""]
MONEY = [
    *NAN_LIKE,
    *NOT_A_NUMBER,
    "123456789012345678901234567890",  # 30 digits
    "0.000000000000000000000000000001",
    "1e30",
    "1e-99999999999",
    "1e99999999999",
    "-1",
    10**40,
]
COUNTS = [*NAN_LIKE, *NOT_A_NUMBER, 1.5, 10**30, -1, 0]
TEXT = [
    "nul\x00byte",
    "escape \x1b[31m",
    "bell\x07",
    "tab\tinside",
    "lone \ud800 surrogate",
    "x" * 1_000_000,
    5,
    True,
    None,
    ["a"],
    {"a": "b"},
    json.loads(deeply_nested(200)),
]
IDS = [*TEXT, "", " padded ", "rtl\u202eoverride", "zero\u200bwidth", "private\ue000use"]
TIMES = [
    "1970-01-01T00:00:00Z",
    "1999-12-31T23:59:59Z",
    "2100-01-01T00:00:00Z",
    "0001-01-01T00:00:00+05:00",
    "9999-12-31T23:59:59-05:00",
    "2024-01-01T00:00:00",  # naive
    "not a time",
    0,
    True,
    None,
]

# (kind, path, hostile values): a path is a list of keys into the event dict.
FIELDS: list[tuple[str, tuple[Any, ...], list[Any]]] = [
    ("paid", ("total_price",), MONEY),
    ("paid", ("total_paid",), MONEY),
    ("paid", ("total_tax",), MONEY),
    ("paid", ("line_items", 0, "price"), MONEY),
    ("paid", ("line_items", 0, "weight"), [m for m in MONEY if m is not None]),  # optional
    ("paid", ("line_items", 0, "quantity"), COUNTS),
    ("paid", ("line_items", 0, "title"), [t for t in TEXT if t is not None]),  # optional
    ("paid", ("line_items", 0, "tags"), [["x"] * 10_000, [deeply_nested()], "tag"]),
    ("paid", ("line_items", 0, "product_id"), IDS),
    ("paid", ("order_id",), [*IDS, "with:colon"]),
    ("paid", ("customer_id",), IDS),
    ("paid", ("email",), [t for t in TEXT if t is not None]),  # optional
    ("paid", ("occurred_at",), TIMES),
    ("paid", ("extra", "deep"), [json.loads(deeply_nested(50)), True, 2**60, 1.5, "\x00"]),
    ("paid", ("extra",), [{"k" * 101: 1}, {"": 1}, {str(n): n for n in range(51)}, [1]]),
    ("paid", ("line_items",), [[LINE] * 1001, "lines", [None]]),
    ("paid", ("kind",), ["PAID", "refund", 1, None, True]),
    ("paid", ("schema_version",), [2, True, "1", None]),
    ("paid", ("unknown_field",), [json.loads(deeply_nested(500)), 1]),
    ("refunded", ("amount",), [m for m in MONEY if m is not None]),
    ("refunded", ("refund_id",), [*IDS, "ORD-1", "ORD-1-cancel"]),
    ("refunded", ("occurred_at",), TIMES),
    ("cashback", ("amount",), MONEY),
    ("cashback", ("transaction_id",), IDS),
    ("cancelled", ("customer_id",), IDS),
]
CASES = [(kind, path, value) for kind, path, values in FIELDS for value in values]


def _with(kind: str, path: tuple[Any, ...], value: Any) -> dict[str, Any]:
    event = json.loads(json.dumps(BASES[kind]))
    target = event
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return event


def _field(path: tuple[Any, ...]) -> str:
    return ".".join(str(part) for part in path)


@pytest.mark.parametrize(
    ("kind", "path", "value"),
    CASES,
    ids=[f"{kind}.{_field(path)}={str(value)[:20]!r}" for kind, path, value in CASES],
)
def test_a_hostile_value_is_refused_naming_its_field(
    kind: str, path: tuple[Any, ...], value: Any
) -> None:
    """Whichever field holds it, a hostile value gives InvalidEventError for that field."""
    with pytest.raises(InvalidEventError) as refused:
        event_to_json(as_event(_with(kind, path, value)))
    named = _field(path) if path != ("kind",) else "kind"
    assert any(field.startswith(named) or field == "event" for field in refused.value.fields), (
        refused.value.fields
    )
    assert len(str(refused.value)) < 5000  # the message never echoes a huge input


@pytest.mark.parametrize("value", [None, 42, [BASES["paid"]], object(), b"\xff", "{"])
def test_what_is_not_an_event_at_all_is_refused(value: Any) -> None:
    with pytest.raises(InvalidEventError, match="event"):
        as_event(value)


def test_an_event_too_large_to_carry_is_refused() -> None:
    lines = [{**LINE, "product_id": f"P-{n}", "title": "t" * 255} for n in range(1000)]
    big = {**BASES["paid"], "total_price": "100000", "total_paid": "100000", "line_items": lines}
    big["total_discount"] = "0"
    for line in lines:
        line["tags"] = ["x" * 255] * 2
    with pytest.raises(InvalidEventError, match=f"more than {MAX_EVENT_BYTES}"):
        event_to_json(as_event(big))


scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.decimals()
    | st.text()
    | st.sampled_from([*MONEY, *TEXT[:5], *TIMES])
)
values = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3)
    ),
    max_leaves=8,
)
paths = st.sampled_from(
    [(kind, path) for kind, path, _ in FIELDS]
    + [(kind, (key,)) for kind, base in BASES.items() for key in base]
)


def _strict_json(body: bytes) -> Any:
    def refuse(name: str) -> None:
        raise AssertionError(f"{name} in a body for Gameball")

    return json.loads(body, parse_constant=refuse)


@settings(max_examples=600, suppress_health_check=[HealthCheck.too_slow])
@given(paths, values)
def test_anything_is_refused_or_carried_to_gameball(where: Any, value: Any) -> None:
    """Random values anywhere: publish either refuses (InvalidEventError, nothing else) or
    accepts an event that serialises, becomes a strict-JSON request for every API version,
    round-trips, and fits the ledger's columns."""
    kind, path = where
    try:
        event = as_event(_with(kind, path, value))
        text = event_to_json(event)
    except InvalidEventError:
        return
    assert as_event(text) == event
    for version in ("v3.0", "v4.0"):
        request = build_request(event, version)
        _strict_json(request.body)
    row = new_event(event, 1.0)
    columns = EventRow.__table__.columns
    for name in ("event_id", "kind", "order_id", "customer_id"):
        length = columns[name].type.length
        assert len(getattr(row, name) or "") <= length
    assert "\x00" not in row.payload
    row.payload.encode("utf-8")  # no surrogate: PostgreSQL can store it


def test_unusual_but_valid_events_are_accepted() -> None:
    """The hardening refuses no real-world data: scripts, emoji, 0- and 3-decimal
    currencies, maximum lengths, floats for money, trailing zeros."""
    arabic = {**BASES["paid"], "customer_id": "عميل-١", "email": "نص@مثال.مصر"}
    emoji = {**BASES["paid"], "line_items": [{**LINE, "title": "Mug 🎉 ☕ — 50% off"}]}
    yen = {**BASES["paid"], "currency": "JPY", "total_price": "1000", "total_paid": "1000"}
    yen |= {"total_discount": "0.00", "line_items": []}
    dinar = {**BASES["cashback"], "currency": "KWD", "amount": "1.125"}
    longest = {**BASES["cancelled"], "order_id": "O" * 100, "customer_id": "C" * 100}
    floats = {**BASES["refunded"], "amount": 4.5}
    zeros = {**BASES["cashback"], "amount": "3.000000000000000000000000000"}
    for data in (arabic, emoji, yen, dinar, longest, floats, zeros):
        event = as_event(data)
        assert as_event(event_to_json(event)) == event
    assert as_event(floats).amount == Decimal("4.5")  # type: ignore[union-attr]
