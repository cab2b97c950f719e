"""Seeded, realistic order histories and who publishes what, when.

Orders are paid, then some are partly refunded (several times), some cancelled, and
customers also get standalone cashback. Some orders are paid entirely with points (their
refunds return them), some partly, and some carry tax-inclusive lines with one given away
free, its discount covering its price and its tax (Gameball's Example 8a); the customers
who pay with points (savers) start with a balance seeded straight at the sandbox, so that
their redemptions never depend on which earlier event Gameball saw first. gbq holds each
redeemed amount before the order names it, or the checkout holds it when it publishes
(half of them); the soak's sandbox lets holds live 3 s, so an order delayed by an outage
finds its hold expired and gbq holds again. The publication plan adds what production sees:

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
    Redemption,
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
POINTS_SHARE = 0.04  # of orders: paid entirely with points, by a saver
MIXED_SHARE = 0.04  # of orders: paid partly with points, by a saver
TAXED_SHARE = 0.06  # of orders: tax-inclusive lines, one of them free (Example 8a)
SAVERS = 8
SAVER_BALANCE = 1_000_000  # points each saver holds before the soak starts
SEED_PREFIX = "SOAK-SEED-"  # the seeding cashbacks' ids (not gbq's events)
CHECKOUT_HOLD_SHARE = 0.5  # of orders paid with points: the checkout holds them first


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
    seeded: dict[str, int] = field(default_factory=dict)  # saver -> points before the soak
    # Orders whose checkout holds the points when it publishes (the producer makes the hold
    # and names it, with its value); the others publish the value alone and gbq holds it.
    checkout_holds: set[str] = field(default_factory=set)
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

    history.seeded = {f"saver-{n}": SAVER_BALANCE for n in range(SAVERS)}
    order_number = 0
    while len(history.events) < total * (1 - CASHBACK_SHARE):
        order_id = f"S{seed}-O{order_number}"
        style = rng.choices(
            ["cash", "points", "mixed", "taxed"],
            [1 - POINTS_SHARE - MIXED_SHARE - TAXED_SHARE, POINTS_SHARE, MIXED_SHARE, TAXED_SHARE],
        )[0]
        saver = style in ("points", "mixed")
        customer = f"saver-{rng.randrange(SAVERS)}" if saver else f"c-{rng.randrange(customers)}"
        checkout, office = rng.randrange(producers), rng.randrange(producers)
        when = rng.random() * 0.9
        lines = [
            LineItem(
                product_id=f"P{product}",
                quantity=rng.randint(1, 4),
                price=Decimal(rng.randint(5, 120)),
                category=(PROMO,) if style == "cash" and rng.random() < PROMO_SHARE else (),
            )
            for product in range(rng.randint(1, 3))
        ]
        paid = _paid(style, order_id, customer, at(), lines=lines, rng=rng)
        paid_when = when + (0.05 if rng.random() < EARLY_REFUND_SHARE else 0.0)
        publish(paid, paid_when, checkout)
        if paid.redemption is not None and rng.random() < CHECKOUT_HOLD_SHARE:
            history.checkout_holds.add(paid.event_id)
        if paid_when > when:
            history.early_refunds += 1
        lines = list(paid.line_items)
        left = {line.product_id: line.quantity for line in lines}
        step = 0.002
        # Refunds of whole units of one line: for cash orders and those paid with points
        # only (a refund of a mixed or tax-inclusive order would need Gameball's split of
        # value between cash and points, or between a line and its free neighbour).
        refunds = rng.choice([0, 0, 1, 1, 2, 3]) if style in ("cash", "points") else 0
        for number in range(refunds):
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


def _paid(
    style: str,
    order_id: str,
    customer: str,
    moment: datetime,
    *,
    lines: list[LineItem],
    rng: random.Random,
) -> OrderPaid:
    """The order as its style pays it: in money, entirely or partly with points, or with
    tax-inclusive lines and the first one given away (its discount = its price + its tax)."""
    gross = sum((line.gross for line in lines), Decimal(0))
    if style == "taxed":
        taxed = [
            line.model_copy(update={"taxes": (line.gross * Decimal("0.15")).quantize(Decimal(1))})
            for line in lines
        ]
        free = taxed[0].model_copy(update={"discount": taxed[0].gross + taxed[0].taxes})
        taxed[0] = free
        price = sum((line.gross + line.taxes for line in taxed), Decimal(0))
        return OrderPaid(
            order_id=order_id,
            customer_id=customer,
            occurred_at=moment,
            total_price=price,
            total_tax=sum((line.taxes for line in taxed), Decimal(0)),
            total_discount=free.discount,
            total_paid=price - free.discount,
            line_items=tuple(taxed),
        )
    points = {"cash": Decimal(0), "points": gross, "mixed": Decimal(rng.randint(1, int(gross)))}
    redeemed = points[style]
    return OrderPaid(
        order_id=order_id,
        customer_id=customer,
        occurred_at=moment,
        total_price=gross,
        total_discount=redeemed,
        total_paid=gross - redeemed,
        line_items=tuple(lines),
        redemption=Redemption(redeemed_amount=redeemed) if redeemed else None,
    )
