"""The sandbox's cashback arithmetic: earning, caps, and refunds that never over-reverse."""

from __future__ import annotations

import itertools
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sandbox.rules import (
    CashbackRules,
    OrderLine,
    cashback_points,
    order_earning,
    refund_reversal,
)

money = st.decimals(min_value=Decimal("0.01"), max_value=Decimal("50000"), places=2)
rates = st.decimals(min_value=Decimal("0"), max_value=Decimal("20"), places=2)


def test_gameballs_worked_example_gives_19000_points() -> None:
    """Reference §3: a line at 20 × 5 (campaign) = 15 000, the uncovered 200 at 20 = 4 000."""
    rules = CashbackRules(points_per_unit=Decimal(20), category_rates={"summer": Decimal(100)})
    line = OrderLine("875511", Decimal(1), Decimal(150), categories=("summer",))
    earning = order_earning(rules, Decimal(350), [line])
    assert earning == type(earning)(19000, (15000,))


@pytest.mark.parametrize(
    ("rules", "total_paid", "expected"),
    [
        # 1 point per unit, floored
        (CashbackRules(), Decimal("99.99"), 99),
        # 2.5 points per unit
        (CashbackRules(points_per_unit=Decimal("2.5")), Decimal("10.30"), 25),
        # below the minimum order value: nothing
        (CashbackRules(min_order_value=Decimal(50)), Decimal("49.99"), 0),
        # at the minimum: earns
        (CashbackRules(min_order_value=Decimal(50)), Decimal(50), 50),
        # the per-order cap
        (CashbackRules(max_cashback_per_order=100), Decimal(500), 100),
    ],
)
def test_order_earning_without_lines(
    rules: CashbackRules, total_paid: Decimal, expected: int
) -> None:
    """Base rate, minimum order value and cap."""
    assert order_earning(rules, total_paid).points == expected


def test_best_category_rate_wins_per_line() -> None:
    """A line in several rated categories earns at the best of their rates."""
    rules = CashbackRules(category_rates={"shoes": Decimal(3), "sale": Decimal(2)})
    lines = [
        OrderLine("a", Decimal(1), Decimal(10), categories=("sale", "shoes")),  # 30
        OrderLine("b", Decimal(2), Decimal(5), discount=Decimal(1), categories=("other",)),  # 9
    ]
    earning = order_earning(rules, Decimal(19), lines)
    assert earning.line_points == (30, 9)
    assert earning.points == 39


def test_lines_are_scaled_to_what_was_paid() -> None:
    """An order-level discount means lines earn only on the money actually paid."""
    lines = [OrderLine("a", Decimal(1), Decimal(100)), OrderLine("b", Decimal(1), Decimal(100))]
    assert order_earning(CashbackRules(), Decimal(100), lines).points == 100


def test_tax_and_shipping_exclusion() -> None:
    """With the exclusion on, tax and shipping earn nothing."""
    rules = CashbackRules(exclude_tax_and_shipping=True)
    earning = order_earning(rules, Decimal(120), total_tax=Decimal(15), total_shipping=Decimal(5))
    assert earning.points == 100


def test_refund_of_12_50_at_one_point_per_unit_takes_12() -> None:
    """Reference §5 (PD-CALC): refunds round down."""
    reversal = refund_reversal(
        earned=100,
        total_paid=Decimal(100),
        refunded_before=Decimal(0),
        reversed_before=0,
        amount=Decimal("12.50"),
    )
    assert reversal.points == 12


def test_cashback_points_floor() -> None:
    """Cashback: amount × rate, floored."""
    assert cashback_points(CashbackRules(points_per_unit=Decimal("0.2")), Decimal("99.98")) == 19


@st.composite
def orders_with_refunds(draw: st.DrawFn) -> tuple[int, Decimal, list[Decimal | None]]:
    total_paid = draw(money)
    rules = CashbackRules(
        points_per_unit=draw(rates), max_cashback_per_order=draw(st.none() | st.integers(0, 10_000))
    )
    earned = order_earning(rules, total_paid).points
    refunds = draw(st.lists(st.none() | money, max_size=8))
    return earned, total_paid, refunds


def apply_refunds(earned: int, total_paid: Decimal, refunds: list[Decimal | None]) -> list[int]:
    refunded, reversed_points, taken = Decimal(0), 0, []
    for amount in refunds:
        reversal = refund_reversal(
            earned=earned,
            total_paid=total_paid,
            refunded_before=refunded,
            reversed_before=reversed_points,
            amount=amount,
        )
        refunded += reversal.amount
        reversed_points += reversal.points
        taken.append(reversal.points)
    return taken


@settings(max_examples=300)
@given(orders_with_refunds())
def test_refunds_never_reverse_more_than_earned(
    case: tuple[int, Decimal, list[Decimal | None]],
) -> None:
    """Whatever the refunds, the order never gives back more points than it earned."""
    earned, total_paid, refunds = case
    taken = apply_refunds(earned, total_paid, refunds)
    assert all(points >= 0 for points in taken)
    assert sum(taken) <= earned


@settings(max_examples=300)
@given(money, rates, st.integers(1, 12), st.data())
def test_partial_refunds_summing_to_the_total_reverse_exactly_what_was_earned(
    total_paid: Decimal, rate: Decimal, parts: int, data: st.DataObject
) -> None:
    """Refunding the whole amount in pieces takes back every earned point, no more."""
    earned = order_earning(CashbackRules(points_per_unit=rate), total_paid).points
    cents = int(total_paid * 100)
    parts = min(parts, cents)
    cuts = (
        sorted(
            data.draw(
                st.lists(
                    st.integers(1, cents - 1), min_size=parts - 1, max_size=parts - 1, unique=True
                )
            )
        )
        if parts > 1
        else []
    )
    bounds = [0, *cuts, cents]
    pieces = [Decimal(high - low) / 100 for low, high in itertools.pairwise(bounds)]
    assert sum(pieces) == total_paid
    assert sum(apply_refunds(earned, total_paid, list(pieces))) == earned


@settings(max_examples=200)
@given(orders_with_refunds())
def test_a_full_refund_takes_back_whatever_remains(
    case: tuple[int, Decimal, list[Decimal | None]],
) -> None:
    """After any partial refunds, a full refund brings the order's net to zero."""
    earned, total_paid, refunds = case
    taken = apply_refunds(earned, total_paid, [*refunds, None])
    assert sum(taken) == earned
