"""Events for tests that need a few of a simple shape: an order paid in full, a partial
refund of it, in the recent past (so that nothing is refused as from the future)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from producers.events import OrderPaid, OrderRefunded


def paid(order: str, amount: int = 10, customer: str | None = None) -> OrderPaid:
    """``order`` paid in full five minutes ago by ``cust-<order>`` (or ``customer``)."""
    return OrderPaid(
        order_id=order,
        customer_id=customer or f"cust-{order}",
        occurred_at=datetime.now(UTC) - timedelta(minutes=5),
        total_price=Decimal(amount),
        total_paid=Decimal(amount),
    )


def refund(order: str, amount: int = 5, customer: str | None = None) -> OrderRefunded:
    """``<order>-R1``, a refund of ``amount`` a minute ago."""
    return OrderRefunded(
        order_id=order,
        refund_id=f"{order}-R1",
        customer_id=customer or f"cust-{order}",
        occurred_at=datetime.now(UTC) - timedelta(minutes=1),
        amount=Decimal(amount),
    )


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
