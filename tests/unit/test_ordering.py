"""Per-order ordering: who may go to Gameball now."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from worker.rules.ordering import CancelledAnswer, Gate, OrderFact, after_cancelled_answer, gate

T = datetime(2026, 1, 1, tzinfo=UTC)


def fact(event_id: str, kind: str, minutes: int, state: str = "pending") -> OrderFact:
    return OrderFact(event_id, kind, T + timedelta(minutes=minutes), state)


REFUND = fact("refunded:O:R2", "refunded", 20)

CASES = [
    # paid never waits
    (fact("paid:O", "paid", 0), [], Gate.PROCEED),
    # cashback has no order
    (fact("cashback:T", "cashback", 0), [], Gate.PROCEED),
    # a refund with no paid event in the ledger waits
    (REFUND, [], Gate.WAIT),
    # paid known but not delivered yet
    (REFUND, [fact("paid:O", "paid", 0, "scheduled")], Gate.WAIT),
    # paid delivered, nothing earlier pending
    (REFUND, [fact("paid:O", "paid", 0, "delivered")], Gate.PROCEED),
    # paid dead: blocked for good
    (REFUND, [fact("paid:O", "paid", 0, "dead")], Gate.BLOCK),
    # an earlier refund still in flight: wait
    (
        REFUND,
        [
            fact("paid:O", "paid", 0, "delivered"),
            fact("refunded:O:R1", "refunded", 10, "in_flight"),
        ],
        Gate.WAIT,
    ),
    # an earlier refund that died does not hold the later one
    (
        REFUND,
        [fact("paid:O", "paid", 0, "delivered"), fact("refunded:O:R1", "refunded", 10, "dead")],
        Gate.PROCEED,
    ),
    # a later refund (or cancel) does not hold this one
    (
        REFUND,
        [fact("paid:O", "paid", 0, "delivered"), fact("cancelled:O", "cancelled", 30, "waiting")],
        Gate.PROCEED,
    ),
    # a cancel waits for the refunds that happened before it
    (
        fact("cancelled:O", "cancelled", 30),
        [fact("paid:O", "paid", 0, "delivered"), fact("refunded:O:R2", "refunded", 20, "waiting")],
        Gate.WAIT,
    ),
    # same instant: the id breaks the tie, deterministically
    (
        fact("refunded:O:B", "refunded", 20),
        [fact("paid:O", "paid", 0, "delivered"), fact("refunded:O:A", "refunded", 20)],
        Gate.WAIT,
    ),
    # the event itself in the list is ignored
    (REFUND, [fact("paid:O", "paid", 0, "delivered"), REFUND], Gate.PROCEED),
]


@pytest.mark.parametrize(("event", "others", "expected"), CASES)
def test_gate(event: OrderFact, others: list[OrderFact], expected: Gate) -> None:
    """Each row: the order's other events decide whether this one goes, waits or dies."""
    assert gate(event, others) is expected


PARTIAL = fact("refunded:O:R1", "refunded", 10)
CANCELLED_ANSWERS = [
    # the order's later cancellation was applied first: it took the refund's share back
    (
        [fact("paid:O", "paid", 0, "delivered"), fact("cancelled:O", "cancelled", 30, "delivered")],
        CancelledAnswer.SUBSUMED,
    ),
    # that cancellation is being sent (Gameball applied it, the ledger not yet)
    ([fact("cancelled:O", "cancelled", 30, "in_flight")], CancelledAnswer.UNSETTLED),
    # one not sent yet waits behind this refund: not what cancelled the order (earlier
    # refunds returned everything), and waiting for it would hold both
    ([fact("cancelled:O", "cancelled", 30, "waiting")], CancelledAnswer.REFUSED),
    ([fact("cancelled:O", "cancelled", 30, "pending")], CancelledAnswer.REFUSED),
    # the cancellation happened before the refund: the refund came too late
    ([fact("cancelled:O", "cancelled", 5, "delivered")], CancelledAnswer.REFUSED),
    # no cancellation at all (the refunds returned everything): refused
    ([fact("refunded:O:R0", "refunded", 5, "delivered")], CancelledAnswer.REFUSED),
    # a later cancellation that died cannot have cancelled the order
    ([fact("cancelled:O", "cancelled", 30, "dead")], CancelledAnswer.REFUSED),
    # the same instant: the id decides which came first
    ([fact("cancelled:O", "cancelled", 10, "delivered")], CancelledAnswer.REFUSED),
]


@pytest.mark.parametrize(("order", "expected"), CANCELLED_ANSWERS)
def test_already_cancelled_means_subsumed_only_by_a_later_applied_cancellation(
    order: list[OrderFact], expected: CancelledAnswer
) -> None:
    assert after_cancelled_answer(PARTIAL, order) is expected
