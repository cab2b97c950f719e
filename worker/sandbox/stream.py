"""Realistic order histories, with the balances the sandbox must end with, computed
independently of it (for the demo, the tests and the soak).

Amounts are whole currency units and the sandbox rewards 1 point per unit, so an order
earns exactly ``total_paid``, a partial refund of ``a`` takes back exactly ``a`` (the
cumulative proportional rule is exact on whole amounts), a cancel takes back whatever
is left, and cashback earns its amount. Every event of a customer has its own second, so
Gameball's "same instant" check (304) never fires by accident.
"""

from __future__ import annotations

import random
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from producers.events import CashbackAwarded, Event, OrderCancelled, OrderPaid, OrderRefunded

START = datetime(2026, 1, 1, tzinfo=UTC)


@dataclass
class Scenario:
    events: list[Event] = field(default_factory=list)
    expected: dict[str, int] = field(default_factory=lambda: defaultdict(int))

    @property
    def event_ids(self) -> list[str]:
        return [event.event_id for event in self.events]


def generate(
    *, seed: int, orders: int, total_events: int, customers: int = 20, prefix: str = "O"
) -> Scenario:
    """``orders`` orders with refunds and cancels, topped up with cashback to the total."""
    rng = random.Random(seed)
    scenario = Scenario()
    clock = iter(range(10**9))

    def at() -> datetime:
        return START + timedelta(seconds=next(clock))

    for number in range(orders):
        customer = f"c-{rng.randrange(customers)}"
        order_id = f"{prefix}-{number}"
        total = rng.randint(20, 500)
        scenario.events.append(
            OrderPaid(
                order_id=order_id,
                customer_id=customer,
                occurred_at=at(),
                total_price=Decimal(total),
                total_paid=Decimal(total),
            )
        )
        remaining = total
        for refund in range(rng.choice([0, 0, 1, 2, 3])):
            amount = rng.randint(1, max(1, remaining // 2))
            remaining -= amount
            scenario.events.append(
                OrderRefunded(
                    order_id=order_id,
                    refund_id=f"{order_id}-R{refund}",
                    customer_id=customer,
                    occurred_at=at(),
                    amount=Decimal(amount),
                )
            )
        if rng.random() < 0.2:
            scenario.events.append(
                OrderCancelled(order_id=order_id, customer_id=customer, occurred_at=at())
            )
            remaining = 0
        scenario.expected[customer] += remaining
    number = 0
    while len(scenario.events) < total_events:
        customer = f"c-{rng.randrange(customers)}"
        amount = rng.randint(1, 100)
        scenario.events.append(
            CashbackAwarded(
                transaction_id=f"{prefix}-CB-{number}",
                customer_id=customer,
                occurred_at=at(),
                amount=Decimal(amount),
            )
        )
        scenario.expected[customer] += amount
        number += 1
    return scenario


def wallets(state: dict[str, object]) -> dict[str, int]:
    """Balances from the sandbox's ``/_sandbox/state``."""
    raw = state["wallets"]
    if not isinstance(raw, dict):
        raise TypeError("state['wallets'] must be a mapping")
    return {player: int(wallet["balance"]) for player, wallet in raw.items()}
