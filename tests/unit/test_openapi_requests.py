"""Every request gbq builds for v4.0 and v4.1 conforms to Gameball's own OpenAPI
(tests/openapi/gameball-v4.json, derived from gameballers/gameball-docs): every event kind,
every optional field, refunds full and partial, with and without the order's lines."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest
from hypothesis import given, reject, settings
from hypothesis import strategies as st

from producers.events import Event, InvalidEventError, OrderPaid, parse_event
from tests.openapi import contract
from tests.openapi.derive import TARGET
from worker.gameball import records
from worker.gameball.payloads import Fixed, PointsSent, RefundLine, build_request, hold_request

VERSIONS = ("v4.0", "v4.1")
WHEN = "2026-03-01T10:00:00Z"
MERCHANT = {"unique_id": "m-1", "name": "Shop", "branch": {"unique_id": "b-1", "name": "Mall"}}
LINE = {
    "product_id": "P-1",
    "quantity": 2,
    "price": "50",
    "discount": "5",
    "taxes": "7",
    "sku": "SKU-1",
    "title": "Mug",
    "category": ["kitchen"],
    "collection": ["summer"],
    "tags": ["gift"],
    "vendor": "Acme",
    "weight": "0.5",
}
SMALLEST: dict[str, dict[str, Any]] = {
    "paid": {"order_id": "O-1", "total_price": "100", "total_paid": "100"},
    "cancelled": {"order_id": "O-1"},
    "refunded": {"order_id": "O-1", "refund_id": "R-1", "amount": "20"},
    "cashback": {"transaction_id": "C-1", "amount": "30"},
}
FULLEST: dict[str, dict[str, Any]] = {
    "paid": {
        "order_id": "O-1",
        "total_price": "112",
        "total_paid": "95",
        "total_discount": "10",
        "total_shipping": "5",
        "total_tax": "7",
        "line_items": [LINE],
        "discount_codes": ["SUMMER"],
        "extra": {"note": "gift", "floor": 3},
        "guest": True,
        "redemption": {
            "points_hold_reference": "hold-1",
            "gameball_coupon_codes": ["GB-1"],
            "coupons_lock_reference": "lock-1",
        },
        "merchant": MERCHANT,
        "channel": "web",
        "cart_id": "cart-1",
        "return_window_days": 14,
    },
    "cancelled": {"order_id": "O-1"},
    "refunded": {
        "order_id": "O-1",
        "refund_id": "R-1",
        "amount": "20",
        "line_items": [LINE],
        "merchant": MERCHANT,
    },
    "cashback": {
        "transaction_id": "C-1",
        "amount": "30",
        "merchant": MERCHANT,
        "return_window_days": 0,
    },
}
CHANNELS = {"email": "a@example.com", "mobile": "+201000000000"}


def _event(kind: str, fields: dict[str, Any], **extra: Any) -> Event:
    return parse_event(
        {"kind": kind, "customer_id": "cust-1", "occurred_at": WHEN, **fields, **extra}
    )


def _errors(event: Event, version: str, fixed: Fixed | None = None) -> list[str]:
    request = build_request(event, version, fixed or Fixed())  # type: ignore[arg-type]
    return contract.request_errors(request.method, request.path, request.json())


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("kind", sorted(SMALLEST))
@pytest.mark.parametrize("shape", [SMALLEST, FULLEST], ids=["smallest", "fullest"])
def test_every_event_kinds_request_conforms(
    version: str, kind: str, shape: dict[str, dict[str, Any]]
) -> None:
    assert _errors(_event(kind, shape[kind], **CHANNELS), version) == []


@pytest.mark.parametrize("version", VERSIONS)
def test_reversals_naming_the_orders_lines_conform(version: str) -> None:
    """A cancellation and a full refund send the order's unrefunded lines (Fixed)."""
    lines = (RefundLine("P-1", 2, Decimal(50)), RefundLine("P-2", 1, Decimal("9.99")))
    fixed = Fixed(transaction_time=datetime(2026, 3, 2, tzinfo=UTC), reversal_lines=lines)
    full_refund = _event("refunded", {"order_id": "O-1", "refund_id": "R-9"})
    assert _errors(_event("cancelled", {"order_id": "O-1"}), version, fixed) == []
    assert _errors(full_refund, version, fixed) == []


amounts = st.decimals(min_value=Decimal("0.01"), max_value=Decimal(10**6), places=2)


@settings(max_examples=60, deadline=None)
@given(
    version=st.sampled_from(VERSIONS),
    kind=st.sampled_from(sorted(FULLEST)),
    drop=st.sets(st.sampled_from(sorted({k for f in FULLEST.values() for k in f}))),
    amount=amounts,
)
def test_any_combination_of_optional_fields_conforms(
    version: str, kind: str, drop: set[str], amount: Decimal
) -> None:
    required = set(SMALLEST[kind])
    fields = {k: v for k, v in FULLEST[kind].items() if k not in drop or k in required}
    if "amount" in fields:
        fields["amount"] = str(amount)
    try:
        event = _event(kind, fields)
    except InvalidEventError:
        reject()  # a combination publish() refuses (lines' discounts without the total)
    assert _errors(event, version) == []


@pytest.mark.parametrize("version", VERSIONS)
def test_gbqs_reads_conform(version: str) -> None:
    """The record reads reconciliation and settlement make."""

    class Recorder:
        def __init__(self) -> None:
            self.paths: list[str] = []

        def get_json(self, path: str) -> tuple[int, object]:
            self.paths.append(path)
            return 200, {"transactions": [], "count": 0, "hasMore": False}

    reader = Recorder()
    records.order_records(reader, "O 1/x", version)  # type: ignore[arg-type]
    records.customer_records(reader, "cust 1", version)  # type: ignore[arg-type]
    records.customer_balance(reader, "cust 1", version)  # type: ignore[arg-type]
    assert len(reader.paths) == 3
    for path in reader.paths:
        query = dict(parse_qsl(urlsplit(path).query))
        assert contract.request_errors("GET", urlsplit(path).path, None, query) == [], path


def test_the_judge_catches_a_misread_field() -> None:
    """The validator is strict where Gameball's schema is open: an unknown field, a
    missing required one and a wrong type are each named."""
    request = build_request(_event("paid", SMALLEST["paid"]), "v4.1")
    body = request.json()
    body["redeemedAmount"] = 5
    del body["orderDate"]
    body["totalPaid"] = "100"
    errors = contract.request_errors("POST", request.path, body)
    assert any("redeemedAmount" in e for e in errors), errors
    assert any("orderDate" in e and "required" in e for e in errors), errors
    assert any(e.startswith("totalPaid:") for e in errors), errors
    assert contract.request_errors(
        "GET", "/api/v4.1/integrations/transactions", None, {"offset": "0"}
    )


def test_the_schema_file_names_the_source_it_was_derived_from() -> None:
    """The committed file names its source (``make openapi DOCS=...`` re-derives it)."""
    derived = json.loads(TARGET.read_text())
    assert derived["source"]["repository"] == "gameballers/gameball-docs"
    assert derived["source"]["commit"] == "409b529"
    assert len(derived["source"]["sha256"]) == 64
    assert "/transactions" in derived["paths"]


@pytest.mark.parametrize("version", VERSIONS)
def test_the_hold_gbq_makes_and_the_order_naming_it_conform(version: str) -> None:
    """v4 redeems a redeemed_amount by holding it first (worker.rules.redemption)."""
    order = _event("paid", SMALLEST["paid"], redemption={"redeemed_amount": "40"}, **CHANNELS)
    assert isinstance(order, OrderPaid)
    hold = hold_request(order, version, Decimal(40), datetime(2026, 3, 1, tzinfo=UTC))  # type: ignore[arg-type]
    assert contract.request_errors(hold.method, hold.path, hold.json()) == []
    named = Fixed(points=PointsSent(hold_reference="gbq-hold"))
    assert _errors(order, version, named) == []
    assert _errors(order, version, Fixed(points=PointsSent())) == []  # parked: without it
