"""Reconciliation verdicts, per event and per transaction gbq does not know (pure)."""

from __future__ import annotations

import pytest

from worker.gameball.records import GameballRecord
from worker.reconcile import LedgerView, Verdict, reconcile


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
