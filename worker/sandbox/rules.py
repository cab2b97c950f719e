"""Cashback arithmetic of the sandbox: pure functions over Decimals (docs/sandbox.md).

Earning an order:
  1. ``rewardable = total_paid`` (minus tax and shipping when they are excluded);
     orders below ``min_order_value`` earn nothing.
  2. With line items, each line's value is ``price × quantity − discount`` (minus its taxes
     when excluded), scaled down when the lines add up to more than was paid (order-level
     discounts), and earns ``floor(value × rate × multiplier)``: its best category rate,
     and the highest campaign multiplier of its product or categories (Gameball floors
     per item and lets the higher of two multipliers win: PD-CALC). Whatever part of
     ``rewardable`` the lines do not cover earns ``floor(rest × base rate)``.
  3. ``max_cashback_per_order`` caps the total (bonus points go first).

Each order's points are **base** points (everything at the base rate, the cashback) and
per-line **bonus** points (above the base rate: category rates and campaigns). Gameball's
refund tutorial (``tutorials/experiences/refund-handling``) is the model for taking them
back:

- base points are reversed by money, proportionally *and cumulatively*: after refunding
  ``r`` of ``total_paid`` the order has lost ``floor(base × r / total_paid)`` base points in
  all, and all of them once the whole amount is refunded (or on a full refund);
- bonus points are reversed only for the line items a refund names, by quantity, equally
  cumulatively. A refund or cancellation **without line items reverses cashback only**:
  the bonus stays with the customer, which is why the client sends the order's lines.
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
    # Bonus campaigns: "product:<id>" or "category:<name>" → a points multiplier (≥ 1).
    campaign_multipliers: Mapping[str, Decimal] = field(default_factory=dict)
    # A refund of exactly the total paid is a full refund (openapi.json); False: a partial
    # refund of that value (how-refunds-work.mdx's arithmetic).
    full_refund_at_paid: bool = True

    def rate_for(self, categories: Sequence[str]) -> Decimal:
        """The best rate among a line's categories; the base rate when none has one."""
        rates = [self.category_rates[name] for name in categories if name in self.category_rates]
        return max(rates, default=self.points_per_unit)

    def multiplier_for(self, line: OrderLine) -> Decimal:
        """The highest campaign multiplier for a line's product or categories (1: none)."""
        keys = [f"product:{line.product_id}", *(f"category:{name}" for name in line.categories)]
        found = [self.campaign_multipliers[key] for key in keys if key in self.campaign_multipliers]
        return max(found, default=Decimal(1))


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
    """What an order earns: the total, each line's share (in line order), and how much of
    it is base points (the rest is each line's bonus)."""

    points: int
    line_points: tuple[int, ...] = ()
    base: int = 0
    line_bonus: tuple[int, ...] = ()


@dataclass(frozen=True)
class RefundLine:
    product_id: str
    quantity: Decimal


@dataclass
class EarnedLine:
    """An order line's bonus as refunds see it."""

    product_id: str
    quantity: Decimal
    bonus: int
    refunded_quantity: Decimal = Decimal(0)
    bonus_reversed: int = 0


@dataclass(frozen=True)
class Reversal:
    """What one refund takes back: points (base and bonus), the money it counted as
    refunded, and each order line's new refunded quantity and bonus reversed."""

    points: int
    amount: Decimal
    base_points: int = 0
    lines: tuple[tuple[Decimal, int], ...] = ()


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
        zeros = tuple(0 for _ in lines)
        return Earning(0, zeros, 0, zeros)
    excluded = total_tax + total_shipping if rules.exclude_tax_and_shipping else Decimal(0)
    rewardable = max(Decimal(0), total_paid - excluded)
    values = [_line_value(line, rules) for line in lines]
    covered = sum(values, Decimal(0))
    if covered > rewardable:  # order-level discounts: lines earn only on what was paid
        values = [value * rewardable / covered for value in values]
        covered = rewardable
    line_points = [
        floor_points(value * rules.rate_for(line.categories) * rules.multiplier_for(line))
        for value, line in zip(values, lines, strict=True)
    ]
    line_base = [
        min(points, floor_points(value * rules.points_per_unit))
        for value, points in zip(values, line_points, strict=True)
    ]
    bonus = [points - base for points, base in zip(line_points, line_base, strict=True)]
    base = sum(line_base) + floor_points((rewardable - covered) * rules.points_per_unit)
    if rules.max_cashback_per_order is not None:
        over = base + sum(bonus) - rules.max_cashback_per_order
        for index in reversed(range(len(bonus))):  # the cap takes bonus points first
            cut = min(max(over, 0), bonus[index])
            bonus[index] -= cut
            line_points[index] -= cut
            over -= cut
        base -= max(over, 0)
    return Earning(base + sum(bonus), tuple(line_points), base, tuple(bonus))


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
    base: int,
    total_paid: Decimal,
    refunded_before: Decimal,
    base_reversed_before: int,
    amount: Decimal | None,
    earned_lines: Sequence[EarnedLine] = (),
    refund_lines: Sequence[RefundLine] = (),
) -> Reversal:
    """Points a refund reverses; ``amount=None`` is a full refund of what remains."""
    refunded_after = total_paid if amount is None else min(total_paid, refunded_before + amount)
    base_target = (
        base
        if refunded_after >= total_paid
        else floor_points(Decimal(base) * refunded_after / total_paid)
    )
    base_points = max(0, min(base - base_reversed_before, base_target - base_reversed_before))
    asked: dict[str, Decimal] = {}
    for line in refund_lines:
        asked[line.product_id] = asked.get(line.product_id, Decimal(0)) + line.quantity
    new_lines = []
    bonus_points = 0
    for earned in earned_lines:  # the order's lines, in order; same products share the asks
        product = earned.product_id
        take = min(asked.get(product, Decimal(0)), earned.quantity - earned.refunded_quantity)
        asked[product] = asked.get(product, Decimal(0)) - take
        quantity = earned.refunded_quantity + take
        target = (
            earned.bonus
            if quantity >= earned.quantity
            else floor_points(Decimal(earned.bonus) * quantity / earned.quantity)
        )
        reverse = max(0, target - earned.bonus_reversed)
        bonus_points += reverse
        new_lines.append((quantity, earned.bonus_reversed + reverse))
    return Reversal(
        points=base_points + bonus_points,
        amount=refunded_after - refunded_before,
        base_points=base_points,
        lines=tuple(new_lines),
    )


def redemption_return(
    *, redeemed: int, returned_before: int, amount: Decimal | None, cash_refunded: Decimal
) -> int:
    """Points a refund gives back of those the order redeemed (1 point per currency unit,
    the sandbox's redemption rate). Gameball's "How does Gameball treat refunds?"
    (PD-REFUNDS): a refund first takes back the cashback of the paid part, then returns
    redeemed points for the rest (paid 60 and 40 in points, refund 80: the 60 earned
    points go, 20 points come back); a full refund returns them all."""
    left = max(0, redeemed - returned_before)
    if amount is None:
        return left
    return max(0, min(left, floor_points(amount - cash_refunded)))
