"""Events → Gameball v3.0 and v4.0 requests: names, paths and byte-stable bodies."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest

from producers.events import (
    Branch,
    CashbackAwarded,
    InvalidEventError,
    LineItem,
    Merchant,
    OrderCancelled,
    OrderPaid,
    OrderRefunded,
    Redemption,
    event_to_json,
    parse_event,
)
from worker.gameball.payloads import (
    Fixed,
    PointsSent,
    RefundLine,
    UnsentRedemptionError,
    build_request,
    gameball_time,
    hold_request,
    json_number,
    reversal_lines,
)

PAID_AT = datetime(2024, 10, 16, 8, 13, 29, 290123, tzinfo=UTC)


def paid() -> OrderPaid:
    return OrderPaid(
        order_id="ORD-2024-000123",
        customer_id="cust_1001",
        email="jane@example.com",
        occurred_at=PAID_AT,
        total_price=Decimal("357.00"),
        total_paid=Decimal("327.00"),
        total_discount=Decimal("30"),
        total_shipping=Decimal("15"),
        total_tax=Decimal("42"),
        line_items=(
            LineItem(
                product_id="P-100",
                quantity=2,
                price=Decimal("100"),
                discount=Decimal("20"),
                taxes=Decimal("27"),
                category=("shoes",),
                tags=("sale",),
            ),
            LineItem(product_id="P-200", quantity=1, price=Decimal("100"), taxes=Decimal("15")),
        ),
        discount_codes=("WELCOME10",),
        extra={"paymentMethod": "card", "storeCode": 7},
    )


def test_paid_maps_to_v3_order_api() -> None:
    """A paid order is Gameball's Order API call, with every total and line."""
    request = build_request(paid(), "v3.0")
    body = request.json()
    assert (request.method, request.path) == ("POST", "/api/v3.0/integrations/order")
    assert request.call == "order"
    assert body["playerUniqueId"] == "cust_1001"
    assert body["email"] == "jane@example.com"
    assert body["orderId"] == request.transaction_id == "ORD-2024-000123"
    assert body["orderDate"] == "2024-10-16T08:13:29.290Z"
    assert (body["totalPrice"], body["totalPaid"], body["totalDiscount"]) == (357, 327, 30)
    assert body["lineItems"][0] == {
        "productId": "P-100",
        "quantity": 2,
        "price": 100,
        "discount": 20,
        "taxes": 27,
        "category": ["shoes"],
        "tags": ["sale"],
    }
    assert body["discountCodes"] == ["WELCOME10"]
    assert body["extra"] == {"paymentMethod": "card", "storeCode": 7}
    assert "customerId" not in body


def test_paid_maps_to_v4_orders_api() -> None:
    """v4.0 renames the path and the customer field. The shop's own discount codes are not
    redemption.couponCodes (Gameball's coupons, which an order burns): they go to extra."""
    request = build_request(paid(), "v4.0")
    body = request.json()
    assert request.path == "/api/v4.0/integrations/orders"
    assert body["customerId"] == "cust_1001"
    assert "playerUniqueId" not in body
    assert "redemption" not in body
    assert "discountCodes" not in body
    assert body["extra"] == {
        "paymentMethod": "card",
        "storeCode": 7,
        "shopDiscountCodes": "WELCOME10",
    }


def refund(amount: str | None, **extra: object) -> OrderRefunded:
    return OrderRefunded(
        order_id="ORD-1",
        refund_id="RF-9",
        customer_id="c-1",
        occurred_at=PAID_AT + timedelta(days=1),
        amount=None if amount is None else Decimal(amount),
        **extra,  # type: ignore[arg-type]
    )


def test_partial_refund_v3_names_both_ids_and_the_amount() -> None:
    """transactionId is the refund's own id, reverseTransactionId the order's."""
    request = build_request(refund("90.50"), "v3.0")
    assert request.path == "/api/v3.0/integrations/transaction/refund"
    assert request.call == "partial_refund"
    assert request.json() == {
        "playerUniqueId": "c-1",
        "transactionId": "RF-9",
        "reverseTransactionId": "ORD-1",
        "transactionTime": "2024-10-17T08:13:29.290Z",
        "amount": 90.5,
    }


def test_full_refund_omits_the_amount() -> None:
    """No amount means "reverse everything the order earned"."""
    request = build_request(refund(None), "v3.0")
    assert request.call == "full_refund"
    assert "amount" not in request.json()


def test_refund_v4_uses_refund_transaction_id_and_line_items() -> None:
    """v4.0: refundTransactionId, refundAmount and refunded lines."""
    line = LineItem(product_id="P-1", quantity=1, price=Decimal("10"))
    body = build_request(refund("10", line_items=(line,)), "v4.0").json()
    assert body["refundTransactionId"] == "RF-9"
    assert body["refundAmount"] == 10
    assert body["customerId"] == "c-1"
    assert body["lineItems"] == [{"productId": "P-1", "quantity": 1, "price": 10}]
    assert "transactionId" not in body


def test_refund_v3_sends_line_items_unless_told_not_to() -> None:
    """v3.0's docs are silent on refund lines (v4 documents them): sent by default, since
    without them Gameball reverses cashback only; GBQ_GAMEBALL_V3_REFUND_LINE_ITEMS=false
    turns them off."""
    line = LineItem(product_id="P-1", quantity=1, price=Decimal("10"))
    event = refund("10", line_items=(line,))
    assert build_request(event, "v3.0").json()["lineItems"] == [
        {"productId": "P-1", "quantity": 1, "price": 10}
    ]
    assert "lineItems" not in build_request(event, "v3.0", v3_refund_lines=False).json()


@pytest.mark.parametrize("version", ["v3.0", "v4.0", "v4.1"])
def test_a_cancellation_names_the_lines_it_reverses_and_keeps_its_fixed_time(
    version: str,
) -> None:
    """The order's remaining lines and the transaction time fixed in the ledger go into
    the request: byte-identical on every attempt."""
    lines = (RefundLine("P-1", 2, Decimal("4.5")),)
    moment = datetime(2024, 10, 17, 8, 13, 29, 291000, tzinfo=UTC)
    event = OrderCancelled(
        order_id="ORD-1", customer_id="c-1", occurred_at=datetime(2024, 10, 17, tzinfo=UTC)
    )
    body = build_request(event, version, Fixed(moment, lines)).json()  # type: ignore[arg-type]
    assert body["lineItems"] == [{"productId": "P-1", "quantity": 2, "price": 4.5}]
    assert body["transactionTime"] == "2024-10-17T08:13:29.291Z"
    assert "amount" not in body
    assert "refundAmount" not in body


def test_the_lines_a_full_reversal_names_are_those_not_yet_refunded() -> None:
    """Paid: 3 mats and 2 bottles; refunded earlier: 2 mats; left: 1 mat, 2 bottles."""
    paid = OrderPaid(
        order_id="ORD-1",
        customer_id="c-1",
        occurred_at=datetime(2024, 10, 17, tzinfo=UTC),
        total_price=Decimal(40),
        total_paid=Decimal(40),
        line_items=(
            LineItem(product_id="mat", quantity=3, price=Decimal(10)),
            LineItem(product_id="bottle", quantity=2, price=Decimal(5)),
        ),
    )
    earlier = refund("20", line_items=(LineItem(product_id="mat", quantity=2, price=Decimal(10)),))
    assert reversal_lines(paid, [earlier]) == (
        RefundLine("mat", 1, Decimal(10)),
        RefundLine("bottle", 2, Decimal(5)),
    )
    assert reversal_lines(paid, [earlier, earlier]) == (RefundLine("bottle", 2, Decimal(5)),)


@pytest.mark.parametrize("version", ["v3.0", "v4.0"])
def test_cancel_is_a_full_refund_with_a_derived_id(version: str) -> None:
    """A cancellation reverses the order under the id ``<order>-cancel``."""
    event = OrderCancelled(order_id="ORD-1", customer_id="c-1", occurred_at=PAID_AT)
    request = build_request(event, version)  # type: ignore[arg-type]
    body = request.json()
    assert request.call == "cancel"
    assert request.path.endswith("/transaction/refund" if version == "v3.0" else "/refund")
    assert body["reverseTransactionId"] == "ORD-1"
    assert request.transaction_id == "ORD-1-cancel"
    assert "ORD-1-cancel" in body.values()
    assert "amount" not in body
    assert "refundAmount" not in body


@pytest.mark.parametrize(
    ("version", "path", "customer"),
    [
        ("v3.0", "/api/v3.0/integrations/transaction/cashback", "playerUniqueId"),
        ("v4.0", "/api/v4.0/integrations/transactions/cashback", "customerId"),
    ],
)
def test_cashback(version: str, path: str, customer: str) -> None:
    """Cashback carries the shop's transaction id and the amount."""
    event = CashbackAwarded(
        transaction_id="tra_1", customer_id="p-1", occurred_at=PAID_AT, amount=Decimal("99.98")
    )
    request = build_request(event, version)  # type: ignore[arg-type]
    assert request.path == path
    assert request.json() == {
        customer: "p-1",
        "transactionId": "tra_1",
        "transactionTime": "2024-10-16T08:13:29.290Z",
        "amount": 99.98,
    }


def test_same_event_gives_byte_identical_requests_on_every_attempt() -> None:
    """Retries resend exactly the same bytes, even after a JSON round trip of the event."""
    for event in (paid(), refund("1.5"), refund(None)):
        again = parse_event(event_to_json(event))
        assert build_request(event, "v3.0").body == build_request(again, "v3.0").body
        assert build_request(event, "v4.0").body == build_request(again, "v4.0").body


def test_transaction_time_is_the_event_time_not_now() -> None:
    """The time sent is the event's, whatever its zone, never the moment of sending."""
    local = datetime(2024, 10, 16, 10, 13, 29, 290999, tzinfo=timezone(timedelta(hours=2)))
    assert gameball_time(local) == "2024-10-16T08:13:29.290Z"


@pytest.mark.parametrize(
    ("amount", "expected"),
    [
        ("100", 100),
        ("100.00", 100),
        ("0.1", 0.1),
        ("999999999999.999", 999999999999.999),
        ("19.99", 19.99),
        ("0.005", 0.005),
    ],
)
def test_json_numbers_are_exact(amount: str, expected: float) -> None:
    """Amounts become JSON numbers that print back to the same decimal."""
    number = json_number(Decimal(amount))
    assert number == expected
    assert Decimal(json.dumps(number)) == Decimal(amount)


def _with_redemption(**fields: Any) -> OrderPaid:
    return paid().model_copy(update=fields)


def test_redemption_and_merchant_fields_per_version() -> None:
    """v3: holdReference / redeemedAmount and merchant. v4: redemption{pointsHoldReference,
    couponsLockReference, couponCodes}, merchant, channel, cartId and the return window;
    Gameball's coupons are not the shop's discount codes."""
    merchant = Merchant(unique_id="M-1", name="Main", branch=Branch(unique_id="B-7"))
    held = _with_redemption(
        redemption=Redemption(
            points_hold_reference="hold-1",
            gameball_coupon_codes=("GB-10",),
            coupons_lock_reference="lock-1",
        ),
        merchant=merchant,
        channel="pos",
        cart_id="cart-9",
        return_window_days=14,
    )
    v3 = build_request(held, "v3.0").json()
    assert (v3["holdReference"], v3["merchant"]) == (
        "hold-1",
        {"uniqueId": "M-1", "name": "Main", "branch": {"uniqueId": "B-7"}},
    )
    assert {"channel", "cartId", "cashbackConfigurations", "redemption"}.isdisjoint(v3)
    v4 = build_request(held, "v4.1").json()
    assert v4["redemption"] == {
        "pointsHoldReference": "hold-1",
        "couponsLockReference": "lock-1",
        "couponCodes": ["GB-10"],
    }
    assert (v4["channel"], v4["cartId"], v4["cashbackConfigurations"]) == (
        "pos",
        "cart-9",
        {"returnWindow": 14},
    )
    assert v4["merchant"]["branch"] == {"uniqueId": "B-7"}
    direct = _with_redemption(redemption=Redemption(redeemed_amount=Decimal("12.5")))
    assert build_request(direct, "v3.0").json()["redeemedAmount"] == 12.5
    with pytest.raises(UnsentRedemptionError, match="through a hold"):
        build_request(direct, "v4.0")  # never a silent drop: v4 redeems through a hold
    named = Fixed(points=PointsSent(hold_reference="gbq-hold"))
    assert build_request(direct, "v4.0", named).json()["redemption"] == {
        "pointsHoldReference": "gbq-hold"
    }
    v3_again = Fixed(points=PointsSent(redeemed_amount=Decimal("12.5")))
    assert build_request(held, "v3.0", v3_again).json()["redeemedAmount"] == 12.5
    assert "holdReference" not in build_request(held, "v3.0", v3_again).json()
    parked = build_request(held, "v4.1", Fixed(points=PointsSent())).json()
    assert parked["redemption"] == {"couponsLockReference": "lock-1", "couponCodes": ["GB-10"]}


def test_a_hold_request_holds_the_value_for_the_order() -> None:
    """openapi.json POST transactions/hold: transactionTime and amountToHold, no OTP."""
    order = _with_redemption(redemption=Redemption(redeemed_amount=Decimal("12.5")))
    moment = datetime(2026, 3, 1, 10, 0, tzinfo=UTC)
    v4 = hold_request(order, "v4.1", Decimal("12.5"), moment)
    assert (v4.call, v4.path, v4.transaction_id) == (
        "hold",
        "/api/v4.1/integrations/transactions/hold",
        order.order_id,
    )
    assert v4.json() == {
        "customerId": order.customer_id,
        "email": order.email,
        "transactionTime": "2026-03-01T10:00:00.000Z",
        "amountToHold": 12.5,
        "ignoreOTP": True,
    }
    v3 = hold_request(order, "v3.0", Decimal(3), moment).json()
    assert (v3["playerUniqueId"], v3["amount"]) == (order.customer_id, 3)


@pytest.mark.parametrize(
    ("redemption", "problem"),
    [
        ({"gameball_coupon_codes": ["GB-1"]}, "coupons_lock_reference"),
        ({"redeemed_amount": "0"}, "greater than 0"),
    ],
)
def test_inconsistent_redemptions_are_refused(redemption: dict[str, Any], problem: str) -> None:
    data = json.loads(event_to_json(paid()))
    with pytest.raises(InvalidEventError, match=problem):
        parse_event({**data, "redemption": redemption})


def test_a_merchant_needs_an_id_or_a_branch() -> None:
    data = json.loads(event_to_json(paid()))
    with pytest.raises(InvalidEventError, match="merchant"):
        parse_event({**data, "merchant": {"name": "nameless"}})


def test_a_refund_sends_its_lines_discount_and_taxes_and_v4_its_merchant() -> None:
    """openapi.json: refund lines take discount and taxes, the refund a merchant (v4; the
    v3.0 refund documents none). A line without them sends neither (as before)."""
    refund = OrderRefunded(
        order_id="O-1",
        refund_id="R-1",
        customer_id="c",
        occurred_at=PAID_AT,
        amount=Decimal(45),
        line_items=(
            LineItem(
                product_id="P-1",
                quantity=1,
                price=Decimal(50),
                discount=Decimal(10),
                taxes=Decimal(5),
            ),
            LineItem(product_id="P-2", quantity=1, price=Decimal(3)),
        ),
        merchant=Merchant(unique_id="M-1", branch=Branch(unique_id="B-2")),
    )
    v4 = build_request(refund, "v4.1").json()
    assert v4["lineItems"] == [
        {"productId": "P-1", "quantity": 1, "price": 50, "discount": 10, "taxes": 5},
        {"productId": "P-2", "quantity": 1, "price": 3},
    ]
    assert v4["merchant"] == {"uniqueId": "M-1", "branch": {"uniqueId": "B-2"}}
    assert "merchant" not in build_request(refund, "v3.0").json()
