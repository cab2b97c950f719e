"""Per-order ordering: may this event go to Gameball now? A pure decision.

- ``paid`` and ``cashback`` events never wait.
- A cancellation or refund goes only after its order's ``paid`` event was *delivered*,
  and after every earlier (by occurrence time, then id) cancellation or refund of the same
  order has been delivered or has died. A dead ``paid`` event blocks them for good.
- Ordering knows the events that reached the ledger or the inbox: a refund still in
  another host's spool can arrive after its order's later cancellation went. Gameball then
  answers it "already cancelled" (302 / 9001); :func:`after_cancelled_answer` says what
  that answer means.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from worker.rules.states import EventState


class Gate(StrEnum):
    PROCEED = "proceed"
    WAIT = "wait"
    BLOCK = "block"


@dataclass(frozen=True)
class OrderFact:
    """What ordering needs to know of one event of an order."""

    event_id: str
    kind: str
    occurred_at: datetime
    state: str

    @property
    def position(self) -> tuple[datetime, str]:
        return (self.occurred_at, self.event_id)


_SETTLED = frozenset({EventState.DELIVERED, EventState.DEAD})


def waits_on_order(kind: str) -> bool:
    """Whether an event of this kind can be held back by its order (else the gate always
    says proceed, and its order need not be read)."""
    return kind not in ("paid", "cashback")


def gate(event: OrderFact, order_events: Sequence[OrderFact]) -> Gate:
    """Whether ``event`` may be sent, given the other events of its order in the ledger."""
    if not waits_on_order(event.kind):
        return Gate.PROCEED
    others = [other for other in order_events if other.event_id != event.event_id]
    paid = next((other for other in others if other.kind == "paid"), None)
    if paid is None:
        return Gate.WAIT
    if paid.state == EventState.DEAD:
        return Gate.BLOCK
    if paid.state != EventState.DELIVERED:
        return Gate.WAIT
    earlier_unsettled = any(
        other.kind != "paid" and other.position < event.position and other.state not in _SETTLED
        for other in others
    )
    return Gate.WAIT if earlier_unsettled else Gate.PROCEED


class CancelledAnswer(StrEnum):
    """What "already cancelled" (302 / 9001) to a partial refund means."""

    # The order's cancellation happened after this refund and was applied first (the
    # refund arrived late): it took back what the refund would have. Nothing is missing.
    SUBSUMED = "subsumed"
    # That later cancellation is being sent right now (another worker's call reached
    # Gameball first, its answer not recorded yet): ask again later. Only in flight: one
    # still to be sent waits behind this refund (ordering), and asking again would hold
    # both until the retry window ran out.
    UNSETTLED = "unsettled"
    # No later cancellation: the refund came after its order was cancelled.
    REFUSED = "refused"


def after_cancelled_answer(event: OrderFact, order_events: Sequence[OrderFact]) -> CancelledAnswer:
    """Gameball answered the refund ``event`` "already cancelled"; ``order_events`` are the
    other events of its order in the ledger."""
    later = [
        other
        for other in order_events
        if other.kind == "cancelled"
        and other.event_id != event.event_id
        and other.position > event.position
    ]
    if any(other.state == EventState.DELIVERED for other in later):
        return CancelledAnswer.SUBSUMED
    if any(other.state == EventState.IN_FLIGHT for other in later):
        return CancelledAnswer.UNSETTLED
    return CancelledAnswer.REFUSED
