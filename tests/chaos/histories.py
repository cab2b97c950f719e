"""Seeded, realistic order histories and who publishes what, when.

Orders are paid, then some are partly refunded (several times), some cancelled, and
customers also get standalone cashback. The publication plan adds what production sees:

- a paid event comes from a checkout process; the order's refunds and cancellation come
  from another (the back office), in the order they happened;
- some first refunds are published well *before* their paid event (a late checkout);
- some events are published twice (a retrying producer);
- some orders get a refund *after* their cancellation: Gameball refuses it (code 302). These
  are the only events allowed to end dead, and they must (delivering one would mean the
  refund overtook the cancellation).

The same seed and size always give the same history, so each producer process rebuilds it
and publishes its own share.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from producers.events import (
    CashbackAwarded,
    Event,
    LineItem,
    OrderCancelled,
    OrderPaid,
    OrderRefunded,
)

START = datetime(2026, 6, 1, tzinfo=UTC)
EARLY_REFUND_SHARE = 0.04
DUPLICATE_SHARE = 0.03
CANCEL_SHARE = 0.15
LATE_REFUND_SHARE = 0.3  # of cancelled orders
CASHBACK_SHARE = 0.1  # of all events
PROMO = "promo"  # a category under a double-points campaign (bonus points)
PROMO_MULTIPLIER = Decimal(2)
PROMO_SHARE = 0.4  # of order lines


@dataclass(frozen=True)
class Publication:
    at: float  # position in the publishing window, 0..1
    producer: int
    event: Event


@dataclass
class History:
    seed: int
    events: list[Event] = field(default_factory=list)  # each event once
    plan: list[Publication] = field(default_factory=list)  # incl. duplicates, sorted by at
    invalid: set[str] = field(default_factory=set)  # ids Gameball must refuse (302)
    early_refunds: int = 0
    duplicates: int = 0

    def for_producer(self, producer: int) -> list[Publication]:
        return [p for p in self.plan if p.producer == producer]


def generate(seed: int, total: int, producers: int, customers: int | None = None) -> History:
    """About ``total`` distinct events (exactly ``total``, topped up with cashback)."""
    rng = random.Random(seed)
    history = History(seed)
    customers = customers or max(20, total // 10)
    clock = iter(range(10**9))

    def at() -> datetime:  # distinct times: Gameball refuses a customer's same-ms twins (304)
        return START + timedelta(seconds=next(clock))

    def publish(event: Event, when: float, producer: int) -> None:
        history.events.append(event)
        history.plan.append(Publication(min(max(when, 0.0), 1.0), producer, event))

    order_number = 0
    while len(history.events) < total * (1 - CASHBACK_SHARE):
        order_id = f"S{seed}-O{order_number}"
        customer = f"c-{rng.randrange(customers)}"
        checkout, office = rng.randrange(producers), rng.randrange(producers)
        when = rng.random() * 0.9
        lines = [
            LineItem(
                product_id=f"P{product}",
                quantity=rng.randint(1, 4),
                price=Decimal(rng.randint(5, 120)),
                category=(PROMO,) if rng.random() < PROMO_SHARE else (),
            )
            for product in range(rng.randint(1, 3))
        ]
        total_paid = sum(int(line.gross) for line in lines)
        paid_when = when + (0.05 if rng.random() < EARLY_REFUND_SHARE else 0.0)
        publish(
            OrderPaid(
                order_id=order_id,
                customer_id=customer,
                occurred_at=at(),
                total_price=Decimal(total_paid),
                total_paid=Decimal(total_paid),
                line_items=tuple(lines),
            ),
            paid_when,
            checkout,
        )
        if paid_when > when:
            history.early_refunds += 1
        left = {line.product_id: line.quantity for line in lines}
        step = 0.002
        for number in range(rng.choice([0, 0, 1, 1, 2, 3])):
            line = rng.choice(lines)
            if left[line.product_id] == 0:
                continue
            units = rng.randint(1, left[line.product_id])
            left[line.product_id] -= units
            when += step
            publish(  # whole units of one line, named: their bonus points come back too
                OrderRefunded(
                    order_id=order_id,
                    refund_id=f"{order_id}-R{number}",
                    customer_id=customer,
                    occurred_at=at(),
                    amount=line.price * units,
                    line_items=(line.model_copy(update={"quantity": units}),),
                ),
                when,
                office,
            )
        remaining = sum(line.price * left[line.product_id] for line in lines)
        if rng.random() < CANCEL_SHARE:
            when += step
            publish(
                OrderCancelled(order_id=order_id, customer_id=customer, occurred_at=at()),
                when,
                office,
            )
            if remaining > 1 and rng.random() < LATE_REFUND_SHARE:
                late = OrderRefunded(
                    order_id=order_id,
                    refund_id=f"{order_id}-LATE",
                    customer_id=customer,
                    occurred_at=at(),
                    amount=Decimal(1),
                )
                when += step
                publish(late, when, office)
                history.invalid.add(late.event_id)
        order_number += 1
    cashback = 0
    while len(history.events) < total:
        publish(
            CashbackAwarded(
                transaction_id=f"S{seed}-CB{cashback}",
                customer_id=f"c-{rng.randrange(customers)}",
                occurred_at=at(),
                amount=Decimal(rng.randint(1, 100)),
            ),
            rng.random(),
            rng.randrange(producers),
        )
        cashback += 1
    for publication in rng.sample(history.plan, int(len(history.plan) * DUPLICATE_SHARE)):
        again = min(1.0, publication.at + rng.random() * 0.1)
        history.plan.append(Publication(again, publication.producer, publication.event))
        history.duplicates += 1
    history.plan.sort(key=lambda p: p.at)
    return history
