"""Points an order redeemed, carried to Gameball the documented way, and never dropped.

Pure decisions; ``worker.flows.delivery`` makes the calls and keeps :class:`RedemptionState` in
the event's ledger row (``redemption_state``) so that every attempt continues where the
last one stopped.

- **v4.x** redeems points on an order only through a hold it names
  (``redemption.pointsHoldReference``, openapi.json). An order published with a
  ``redeemed_amount`` and no hold gets one: gbq holds that value first
  (``POST transactions/hold``, ``amountToHold``, ``ignoreOTP``) and names it. The hold
  made is kept, so a retried order names the same hold rather than holding again.
- **v3.0** takes ``holdReference`` or ``redeemedAmount`` on the order itself.
- **A hold gone** (307 / 9006: expired, released or consumed elsewhere): holds live 10
  minutes by default (at most 15 days, set in Gameball's dashboard) while gbq retries for
  days. With the value known (``redeemed_amount``), the order holds again (v4) or sends the
  amount (v3). Without it, or when the customer no longer has the points (309 / 9008) or
  the hold is refused for another reason, the redemption is *parked* for the operator with
  a reason of its own and the order goes without it: the order, its cashback and its
  refunds are never lost for the redemption's sake.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, replace
from decimal import Decimal
from enum import StrEnum
from typing import Final

from producers.events import Event, OrderPaid, Redemption

HOLD_GONE: Final = frozenset({307, 9006})  # "Transaction Hold Reference Not Found"
POINTS_SHORT: Final = frozenset({309, 9008})  # "Insufficient Balance Points"
NO_CUSTOMER: Final = frozenset({101, 7000})  # a customer Gameball does not know has no points


class ParkReason(StrEnum):
    HOLD_EXPIRED = "hold_expired"  # the hold is gone and its value unknown
    POINTS_SHORT = "points_short"  # the customer has not (or no longer) the points to hold
    HOLD_REFUSED = "hold_refused"  # Gameball refused the hold for another reason


@dataclass(frozen=True)
class RedemptionState:
    """Where an order's redemption stands, across attempts."""

    hold: str | None = None  # a hold gbq made for the order, to be named
    checkout_hold_gone: bool = False  # the hold the checkout made answered 307 / 9006
    parked: ParkReason | None = None  # the operator settles it; the order goes without

    def encode(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"))

    @classmethod
    def decode(cls, text: str | None) -> RedemptionState:
        if not text:
            return cls()
        raw = json.loads(text)
        parked = raw.get("parked")
        return cls(
            hold=raw.get("hold"),
            checkout_hold_gone=bool(raw.get("checkout_hold_gone")),
            parked=None if parked is None else ParkReason(parked),
        )


@dataclass(frozen=True)
class Plan:
    """What this attempt does with the order's points: hold ``hold_amount`` first (v4),
    then name ``hold_reference`` or send ``redeemed_amount`` (v3); ``without``: none."""

    hold_amount: Decimal | None = None
    hold_reference: str | None = None
    redeemed_amount: Decimal | None = None
    without: bool = False


def redeems_points(event: Event) -> tuple[OrderPaid, Redemption] | None:
    """The order and its redemption, when it spends points (a hold or an amount)."""
    if not isinstance(event, OrderPaid) or event.redemption is None:
        return None
    redemption = event.redemption
    if redemption.points_hold_reference is None and redemption.redeemed_amount is None:
        return None
    return event, redemption


def plan(redemption: Redemption, in_the_order: bool, state: RedemptionState) -> Plan:
    """The next step for the order's points; ``in_the_order``: the API version takes
    redeemed points inside the order call (``worker.gameball.versions``)."""
    if state.parked is not None:
        return Plan(without=True)
    if state.hold is not None:
        return Plan(hold_reference=state.hold)
    checkout_hold = None if state.checkout_hold_gone else redemption.points_hold_reference
    if checkout_hold is not None:
        return Plan(hold_reference=checkout_hold)
    amount = redemption.redeemed_amount
    if amount is None:  # the checkout's hold is gone and its value unknown
        return Plan(without=True)
    if in_the_order:
        return Plan(redeemed_amount=amount)
    return Plan(hold_amount=amount)


def after_hold_gone(redemption: Redemption, state: RedemptionState) -> RedemptionState:
    """The order named a hold Gameball no longer has: hold again with the value known,
    or park the redemption."""
    if state.hold is not None:  # gbq's own hold expired (the order waited past it)
        state = replace(state, hold=None)
    else:
        state = replace(state, checkout_hold_gone=True)
    if redemption.redeemed_amount is None:
        return replace(state, parked=ParkReason.HOLD_EXPIRED)
    return state


def park_reason_for_hold(code: int | None) -> ParkReason:
    """Why a hold Gameball refused for good parks the redemption."""
    short = code in POINTS_SHORT or code in NO_CUSTOMER
    return ParkReason.POINTS_SHORT if short else ParkReason.HOLD_REFUSED
