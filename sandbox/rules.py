"""Cashback arithmetic of the sandbox: pure functions over Decimals (reference §9.2).

Earning an order:
  1. ``rewardable = total_paid`` (minus tax and shipping when they are excluded);
     orders below ``min_order_value`` earn nothing.
  2. With line items, each line's value is ``price × quantity − discount`` (minus its taxes
     when excluded), scaled down when the lines add up to more than was paid (order-level
     discounts), and earns ``floor(value × rate)`` at its best category rate; whatever part
     of ``rewardable`` the lines do not cover earns ``floor(rest × base rate)``.
  3. ``max_cashback_per_order`` caps the total.

Refunds reverse proportionally *and cumulatively*: after refunding ``r`` of ``total_paid``
the order has lost ``floor(earned × r / total_paid)`` points in all. So no refund ever
reverses more than the order earned, and refunds adding up to ``total_paid`` reverse
exactly what it earned (rounding never leaks a point either way). A full refund reverses
whatever remains.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import ROUND_FLOOR, Decimal


@dataclass(frozen=True)
class CashbackRules:
    """How the sandbox account rewards: points per currency unit paid, and its knobs."""

    points_per_unit: Decimal = Decimal(1)
    min_order_value: Decimal = Decimal(0)
    max_cashback_per_order: int | None = None
    category_rates: Mapping[str, Decimal] = field(default_factory=dict)
    exclude_tax_and_shipping: bool = False

    def rate_for(self, categories: Sequence[str]) -> Decimal:
        """The best rate among a line's categories; the base rate when none has one."""
        rates = [self.category_rates[name] for name in categories if name in self.category_rates]
        return max(rates, default=self.points_per_unit)


@dataclass(frozen=True)
class OrderLine:
    """A line as the rules see it."""

    product_id: str
    quantity: Decimal
    price: Decimal
    discount: Decimal = Decimal(0)
    taxes: Decimal = Decimal(0)
    categories: tuple[str, ...] = ()


@dataclass(frozen=True)
class Earning:
    """What an order earns: the total and each line's share (in line order)."""

    points: int
    line_points: tuple[int, ...] = ()


@dataclass(frozen=True)
class Reversal:
    """What one refund takes back: points and the money amount it counted as refunded."""

    points: int
    amount: Decimal


def floor_points(value: Decimal) -> int:
    return int(value.to_integral_value(rounding=ROUND_FLOOR))


def order_earning(
    rules: CashbackRules,
    total_paid: Decimal,
    lines: Sequence[OrderLine] = (),
    *,
    total_tax: Decimal = Decimal(0),
    total_shipping: Decimal = Decimal(0),
) -> Earning:
    """Points an order earns under ``rules``."""
    if total_paid < rules.min_order_value:
        return Earning(0, tuple(0 for _ in lines))
    excluded = total_tax + total_shipping if rules.exclude_tax_and_shipping else Decimal(0)
    rewardable = max(Decimal(0), total_paid - excluded)
    values = [_line_value(line, rules) for line in lines]
    covered = sum(values, Decimal(0))
    if covered > rewardable:  # order-level discounts: lines earn only on what was paid
        values = [value * rewardable / covered for value in values]
        covered = rewardable
    line_points = [
        floor_points(value * rules.rate_for(line.categories))
        for value, line in zip(values, lines, strict=True)
    ]
    total = sum(line_points) + floor_points((rewardable - covered) * rules.points_per_unit)
    if rules.max_cashback_per_order is not None and total > rules.max_cashback_per_order:
        total = rules.max_cashback_per_order
    return Earning(total, tuple(line_points))


def _line_value(line: OrderLine, rules: CashbackRules) -> Decimal:
    value = line.price * line.quantity - line.discount
    if rules.exclude_tax_and_shipping:
        value -= line.taxes
    return max(Decimal(0), value)


def cashback_points(rules: CashbackRules, amount: Decimal) -> int:
    """Points for a plain cashback transaction (no order rules apply)."""
    return floor_points(amount * rules.points_per_unit)


def refund_reversal(
    *,
    earned: int,
    total_paid: Decimal,
    refunded_before: Decimal,
    reversed_before: int,
    amount: Decimal | None,
) -> Reversal:
    """Points a refund reverses; ``amount=None`` is a full refund of what remains."""
    refunded_after = total_paid if amount is None else min(total_paid, refunded_before + amount)
    target = (
        earned
        if refunded_after >= total_paid
        else floor_points(Decimal(earned) * refunded_after / total_paid)
    )
    points = max(0, min(earned - reversed_before, target - reversed_before))
    return Reversal(points=points, amount=refunded_after - refunded_before)
