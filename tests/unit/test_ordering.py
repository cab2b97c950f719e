"""Per-order ordering: who may go to Gameball now."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from worker.rules.ordering import Gate, OrderFact, gate

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
