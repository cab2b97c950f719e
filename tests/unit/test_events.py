"""The event contract: exact round trips, deterministic ids, field-by-field refusals."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from producers.events import (
    CashbackAwarded,
    InvalidEventError,
    OrderCancelled,
    OrderPaid,
    OrderRefunded,
    event_to_json,
    parse_event,
    shared_id_problems,
)
from tests.factories import EXAMPLE_8A

# --- strategies for valid events ------------------------------------------------------------

ids = st.text(
    alphabet=st.characters(
        codec="utf-8", exclude_categories=("Cc", "Cs", "Cf", "Co", "Zs", "Zl", "Zp")
    ),
    min_size=1,
    max_size=100,
)
order_ids = ids.filter(lambda value: ":" not in value)
past_times = st.datetimes(
    min_value=datetime(2000, 1, 1), max_value=datetime(2026, 1, 1), timezones=st.just(UTC)
)


def amounts(low: str = "0.01", high: str = "100000") -> st.SearchStrategy[Decimal]:
    return st.decimals(min_value=Decimal(low), max_value=Decimal(high), places=2)


@st.composite
def paid_events(draw: st.DrawFn) -> dict[str, Any]:
    price = draw(amounts())
    paid = draw(st.decimals(min_value=Decimal("0.01"), max_value=price, places=2))
    quantity = draw(st.integers(1, 5))
    unit = (price / 2 / quantity).quantize(Decimal("0.01"), rounding="ROUND_DOWN")
    lines = [] if unit <= 0 else [{"product_id": draw(ids), "quantity": quantity, "price": unit}]
    return {
        "kind": "paid",
        "order_id": draw(order_ids),
        "customer_id": draw(ids),
        "occurred_at": draw(past_times),
        "total_price": price,
        "total_paid": paid,
        "total_discount": price - paid,
        "line_items": lines,
    }


@st.composite
def refund_events(draw: st.DrawFn) -> dict[str, Any]:
    order_id = draw(order_ids)
    refund_id = draw(ids.filter(lambda value: value not in {order_id, f"{order_id}-cancel"}))
    return {
        "kind": "refunded",
        "order_id": order_id,
        "refund_id": refund_id,
        "customer_id": draw(ids),
        "occurred_at": draw(past_times),
        "amount": draw(st.none() | amounts()),
    }


cancel_events = st.fixed_dictionaries(
    {
        "kind": st.just("cancelled"),
        "order_id": order_ids,
        "customer_id": ids,
        "occurred_at": past_times,
    }
)
cashback_events = st.fixed_dictionaries(
    {
        "kind": st.just("cashback"),
        "transaction_id": ids,
        "customer_id": ids,
        "occurred_at": past_times,
        "amount": amounts(),
        "currency": st.sampled_from(["USD", "EGP", "SAR"]),
    }
)
valid_events = st.one_of(paid_events(), refund_events(), cancel_events, cashback_events)


@settings(max_examples=200)
@given(valid_events)
def test_json_round_trip_is_exact(data: dict[str, Any]) -> None:
    """Any valid event survives JSON and back unchanged, Decimals as Decimals."""
    event = parse_event(data)
    text = event_to_json(event)
    again = parse_event(text)
    assert again == event
    assert event_to_json(again) == text
    assert again.event_id == event.event_id
    for name in ("total_paid", "total_price", "amount"):
        value = getattr(again, name, None)
        assert value is None or isinstance(value, Decimal)


# --- invalid input is always refused with the field named ----------------------------------

FUTURE = datetime.now(UTC) + timedelta(days=30)
BAD_VALUES: dict[str, list[Any]] = {
    "order_id": ["", "x" * 101, " padded", "a:b", "tab\tinside", None, 17],
    "customer_id": ["", "y" * 101, "trailing ", "\x00", None],
    "occurred_at": [datetime(2024, 1, 1, 12), "2024-01-01T00:00:00", FUTURE, "yesterday", None],
    "refund_id": ["", "z" * 101, None],
    "transaction_id": ["", " t", None],
    "amount": [
        Decimal(0),
        Decimal("-1"),
        Decimal("1.001"),
        "NaN",
        "Infinity",
        "abc",
        Decimal("1e12"),
    ],
    "total_paid": [Decimal("-0.01"), Decimal("0.001"), "inf", None],  # 0: paid with points
    "total_price": [Decimal(0), Decimal("-3"), Decimal("1.234")],
    "currency": ["usd", "EURO", ""],
}
FIELDS_OF: dict[str, list[str]] = {
    "paid": ["order_id", "customer_id", "occurred_at", "total_paid", "total_price"],
    "refunded": ["order_id", "customer_id", "occurred_at", "refund_id", "amount"],
    "cancelled": ["order_id", "customer_id", "occurred_at"],
    "cashback": ["transaction_id", "customer_id", "occurred_at", "amount", "currency"],
}


@st.composite
def broken_events(draw: st.DrawFn) -> tuple[dict[str, Any], str]:
    data = dict(draw(valid_events))
    field = draw(st.sampled_from(FIELDS_OF[data["kind"]]))
    bad = draw(st.sampled_from(BAD_VALUES[field]))
    if field == "amount" and data["kind"] == "refunded" and bad is None:
        bad = Decimal(0)  # None is a valid refund amount (a full refund)
    data[field] = bad
    return data, field


@settings(max_examples=300)
@given(broken_events())
def test_invalid_input_is_refused_naming_the_field(case: tuple[dict[str, Any], str]) -> None:
    """Corrupting any one field gets the event refused with that field named."""
    data, field = case
    with pytest.raises(InvalidEventError) as refused:
        parse_event(data)
    assert field in refused.value.fields, refused.value
    assert field in str(refused.value)


# --- examples of each rule ------------------------------------------------------------------

PAID: dict[str, Any] = {
    "kind": "paid",
    "order_id": "ORD-1",
    "customer_id": "c-1",
    "occurred_at": "2024-10-16T08:13:29.290Z",
    "total_price": "357",
    "total_paid": "327",
    "total_discount": "30",
    "total_shipping": "15",
    "total_tax": "42",
    "line_items": [
        {"product_id": "P-100", "quantity": 2, "price": "100", "discount": "20", "taxes": "27"},
        {"product_id": "P-200", "quantity": 1, "price": "100", "taxes": "15"},
    ],
}


def refused_fields(data: dict[str, Any]) -> tuple[str, ...]:
    with pytest.raises(InvalidEventError) as refused:
        parse_event(data)
    return refused.value.fields


def test_gameballs_own_sample_order_is_valid() -> None:
    """Reference §2.4's order validates, with its event id derived from the order id."""
    event = parse_event(PAID)
    assert isinstance(event, OrderPaid)
    assert event.event_id == "paid:ORD-1"
    assert event.occurred_at.tzinfo is UTC


@pytest.mark.parametrize(
    ("changes", "fields"),
    [
        # total_paid above total_price
        ({"total_paid": "400"}, ("total_paid",)),
        # discount + paid beyond price
        ({"total_discount": "31"}, ("total_discount",)),
        # a line discount larger than the line
        (
            {"line_items": [{"product_id": "P", "quantity": 1, "price": "5", "discount": "6"}]},
            ("line_items.0.discount",),
        ),
        # lines worth more than the order
        ({"line_items": [{"product_id": "P", "quantity": 4, "price": "100"}]}, ("line_items",)),
        # line discounts beyond the order's discount
        (
            {"line_items": [{"product_id": "P", "quantity": 1, "price": "50", "discount": "40"}]},
            ("line_items",),
        ),
        # over-precise line price for the currency
        ({"line_items": [{"product_id": "P", "quantity": 1, "price": "5.001"}]}, ("line_items",)),
        # tax and shipping beyond the price
        ({"total_tax": "350"}, ("total_tax",)),
        # three problems at once are all named
        (
            {"order_id": "", "customer_id": "", "total_paid": "-1"},
            ("order_id", "customer_id", "total_paid"),
        ),
        # unknown fields are refused, not ignored
        ({"totalPaid": "3"}, ("totalPaid",)),
        # quantity must be a positive whole number
        (
            {"line_items": [{"product_id": "P", "quantity": 0, "price": "1"}]},
            ("line_items.0.quantity",),
        ),
    ],
)
def test_paid_event_rules(changes: dict[str, Any], fields: tuple[str, ...]) -> None:
    """Each inconsistency is refused and each bad field named."""
    assert set(fields) <= set(refused_fields({**PAID, **changes}))


def test_kuwaiti_dinar_allows_three_decimals_and_yen_none() -> None:
    """Decimals follow the currency (ISO 4217 minor units)."""
    base = {
        "kind": "cashback",
        "transaction_id": "t",
        "customer_id": "c",
        "occurred_at": "2024-01-01T00:00:00Z",
    }
    assert parse_event({**base, "currency": "KWD", "amount": "1.125"})
    assert refused_fields({**base, "currency": "KWD", "amount": "1.1255"}) == ("amount",)
    assert parse_event({**base, "currency": "JPY", "amount": "1500"})
    assert refused_fields({**base, "currency": "JPY", "amount": "15.5"}) == ("amount",)


def test_refund_needs_a_refund_id_distinct_from_the_order() -> None:
    """Without a refund id, or reusing the order's id, a refund is refused."""
    base = {
        "kind": "refunded",
        "order_id": "O-1",
        "customer_id": "c",
        "occurred_at": "2024-01-01T00:00:00Z",
        "amount": "5",
    }
    assert refused_fields(base) == ("refund_id",)
    assert refused_fields({**base, "refund_id": "O-1"}) == ("refund_id",)
    assert refused_fields({**base, "refund_id": "O-1-cancel"}) == ("refund_id",)


def test_a_refund_or_cashback_id_equal_to_another_orders_id_is_refused_in_one_batch() -> None:
    """Gameball's order, refund and cashback ids share one namespace: a refund or a
    cashback named like an order of the same batch would never apply."""
    moment = datetime(2024, 1, 1, tzinfo=UTC)
    one = Decimal(1)
    orders = [
        OrderPaid(order_id=o, customer_id="c", occurred_at=moment, total_price=one, total_paid=one)
        for o in ("A", "B")
    ]
    refund = OrderRefunded(order_id="A", refund_id="B", customer_id="c", occurred_at=moment)
    cashback = CashbackAwarded(transaction_id="A", customer_id="c", occurred_at=moment, amount=one)
    fine = OrderRefunded(order_id="A", refund_id="A-R1", customer_id="c", occurred_at=moment)
    problems = shared_id_problems([*orders, refund, cashback, fine])
    assert [(p.field, p.message.split(":")[0]) for p in problems] == [
        ("[2].refund_id", "'B' is also an order id"),
        ("[3].transaction_id", "'A' is also an order id"),
    ]
    assert shared_id_problems([*orders, fine]) == []
    # a cancellation's order counts too: its order exists
    cancel = OrderCancelled(order_id="Z", customer_id="c", occurred_at=moment)
    alone = CashbackAwarded(transaction_id="Z", customer_id="c", occurred_at=moment, amount=one)
    assert [p.field for p in shared_id_problems([cancel, alone])] == ["[1].transaction_id"]


def test_refund_without_amount_is_full() -> None:
    """amount=None is a full refund; ids are deterministic."""
    event = OrderRefunded(
        order_id="O-1",
        refund_id="R-1",
        customer_id="c",
        occurred_at=datetime(2024, 1, 1, tzinfo=UTC),
    )
    assert event.is_full
    assert event.event_id == "refunded:O-1:R-1"


def test_event_ids_are_deterministic() -> None:
    """The same shop ids give the same event id, so re-publishing is a no-op downstream."""
    moment = datetime(2024, 1, 1, tzinfo=UTC)
    assert OrderCancelled(order_id="O", customer_id="c", occurred_at=moment).event_id == (
        "cancelled:O"
    )
    cashback = CashbackAwarded(
        transaction_id="T:1", customer_id="c", occurred_at=moment, amount=Decimal(1)
    )
    assert cashback.event_id == "cashback:T:1"


def test_events_are_frozen() -> None:
    """An accepted event cannot be changed afterwards."""
    event = parse_event(PAID)
    with pytest.raises(ValidationError):
        event.total_paid = Decimal(1)  # type: ignore[misc]


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        ("{not json", "event"),  # not JSON
        ("[1, 2]", "event"),  # JSON, but not an object
        ('{"kind": "shipped"}', "kind"),  # unknown kind
        ("{}", "kind"),  # no kind
    ],
)
def test_unreadable_documents_are_refused(raw: str, field: str) -> None:
    """Bad JSON and unknown kinds get a clear error too."""
    with pytest.raises(InvalidEventError) as refused:
        parse_event(raw)
    assert refused.value.fields == (field,)


def test_error_message_lists_every_problem() -> None:
    """The message names each field with what is wrong, readable in a terminal."""
    with pytest.raises(InvalidEventError) as refused:
        parse_event({**PAID, "total_paid": "400", "occurred_at": "2024-10-16T08:13:29"})
    message = str(refused.value)
    assert message.startswith("invalid paid event: ")
    assert "occurred_at: must be timezone-aware" in message
    assert "total_paid: (400) must not exceed total_price (357)" in message


def test_a_line_discount_may_cover_the_lines_tax_as_in_gameballs_example_8a() -> None:
    """Example 8a is accepted as Gameball sends it; past price x quantity plus the line's
    taxes, the discount is refused, naming it."""
    event = parse_event(EXAMPLE_8A)
    assert isinstance(event, OrderPaid)
    assert event.line_items[0].discount == Decimal(345)
    beyond = {**EXAMPLE_8A["line_items"][0], "discount": "345.01"}
    lines = [beyond, EXAMPLE_8A["line_items"][1]]
    totals = {"total_discount": "345.01", "total_paid": "229.99"}
    assert refused_fields({**EXAMPLE_8A, **totals, "line_items": lines}) == (
        "line_items.0.discount",
    )


def test_an_order_paid_entirely_with_points_is_accepted() -> None:
    """Gameball's how-refunds-work.mdx, "Entirely Paid Using Points Balance": a product
    bought with 100 points worth 100 USD, nothing paid in money (total_paid 0); the v4
    OpenAPI sets no minimum on totalPaid."""
    event = parse_event(
        {
            "kind": "paid",
            "order_id": "POINTS-1",
            "customer_id": "c",
            "occurred_at": "2026-01-01T00:00:00Z",
            "total_price": "100",
            "total_discount": "100",
            "total_paid": "0",
            "redemption": {"points_hold_reference": "hold-1"},
        }
    )
    assert isinstance(event, OrderPaid)
    assert event.total_paid == 0
