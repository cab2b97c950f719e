"""Map events to Gameball requests, v3.0, v4.0 or v4.1 (docs/gameball-contract.md: every field
sent per version and call, with its source).

Pure functions. The same event always gives byte-identical bodies: the ids come from the
shop's own ids and the time is the event's ``occurred_at`` at millisecond precision, never
"now". That is what lets Gameball's duplicate check (305 / 9004) make retries harmless.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Final, Literal, TypeAlias

from producers.events import (
    CashbackAwarded,
    Event,
    LineItem,
    Merchant,
    OrderCancelled,
    OrderPaid,
    OrderRefunded,
    Redemption,
)
from worker.gameball.versions import ApiVersion

SHOP_CODES_KEY: Final = "shopDiscountCodes"  # v4: the shop's own codes, in extra
CallKind: TypeAlias = Literal[
    "order", "cancel", "full_refund", "partial_refund", "cashback", "hold"
]
REFUND_CALLS: Final[frozenset[CallKind]] = frozenset({"cancel", "full_refund", "partial_refund"})

_PATHS: Final[dict[ApiVersion, dict[str, str]]] = {
    "v3.0": {
        "order": "/api/v3.0/integrations/order",
        "refund": "/api/v3.0/integrations/transaction/refund",
        "cashback": "/api/v3.0/integrations/transaction/cashback",
        "hold": "/api/v3.0/integrations/transaction/hold",
    },
    "v4.0": {
        "order": "/api/v4.0/integrations/orders",
        "refund": "/api/v4.0/integrations/transactions/refund",
        "cashback": "/api/v4.0/integrations/transactions/cashback",
        "hold": "/api/v4.0/integrations/transactions/hold",
    },
    # v4.1 is v4.0 with SecretKey mandatory on every call (introduction-v4.1.mdx)
    "v4.1": {
        "order": "/api/v4.1/integrations/orders",
        "refund": "/api/v4.1/integrations/transactions/refund",
        "cashback": "/api/v4.1/integrations/transactions/cashback",
        "hold": "/api/v4.1/integrations/transactions/hold",
    },
}


@dataclass(frozen=True)
class GameballRequest:
    """One HTTP call to make: what, where, and the exact bytes to send."""

    call: CallKind
    method: Literal["POST"]
    path: str
    body: bytes
    transaction_id: str

    def json(self) -> dict[str, Any]:
        parsed: dict[str, Any] = json.loads(self.body)
        return parsed


def gameball_time(moment: datetime) -> str:
    """ISO-8601 UTC with milliseconds, as Gameball's samples write it: 2024-10-16T08:13:29.290Z."""
    moment = moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def json_number(amount: Decimal) -> int | float:
    """A JSON number for an amount; exact because amounts are < 10^12 with ≤ 3 decimals."""
    return int(amount) if amount == amount.to_integral_value() else float(amount)


def transaction_id_of(event: Event) -> str:
    """The id Gameball keeps the event's transaction under."""
    if isinstance(event, OrderPaid):
        return event.order_id
    if isinstance(event, OrderCancelled):
        return event.transaction_id
    if isinstance(event, OrderRefunded):
        return event.refund_id
    return event.transaction_id


def call_kind(event: Event) -> CallKind:
    """Which Gameball call an event becomes."""
    if isinstance(event, OrderPaid):
        return "order"
    if isinstance(event, OrderCancelled):
        return "cancel"
    if isinstance(event, OrderRefunded):
        return "full_refund" if event.is_full else "partial_refund"
    return "cashback"


@dataclass(frozen=True)
class PointsSent:
    """How an order's redeemed points go, as the delivery decided (``worker.rules.redemption``):
    a hold to name, an amount (v3.0 only), or neither (the redemption is parked)."""

    hold_reference: str | None = None
    redeemed_amount: Decimal | None = None


class UnsentRedemptionError(ValueError):
    """v4 redeems points on an order through a hold only: a ``redeemed_amount`` needs the
    delivery's hold (``PointsSent``), never a silent drop."""


@dataclass(frozen=True)
class Fixed:
    """What an event's request is fixed to when the ledger first takes it, so that every
    attempt sends the same bytes: its transaction time (unique per customer) and, for a
    cancellation or full refund, the order's line items it reverses; for an order that
    redeems points, how they go this attempt."""

    transaction_time: datetime | None = None  # None: the event's occurred_at
    reversal_lines: tuple[RefundLine, ...] | None = None  # None: the event's own lines
    points: PointsSent | None = None  # None: as the event says


@dataclass(frozen=True)
class RefundLine:
    """A refunded line as Gameball's refund takes it: product, quantity, unit price, and
    the line's discount and taxes when the refund gives them (openapi.json allows them on
    refund lines; the order sent them on its lines, so Gameball values both alike)."""

    product_id: str
    quantity: int
    price: Decimal
    discount: Decimal = Decimal(0)
    taxes: Decimal = Decimal(0)

    def json(self) -> dict[str, Any]:
        line: dict[str, Any] = {
            "productId": self.product_id,
            "quantity": self.quantity,
            "price": json_number(self.price),
        }
        if self.discount:
            line["discount"] = json_number(self.discount)
        if self.taxes:
            line["taxes"] = json_number(self.taxes)
        return line


def reversal_lines(paid: OrderPaid, refunds: Iterable[OrderRefunded]) -> tuple[RefundLine, ...]:
    """The order's lines not yet refunded: what a cancellation or full refund must name so
    that Gameball takes back their bonus (campaign, category, collection) points too;
    without line items it reverses cashback only (refund tutorial, use case 3)."""
    lines = (RefundLine(item.product_id, item.quantity, item.price) for item in paid.line_items)
    return lines_left(lines, refunded_quantities(refunds))


def refunded_quantities(refunds: Iterable[OrderRefunded]) -> Counter[str]:
    """Quantities per product that these refunds took back."""
    taken: Counter[str] = Counter()
    for refund in refunds:
        for item in refund.line_items:
            taken[item.product_id] += item.quantity
    return taken


def lines_left(paid: Iterable[RefundLine], taken: Mapping[str, int]) -> tuple[RefundLine, ...]:
    """The paid lines less the quantities per product refunds ``taken``, from each
    product's first line on (only the totals per product matter, so removed refunds can
    be remembered as totals)."""
    wanted = dict(taken)
    left = []
    for line in paid:
        take = min(wanted.get(line.product_id, 0), line.quantity)
        wanted[line.product_id] = wanted.get(line.product_id, 0) - take
        if line.quantity > take:
            left.append(replace(line, quantity=line.quantity - take))
    return tuple(left)


def build_request(
    event: Event,
    version: ApiVersion,
    fixed: Fixed = Fixed(),
    *,
    v3_refund_lines: bool = True,
) -> GameballRequest:
    """The Gameball request for ``event`` in API ``version``."""
    v4 = version != "v3.0"
    paths = _PATHS[version]
    moment = fixed.transaction_time or event.occurred_at
    customer = {("customerId" if v4 else "playerUniqueId"): event.customer_id}
    customer.update(_channels(event))
    body: dict[str, Any]
    if isinstance(event, OrderPaid):
        body = {**customer, **_order_body(event, moment, v4=v4, points=fixed.points)}
        return _request("order", paths["order"], body, event.order_id)
    send_lines = v4 or v3_refund_lines
    if isinstance(event, OrderCancelled):
        body = _refund_body(
            customer=customer,
            refund_id=event.transaction_id,
            order_id=event.order_id,
            moment=moment,
            amount=None,
            lines=(fixed.reversal_lines or ()) if send_lines else (),
            v4=v4,
        )
        return _request("cancel", paths["refund"], body, event.transaction_id)
    if isinstance(event, OrderRefunded):
        own = tuple(
            RefundLine(i.product_id, i.quantity, i.price, i.discount, i.taxes)
            for i in event.line_items
        )
        lines = own if fixed.reversal_lines is None or not event.is_full else fixed.reversal_lines
        body = _refund_body(
            customer=customer,
            refund_id=event.refund_id,
            order_id=event.order_id,
            moment=moment,
            amount=event.amount,
            lines=lines if send_lines else (),
            v4=v4,
        )
        if v4 and event.merchant is not None:  # openapi.json; v3.0's refund documents none
            body["merchant"] = _merchant(event.merchant)
        return _request(call_kind(event), paths["refund"], body, event.refund_id)
    assert isinstance(event, CashbackAwarded)  # noqa: S101 - the union is exhausted above
    body = {
        **customer,
        "transactionId": event.transaction_id,
        "transactionTime": gameball_time(moment),
        "amount": json_number(event.amount),
    }
    if event.merchant is not None:
        body["merchant"] = _merchant(event.merchant)
    if v4 and event.return_window_days is not None:
        body["configurations"] = {"returnWindow": event.return_window_days}
    return _request("cashback", paths["cashback"], body, event.transaction_id)


def _request(call: CallKind, path: str, body: dict[str, Any], txn: str) -> GameballRequest:
    data = json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()
    return GameballRequest(call=call, method="POST", path=path, body=data, transaction_id=txn)


def _channels(event: Event) -> dict[str, str]:
    # Top-level email/mobile matter only to accounts that merge customers by channel.
    channels = {"email": event.email, "mobile": event.mobile}
    return {key: value for key, value in channels.items() if value is not None}


def hold_request(
    event: OrderPaid, version: ApiVersion, amount: Decimal, moment: datetime
) -> GameballRequest:
    """Hold points worth ``amount`` for the order (openapi.json ``POST transactions/hold``:
    ``transactionTime`` and one of ``amountToHold``/``pointsToHold``; v3 ``amount``). The
    shop already took the points at checkout, so no OTP is asked (``ignoreOTP``)."""
    v4 = version != "v3.0"
    body: dict[str, Any] = {("customerId" if v4 else "playerUniqueId"): event.customer_id}
    body.update(_channels(event))
    body["transactionTime"] = gameball_time(moment)
    body["amountToHold" if v4 else "amount"] = json_number(amount)
    if v4:
        body["ignoreOTP"] = True
    return _request("hold", _PATHS[version]["hold"], body, event.order_id)


def _order_body(
    event: OrderPaid, moment: datetime, *, v4: bool, points: PointsSent | None = None
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "orderId": event.order_id,
        "orderDate": gameball_time(moment),
        "totalPrice": json_number(event.total_price),
        "totalPaid": json_number(event.total_paid),
        "totalDiscount": json_number(event.total_discount),
        "totalShipping": json_number(event.total_shipping),
        "totalTax": json_number(event.total_tax),
    }
    if event.line_items:
        body["lineItems"] = [_line_item(item) for item in event.line_items]
    extra: dict[str, str | int] = dict(event.extra)
    if event.discount_codes:
        if v4:
            # Not redemption.couponCodes: those are Gameball's own coupons, which must be
            # locked and are burnt by the order (openapi.json). v4 has no field for the
            # shop's codes, so they travel as order metadata.
            extra.setdefault(SHOP_CODES_KEY, ",".join(event.discount_codes))
        else:
            body["discountCodes"] = list(event.discount_codes)
    if extra:
        body["extra"] = extra
    body["guest"] = event.guest
    body.update(_redemption(event.redemption, v4=v4, points=points))
    if event.merchant is not None:
        body["merchant"] = _merchant(event.merchant)
    if v4:  # fields v4 defines and v3.0 does not (openapi.json)
        optional = {"channel": event.channel, "cartId": event.cart_id}
        body.update({key: value for key, value in optional.items() if value is not None})
        if event.return_window_days is not None:
            body["cashbackConfigurations"] = {"returnWindow": event.return_window_days}
    return body


def _redemption(
    redemption: Redemption | None, *, v4: bool, points: PointsSent | None = None
) -> dict[str, Any]:
    """v3: holdReference or redeemedAmount. v4: redemption{pointsHoldReference,
    couponsLockReference, couponCodes}; v4 redeems points through a hold only, and v3 has
    no Gameball coupons on orders (docs/gameball-contract.md). ``points`` (the delivery's
    decision) replaces the event's own hold and amount."""
    if redemption is None:
        return {}
    if points is None:
        points = PointsSent(
            redemption.points_hold_reference,
            None if redemption.points_hold_reference else redemption.redeemed_amount,
        )
    if not v4:
        fields = {
            "holdReference": points.hold_reference,
            "redeemedAmount": None
            if points.redeemed_amount is None
            else json_number(points.redeemed_amount),
        }
        return {key: value for key, value in fields.items() if value is not None}
    if points.hold_reference is None and points.redeemed_amount is not None:
        raise UnsentRedemptionError(
            "v4 redeems points on an order through a hold: hold redeemed_amount first "
            "(the worker does) and send the order naming it"
        )
    block: dict[str, Any] = {
        "pointsHoldReference": points.hold_reference,
        "couponsLockReference": redemption.coupons_lock_reference,
        "couponCodes": list(redemption.gameball_coupon_codes) or None,
    }
    block = {key: value for key, value in block.items() if value is not None}
    return {"redemption": block} if block else {}


def _merchant(merchant: Merchant) -> dict[str, Any]:
    body: dict[str, Any] = {"uniqueId": merchant.unique_id, "name": merchant.name}
    if merchant.branch is not None:
        branch = {"uniqueId": merchant.branch.unique_id, "name": merchant.branch.name}
        body["branch"] = {key: value for key, value in branch.items() if value is not None}
    return {key: value for key, value in body.items() if value is not None}


def _refund_body(
    *,
    customer: dict[str, str],
    refund_id: str,
    order_id: str,
    moment: datetime,
    amount: Decimal | None,
    lines: tuple[RefundLine, ...],
    v4: bool,
) -> dict[str, Any]:
    body: dict[str, Any] = {
        **customer,
        ("refundTransactionId" if v4 else "transactionId"): refund_id,
        "reverseTransactionId": order_id,
        "transactionTime": gameball_time(moment),
    }
    if amount is not None:  # absent means "refund everything the order earned"
        body["refundAmount" if v4 else "amount"] = json_number(amount)
    if lines:  # without them Gameball reverses cashback only, never the bonus points
        body["lineItems"] = [line.json() for line in lines]
    return body


def _line_item(item: LineItem) -> dict[str, Any]:
    line: dict[str, Any] = {
        "productId": item.product_id,
        "quantity": item.quantity,
        "price": json_number(item.price),
        "discount": json_number(item.discount),
        "taxes": json_number(item.taxes),
    }
    optional: dict[str, Any] = {
        "sku": item.sku,
        "title": item.title,
        "category": list(item.category) or None,
        "collection": list(item.collection) or None,
        "tags": list(item.tags) or None,
        "vendor": item.vendor,
        "weight": None if item.weight is None else json_number(item.weight),
    }
    line.update({key: value for key, value in optional.items() if value is not None})
    return line
