"""How an order's redeemed points go, attempt by attempt (worker.rules.redemption): pure."""

from __future__ import annotations

from decimal import Decimal

import pytest

from producers.events import Redemption
from worker.gameball.versions import ApiVersion, redeems_in_the_order
from worker.rules.redemption import (
    ParkReason,
    Plan,
    RedemptionState,
    after_hold_gone,
    park_reason_for_hold,
    plan,
)

HOLD = Redemption(points_hold_reference="checkout-hold")
AMOUNT = Redemption(redeemed_amount=Decimal(40))
BOTH = Redemption(points_hold_reference="checkout-hold", redeemed_amount=Decimal(40))
FRESH = RedemptionState()


@pytest.mark.parametrize(
    ("redemption", "version", "state", "expected"),
    [
        (HOLD, "v4.1", FRESH, Plan(hold_reference="checkout-hold")),
        (HOLD, "v3.0", FRESH, Plan(hold_reference="checkout-hold")),
        (BOTH, "v4.1", FRESH, Plan(hold_reference="checkout-hold")),
        (AMOUNT, "v4.1", FRESH, Plan(hold_amount=Decimal(40))),  # v4: hold it first
        (AMOUNT, "v3.0", FRESH, Plan(redeemed_amount=Decimal(40))),  # v3: on the order
        (AMOUNT, "v4.0", RedemptionState(hold="gbq-hold"), Plan(hold_reference="gbq-hold")),
        (BOTH, "v4.1", RedemptionState(checkout_hold_gone=True), Plan(hold_amount=Decimal(40))),
        (BOTH, "v3.0", RedemptionState(checkout_hold_gone=True), Plan(redeemed_amount=Decimal(40))),
        (HOLD, "v4.1", RedemptionState(checkout_hold_gone=True), Plan(without=True)),
        (BOTH, "v4.1", RedemptionState(parked=ParkReason.POINTS_SHORT), Plan(without=True)),
    ],
)
def test_the_next_step_for_the_orders_points(
    redemption: Redemption, version: ApiVersion, state: RedemptionState, expected: Plan
) -> None:
    assert plan(redemption, redeems_in_the_order(version), state) == expected


def test_a_hold_gone_is_held_again_when_its_value_is_known_else_parked() -> None:
    assert after_hold_gone(BOTH, FRESH) == RedemptionState(checkout_hold_gone=True)
    assert after_hold_gone(AMOUNT, RedemptionState(hold="gbq-hold")) == FRESH  # hold anew
    assert after_hold_gone(HOLD, FRESH) == RedemptionState(
        checkout_hold_gone=True, parked=ParkReason.HOLD_EXPIRED
    )


def test_why_a_refused_hold_parks_the_redemption() -> None:
    assert park_reason_for_hold(9008) is ParkReason.POINTS_SHORT
    assert park_reason_for_hold(309) is ParkReason.POINTS_SHORT
    assert park_reason_for_hold(7000) is ParkReason.POINTS_SHORT  # unknown: no points
    assert park_reason_for_hold(3003) is ParkReason.HOLD_REFUSED


@pytest.mark.parametrize(
    "state",
    [FRESH, RedemptionState("h", True, ParkReason.HOLD_EXPIRED), RedemptionState(hold="x")],
)
def test_the_state_survives_the_ledger(state: RedemptionState) -> None:
    assert RedemptionState.decode(state.encode()) == state
    assert RedemptionState.decode(None) == FRESH
