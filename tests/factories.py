"""Events for tests that need a few of a simple shape: an order paid in full, a partial
refund of it, in the recent past (so that nothing is refused as from the future)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

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
