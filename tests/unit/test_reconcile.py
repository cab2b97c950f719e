"""Reconciliation verdicts, per event and per transaction gbq does not know, and whose
an id that "already exists" at Gameball is (pure)."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from producers.events import CashbackAwarded, Event, OrderPaid, OrderRefunded
from worker.flows.reconcile import LedgerView, Verdict, holds_ours, reconcile
from worker.gameball.records import GameballRecord


def record(transaction_id: str) -> GameballRecord:
    return GameballRecord(transaction_id, "PaymentReward", 10, 10)


@pytest.mark.parametrize(
    ("view", "held", "verdict"),
    [
        # delivered here and held there
        (LedgerView("paid:A", "paid", "delivered", "A"), ["A"], Verdict.AGREED),
        # delivered here, Gameball has no record: send again
        (LedgerView("paid:A", "paid", "delivered", "A"), [], Verdict.MISSING_AT_GAMEBALL),
        # a cancellation answered "already cancelled" (302) leaves no record: agreed
        (LedgerView("cancelled:A", "cancelled", "delivered", "A-cancel", 302), [], Verdict.AGREED),
        # in progress (or dead) here, but Gameball applied it
        (LedgerView("paid:A", "paid", "scheduled", "A"), ["A"], Verdict.APPLIED_NOT_RECORDED),
        (LedgerView("paid:A", "paid", "dead", "A"), ["A"], Verdict.APPLIED_NOT_RECORDED),
        # neither: consistent
        (LedgerView("paid:A", "paid", "dead", "A"), [], Verdict.NOT_SENT),
    ],
)
def test_each_event_gets_one_verdict(view: LedgerView, held: list[str], verdict: Verdict) -> None:
    findings = reconcile("A", [view], [record(t) for t in held])
    assert [f.verdict for f in findings] == [verdict]


def test_transactions_gbq_never_sent_are_reported() -> None:
    findings = reconcile(
        "A", [LedgerView("paid:A", "paid", "delivered", "A")], [record("A"), record("A-X")]
    )
    assert [(f.transaction_id, f.verdict) for f in findings] == [
        ("A", Verdict.AGREED),
        ("A-X", Verdict.UNKNOWN_TO_US),
    ]


T = datetime(2026, 1, 1, tzinfo=UTC)
PAID = OrderPaid(
    order_id="A", customer_id="c", occurred_at=T, total_price=Decimal(5), total_paid=Decimal(5)
)
REFUND = OrderRefunded(
    order_id="A", refund_id="R", customer_id="c", occurred_at=T, amount=Decimal(2)
)
CASHBACK = CashbackAwarded(transaction_id="K", customer_id="c", occurred_at=T, amount=Decimal(3))


def held(transaction_id: str, customer: str = "c", amount: object = 3) -> GameballRecord:
    return GameballRecord(transaction_id, "Cashback", amount, 3, customer_id=customer)


@pytest.mark.parametrize(
    ("event", "records", "ours"),
    [
        # "already exists", and the records show it: an earlier attempt applied it
        (PAID, [held("A")], True),
        (REFUND, [held("A"), held("R")], True),
        (CASHBACK, [held("K")], True),
        (CASHBACK, [held("K", amount=None)], True),  # no amount shown: id and customer decide
        (CASHBACK, [held("K", customer="")], True),
        # the id is held, but not by this event: another customer's, another amount, or
        # no record of it where ours would be (the order's own transactions)
        (PAID, [held("A", customer="other")], False),
        (PAID, [], False),
        (REFUND, [held("A")], False),
        (CASHBACK, [held("K", customer="other")], False),
        (CASHBACK, [held("K", amount=30)], False),
        (CASHBACK, [held("K", amount="n/a")], False),
        (CASHBACK, [held("X")], False),
    ],
)
def test_an_id_that_already_exists_is_ours_only_if_the_records_show_it(
    event: Event, records: list[GameballRecord], ours: bool
) -> None:
    assert holds_ours(event, records) is ours
