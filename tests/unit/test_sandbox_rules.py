"""The sandbox's cashback arithmetic: earning, caps, and refunds that never over-reverse."""

from __future__ import annotations

import itertools
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from worker.sandbox.rules import (
    CashbackRules,
    EarnedLine,
    OrderLine,
    RefundLine,
    cashback_points,
    order_earning,
    redemption_return,
    refund_reversal,
)

money = st.decimals(min_value=Decimal("0.01"), max_value=Decimal("50000"), places=2)
rates = st.decimals(min_value=Decimal("0"), max_value=Decimal("20"), places=2)


def test_gameballs_worked_example_gives_19000_points() -> None:
    """Reference §3: a line at 20 × 5 (campaign) = 15 000, the uncovered 200 at 20 = 4 000;
    of the line's points 12 000 are the campaign's (Gameball's campaignImpactPoints)."""
    rules = CashbackRules(points_per_unit=Decimal(20), category_rates={"summer": Decimal(100)})
    line = OrderLine("875511", Decimal(1), Decimal(150), categories=("summer",))
    earning = order_earning(rules, Decimal(350), [line])
    assert earning == type(earning)(19000, (15000,), base=7000, line_bonus=(12000,))


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
        base=100,
        total_paid=Decimal(100),
        refunded_before=Decimal(0),
        base_reversed_before=0,
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
            base=earned,
            total_paid=total_paid,
            refunded_before=refunded,
            base_reversed_before=reversed_points,
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


# --- base and bonus points, reversed as Gameball's refund tutorial documents ---------------


def _refund(
    rules: CashbackRules,
    lines: list[OrderLine],
    total_paid: Decimal,
    refunds: list[tuple[Decimal | None, list[tuple[str, int]]]],
) -> list[int]:
    """Earn an order, then apply refunds (amount, [(product, quantity)]): points each took."""
    earning = order_earning(rules, total_paid, lines)
    earned = [
        EarnedLine(line.product_id, line.quantity, bonus)
        for line, bonus in zip(lines, earning.line_bonus, strict=True)
    ]
    refunded, base_reversed, taken = Decimal(0), 0, []
    for amount, refund_lines in refunds:
        reversal = refund_reversal(
            base=earning.base,
            total_paid=total_paid,
            refunded_before=refunded,
            base_reversed_before=base_reversed,
            amount=amount,
            earned_lines=earned,
            refund_lines=[RefundLine(p, Decimal(q)) for p, q in refund_lines],
        )
        refunded += reversal.amount
        base_reversed += reversal.base_points
        for line, (quantity, bonus_reversed) in zip(earned, reversal.lines, strict=True):
            line.refunded_quantity, line.bonus_reversed = quantity, bonus_reversed
        taken.append(reversal.points)
    assert sum(taken) <= earning.points
    return taken


TRIPLE = CashbackRules(campaign_multipliers={"product:console001": Decimal(3)})
DOUBLE = CashbackRules(campaign_multipliers={"category:sports": Decimal(2)})
MATS = [
    OrderLine("yoga_mat001", Decimal(3), Decimal(10), categories=("sports",)),
    OrderLine("bottle001", Decimal(2), Decimal(5), categories=("sports",)),
]


@pytest.mark.parametrize(
    ("rules", "lines", "paid", "refunds", "taken"),
    [
        # use case 1: shoes at 12.50, 1 point per unit, refunded with their line: 12
        (
            CashbackRules(),
            [OrderLine("shoes001", Decimal(1), Decimal("12.50"))],
            Decimal("12.50"),
            [(Decimal("12.50"), [("shoes001", 1)])],
            [12],
        ),
        # use case 2: a console during a triple-points campaign: 75 earned, 75 back
        (
            TRIPLE,
            [OrderLine("console001", Decimal(1), Decimal(25))],
            Decimal(25),
            [(Decimal(25), [("console001", 1)])],
            [75],
        ),
        # use case 3: the same refund without line items: cashback (base) only
        (
            TRIPLE,
            [OrderLine("console001", Decimal(1), Decimal(25))],
            Decimal(25),
            [(Decimal(25), [])],
            [25],
        ),
        # use case 4: 2 of 3 mats refunded under double points: 40 of the 80 earned
        (DOUBLE, MATS, Decimal(40), [(Decimal(20), [("yoga_mat001", 2)])], [40]),
        # a cancellation without lines leaves every bonus point with the customer
        (DOUBLE, MATS, Decimal(40), [(None, [])], [40]),
        # with every line it takes back all 80
        (DOUBLE, MATS, Decimal(40), [(None, [("yoga_mat001", 3), ("bottle001", 2)])], [80]),
        # mats one by one, then the rest: never a point more than earned
        (
            DOUBLE,
            MATS,
            Decimal(40),
            [(Decimal(10), [("yoga_mat001", 1)])] * 3 + [(None, [("bottle001", 2)])],
            [20, 20, 20, 20],
        ),
        # asking for more units than were bought counts what was bought
        (DOUBLE, MATS, Decimal(40), [(Decimal(30), [("yoga_mat001", 9)])], [60]),
    ],
)
def test_refunds_reverse_bonus_points_only_for_the_lines_they_name(
    rules: CashbackRules,
    lines: list[OrderLine],
    paid: Decimal,
    refunds: list[tuple[Decimal | None, list[tuple[str, int]]]],
    taken: list[int],
) -> None:
    assert _refund(rules, lines, paid, refunds) == taken


@settings(max_examples=200)
@given(
    st.lists(
        st.tuples(st.integers(1, 5), st.integers(1, 40), st.booleans()), min_size=1, max_size=4
    ),
    st.sampled_from([Decimal(1), Decimal("1.5"), Decimal(2), Decimal(3)]),
    st.randoms(use_true_random=False),
)
def test_refunding_every_unit_with_its_line_reverses_exactly_what_was_earned(
    specs: list[tuple[int, int, bool]], multiplier: Decimal, random: Any
) -> None:
    """Whatever the split into refunds, refunding every unit of every line (and the
    whole amount) takes back exactly what the order earned: no leak, no overdraft."""
    rules = CashbackRules(campaign_multipliers={"category:promo": multiplier})
    lines = [
        OrderLine(f"p{n}", Decimal(quantity), Decimal(price), categories=("promo",) if on else ())
        for n, (quantity, price, on) in enumerate(specs)
    ]
    paid = sum((line.price * line.quantity for line in lines), Decimal(0))
    units = [(line.product_id, line.price) for line in lines for _ in range(int(line.quantity))]
    random.shuffle(units)
    refunds: list[tuple[Decimal | None, list[tuple[str, int]]]] = [
        (price, [(product, 1)]) for product, price in units
    ]
    taken = _refund(rules, lines, paid, refunds)
    assert sum(taken) == order_earning(rules, paid, lines).points


@pytest.mark.parametrize(
    ("redeemed", "before", "amount", "cash", "returned"),
    [
        # PD-REFUNDS: paid 60 and 40 in points; a refund of 80 takes the 60 earned points
        # (the paid part, counted by refund_reversal) and returns 20 points
        (40, 0, Decimal(80), Decimal(60), 20),
        (40, 20, Decimal(20), Decimal(0), 20),  # the rest later
        (40, 40, Decimal(50), Decimal(0), 0),  # nothing left to return
        (40, 0, Decimal(30), Decimal(30), 0),  # within the paid part: points stay spent
        (40, 0, Decimal("20.9"), Decimal(0), 20),  # whole points only (floor)
        (100, 0, Decimal(20), Decimal(0), 20),  # all paid with points: refunds return points
        (40, 10, None, Decimal(60), 30),  # a full refund returns whatever remains
        (0, 0, Decimal(80), Decimal(60), 0),  # nothing redeemed
    ],
)
def test_refunds_give_back_redeemed_points_beyond_the_paid_part(
    redeemed: int, before: int, amount: Decimal | None, cash: Decimal, returned: int
) -> None:
    assert (
        redemption_return(
            redeemed=redeemed, returned_before=before, amount=amount, cash_refunded=cash
        )
        == returned
    )
