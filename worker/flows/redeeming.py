"""The calls that carry an order's redeemed points (``worker.rules.redemption`` decides them):
a hold first when v4 must hold a ``redeemed_amount``, and what to do when the order's
hold is gone. Used by :class:`worker.flows.delivery.Deliverer` for orders that redeem points.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Protocol

from producers.events import OrderPaid, Redemption
from worker.coordination.ratelimit import Permits
from worker.gameball.client import Attempt
from worker.gameball.payloads import GameballRequest, PointsSent, hold_request
from worker.gameball.versions import ApiVersion, redeems_in_the_order
from worker.ledger.core import Claimed
from worker.ledger.redemptions import ParkedRedemption, Redemptions
from worker.rules.outcomes import Outcome, OutcomeKind, Reason
from worker.rules.redemption import (
    HOLD_GONE,
    POINTS_SHORT,
    ParkReason,
    Plan,
    RedemptionState,
    after_hold_gone,
    park_reason_for_hold,
    plan,
)

log = logging.getLogger(__name__)


class Sender(Protocol):
    def send(self, request: GameballRequest) -> Attempt: ...


@dataclass(frozen=True)
class Prepared:
    """How this attempt sends the order's points; or the hold's attempt, which ends it
    (Gameball did not answer the hold for good); or how long to wait for the rate limit."""

    state: RedemptionState
    points: PointsSent | None = None
    hold_attempt: Attempt | None = None
    wait_s: float | None = None


class PointsCourier:
    def __init__(
        self,
        *,
        redemptions: Redemptions,
        gameball: Sender,
        limiter: Permits,
        owner: str,
        api_version: ApiVersion,
        max_wait_s: float,
        clock: Callable[[], datetime],
    ) -> None:
        self.redemptions, self.gameball, self.limiter = redemptions, gameball, limiter
        self.owner, self.api_version = owner, api_version
        self.max_wait_s, self.clock = max_wait_s, clock

    def prepare(self, claimed: Claimed, event: OrderPaid, redemption: Redemption) -> Prepared:
        state = RedemptionState.decode(self.redemptions.state(claimed.event_id))
        step = plan(redemption, redeems_in_the_order(self.api_version), state)
        if step.hold_amount is None:
            return Prepared(state, _sent(step))
        allowed, wait_s = self.limiter.acquire(self.max_wait_s, "transactions_post")
        if not allowed:
            return Prepared(state, wait_s=wait_s)
        request = hold_request(event, self.api_version, step.hold_amount, self.clock())
        attempt = self.gameball.send(request)
        outcome = attempt.outcome
        if outcome.reason is Reason.RATE_LIMITED:
            self.limiter.penalize(bucket="transactions_post")
        reference = (attempt.answer or {}).get("holdReference")
        if outcome.kind is OutcomeKind.DELIVERED and isinstance(reference, str) and reference:
            state = replace(state, hold=reference)
            self.redemptions.set_state(claimed.event_id, self.owner, state.encode())
            log.info("order %s: held %s for its redemption", event.order_id, step.hold_amount)
            return Prepared(state, PointsSent(hold_reference=reference))
        if outcome.kind is OutcomeKind.DEAD:
            reason = park_reason_for_hold(outcome.code)
            state = self._park(
                claimed, event, redemption, state=state, reason=reason, detail=outcome.message
            )
            return Prepared(state, PointsSent())
        if outcome.kind is OutcomeKind.DELIVERED:  # accepted, but naming no hold to use
            held = outcome.to_retry("holding the order's points: the answer names no hold")
        else:
            held = replace(outcome, message=f"holding the order's points: {outcome.message}")
        return Prepared(state, hold_attempt=replace(attempt, outcome=held))

    def after_order(
        self,
        claimed: Claimed,
        event: OrderPaid,
        redemption: Redemption,
        prepared: Prepared,
        outcome: Outcome,
    ) -> Outcome:
        """A 307 / 9006 to an order that named a hold: hold again, or park; a 309 to a v3
        order that sent an amount: park. Then the order goes again, never dead for its
        redemption's sake."""
        points = prepared.points or PointsSent()
        if outcome.code in POINTS_SHORT and points.redeemed_amount is not None:  # v3
            self._park(
                claimed,
                event,
                redemption,
                state=prepared.state,
                reason=ParkReason.POINTS_SHORT,
                detail=outcome.message,
            )
            return outcome.to_retry(
                f"{outcome.message}: the order goes again without its redemption, "
                "parked for the operator"
            )
        if outcome.code not in HOLD_GONE or points.hold_reference is None:
            return outcome
        state = after_hold_gone(redemption, prepared.state)
        if state.parked is not None:
            state = self._park(
                claimed,
                event,
                redemption,
                state=state,
                reason=state.parked,
                detail="the hold is gone and the value of its points unknown",
            )
            then = "the order goes again without its redemption, parked for the operator"
        else:
            self.redemptions.set_state(claimed.event_id, self.owner, state.encode())
            then = f"the order goes again, redeeming {redemption.redeemed_amount} anew"
        return outcome.to_retry(f"{outcome.message}: the order's points hold is gone; {then}")

    def _park(
        self,
        claimed: Claimed,
        event: OrderPaid,
        redemption: Redemption,
        *,
        state: RedemptionState,
        reason: ParkReason,
        detail: str,
    ) -> RedemptionState:
        state = replace(state, parked=reason)
        self.redemptions.set_state(claimed.event_id, self.owner, state.encode())
        amount = redemption.redeemed_amount
        parked = self.redemptions.park(
            ParkedRedemption(
                event_id=claimed.event_id,
                order_id=event.order_id,
                customer_id=event.customer_id,
                hold_reference=redemption.points_hold_reference,
                amount=None if amount is None else str(amount),
                reason=reason.value,
                detail=detail[:1000],
                parked_at=self.clock(),
            )
        )
        if parked:
            log.warning(
                "order %s: its redeemed points are parked for the operator (%s: %s); the "
                "order goes to Gameball without them (gbq redemptions list)",
                event.order_id,
                reason.value,
                detail,
            )
        return state


def _sent(step: Plan) -> PointsSent:
    return PointsSent(hold_reference=step.hold_reference, redeemed_amount=step.redeemed_amount)
