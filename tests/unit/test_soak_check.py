"""The soak's expected wallets follow Gameball's refund arithmetic for orders paid with
points (how-refunds-work.mdx), so that its exact check stays exact."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from producers.events import LineItem, OrderCancelled, OrderPaid, OrderRefunded, Redemption
from tests.chaos.check import expected_wallets

T0 = datetime(2026, 6, 1, tzinfo=UTC)
LINE = LineItem(product_id="P", quantity=1, price=Decimal(100))


def order(order_id: str, paid: int) -> OrderPaid:
    points = 100 - paid
    return OrderPaid(
        order_id=order_id,
        customer_id="saver",
        occurred_at=T0,
        total_price=Decimal(100),
        total_discount=Decimal(points),
        total_paid=Decimal(paid),
        line_items=(LINE,),
        redemption=Redemption(redeemed_amount=Decimal(points)) if points else None,
    )


def later(minutes: int, event: OrderRefunded | OrderCancelled) -> OrderRefunded | OrderCancelled:
    return event.model_copy(update={"occurred_at": T0 + timedelta(minutes=minutes)})


def test_entirely_with_points_earns_nothing_and_refunds_return_the_points() -> None:
    paid = order("ALL", 0)
    r1 = later(
        1,
        OrderRefunded(
            order_id="ALL", refund_id="R1", customer_id="saver", occurred_at=T0, amount=Decimal(20)
        ),
    )
    cancel = later(2, OrderCancelled(order_id="ALL", customer_id="saver", occurred_at=T0))
    events = [paid, r1, cancel]
    seeded = {"saver": 100}
    assert expected_wallets(events, {paid.event_id}, seeded) == {"saver": 0}
    assert expected_wallets(events, {paid.event_id, r1.event_id}, seeded) == {"saver": 20}
    done = {e.event_id for e in events}
    assert expected_wallets(events, done, seeded) == {"saver": 100}


def test_partly_with_points_refunds_take_the_cashback_first_then_return_points() -> None:
    """Gameball's example: 60 paid, 40 in points; a refund of 80 takes 60, returns 20."""
    paid = order("MIX", 60)
    r1 = later(
        1,
        OrderRefunded(
            order_id="MIX", refund_id="R1", customer_id="saver", occurred_at=T0, amount=Decimal(80)
        ),
    )
    seeded = {"saver": 100}
    assert expected_wallets([paid], {paid.event_id}, seeded) == {"saver": 120}
    assert expected_wallets([paid, r1], {paid.event_id, r1.event_id}, seeded) == {"saver": 80}
