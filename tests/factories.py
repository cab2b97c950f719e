"""The test event factory: events of a simple shape, every field overridable, in the
recent past (so that nothing is refused as from the future). Tests that need an exact
shape (Gameball's examples, hostile input) still write theirs out."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from producers.events import CashbackAwarded, OrderCancelled, OrderPaid, OrderRefunded


def _ago(minutes: float) -> datetime:
    return datetime.now(UTC) - timedelta(minutes=minutes)


def paid(order: str, amount: int = 10, customer: str | None = None, **fields: Any) -> OrderPaid:
    """``order`` paid in full five minutes ago by ``cust-<order>`` (or ``customer``)."""
    values: dict[str, Any] = {
        "order_id": order,
        "customer_id": customer or f"cust-{order}",
        "occurred_at": _ago(5),
        "total_price": Decimal(amount),
        "total_paid": Decimal(amount),
    }
    return OrderPaid(**{**values, **fields})


def refund(
    order: str, amount: int = 5, customer: str | None = None, **fields: Any
) -> OrderRefunded:
    """``<order>-R1``, a refund of ``amount`` a minute ago."""
    values: dict[str, Any] = {
        "order_id": order,
        "refund_id": f"{order}-R1",
        "customer_id": customer or f"cust-{order}",
        "occurred_at": _ago(1),
        "amount": Decimal(amount),
    }
    return OrderRefunded(**{**values, **fields})


def cancel(order: str, customer: str | None = None, **fields: Any) -> OrderCancelled:
    """``order`` cancelled half a minute ago."""
    values: dict[str, Any] = {
        "order_id": order,
        "customer_id": customer or f"cust-{order}",
        "occurred_at": _ago(0.5),
    }
    return OrderCancelled(**{**values, **fields})


def cashback(
    transaction: str, amount: int = 20, customer: str | None = None, **fields: Any
) -> CashbackAwarded:
    """Cashback of ``amount`` outside an order, two minutes ago."""
    values: dict[str, Any] = {
        "transaction_id": transaction,
        "customer_id": customer or f"cust-{transaction}",
        "occurred_at": _ago(2),
        "amount": Decimal(amount),
    }
    return CashbackAwarded(**{**values, **fields})


# Gameball's tutorials/experiences/order-handling/special-use-cases/order-calculation-
# examples.mdx, Example 8a: a free item's discount covers its price and its tax.
EXAMPLE_8A: dict[str, Any] = {
    "kind": "paid",
    "order_id": "INV-2026-001241",
    "customer_id": "c",
    "occurred_at": "2026-01-01T00:00:00Z",
    "total_price": "575",
    "total_discount": "345",
    "total_tax": "75",
    "total_paid": "230",
    "line_items": [
        {
            "product_id": "PROD-12345",
            "quantity": 2,
            "price": "150",
            "discount": "345",
            "taxes": "45",
        },
        {"product_id": "PROD-67890", "quantity": 1, "price": "200", "discount": "0", "taxes": "30"},
    ],
}
