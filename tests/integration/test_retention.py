"""Retention: delivered events leave the ledger after their window (archived first when
asked), dead letters stay, and ordering and full reversals still know what was removed."""

from __future__ import annotations

import json
import re
import subprocess
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import text

from producers.events import (
    CashbackAwarded,
    Event,
    LineItem,
    OrderCancelled,
    OrderPaid,
    OrderRefunded,
)
from tests.processes import GBQ, SandboxProcess, wait_until
from tests.stack import Stack
from worker.gameball.outcomes import Outcome, OutcomeKind, Reason
from worker.gameball.payloads import RefundLine, lines_left, reversal_lines
from worker.ledger.engine import create_ledger_engine
from worker.ledger.models import DeadReason, EventState
from worker.ledger.order_memory import reversal_basis
from worker.ledger.repository import AttemptRecord, Ledger, new_event
from worker.ledger.schema import migrate
from worker.ordering import Gate, OrderFact, gate
from worker.retry import Transition

pytestmark = pytest.mark.integration
T0 = datetime(2026, 1, 5, 10, 0, tzinfo=UTC)
MAT = LineItem(product_id="mat", quantity=3, price=Decimal(10), category=("mats",))
BOTTLE = LineItem(product_id="bottle", quantity=2, price=Decimal(5))
PAID = OrderPaid(
    order_id="P",
    customer_id="c",
    occurred_at=T0,
    total_price=Decimal(40),
    total_paid=Decimal(40),
    line_items=(MAT, BOTTLE),
)
REFUND = OrderRefunded(
    order_id="P",
    refund_id="P-R1",
    customer_id="c",
    occurred_at=T0 + timedelta(minutes=1),
    amount=Decimal(20),
    line_items=(MAT.model_copy(update={"quantity": 2}),),
)


def settle(ledger: Ledger, event: Event, at: datetime, state: EventState) -> None:
    ledger.ingest([new_event(event, None)], at)
    ledger.claim(event.event_id, "w", at, at + timedelta(seconds=60))
    kind = OutcomeKind.DELIVERED if state is EventState.DELIVERED else OutcomeKind.DEAD
    outcome = Outcome(kind, Reason.ACCEPTED, "m", 200)
    reason = None if state is EventState.DELIVERED else DeadReason.REJECTED
    transition = Transition(state, dead_reason=reason)
    record = AttemptRecord(1, "w", at, 0.01, outcome)
    assert ledger.record_attempt(event.event_id, "w", record, transition, at)


def test_delivered_events_leave_after_the_window_and_dead_letters_stay(
    ledger: Ledger, tmp_path: Path
) -> None:
    old, recent = T0, T0 + timedelta(days=40)
    cashback = CashbackAwarded(
        transaction_id="K", customer_id="c", occurred_at=T0, amount=Decimal(1)
    )
    dead = CashbackAwarded(transaction_id="D", customer_id="c", occurred_at=T0, amount=Decimal(1))
    kept = CashbackAwarded(transaction_id="N", customer_id="c", occurred_at=T0, amount=Decimal(1))
    for event in (PAID, REFUND, cashback):
        settle(ledger, event, old, EventState.DELIVERED)
    settle(ledger, dead, old, EventState.DEAD)
    settle(ledger, kept, recent, EventState.DELIVERED)
    cutoff = T0 + timedelta(days=30)
    assert ledger.count_prunable(cutoff) == 3
    archive = tmp_path / "archive"
    first = ledger.prune(cutoff=cutoff, limit=2, archive_dir=archive)
    second = ledger.prune(cutoff=cutoff, limit=2, archive_dir=archive)
    assert (first.events, first.attempts, second.events, second.attempts) == (2, 2, 1, 1)
    assert ledger.prune(cutoff=cutoff, limit=2).events == 0
    assert ledger.counts_by_state() == {"dead": 1, "delivered": 1}
    assert ledger.get("cashback:D") is not None
    assert ledger.get("cashback:N") is not None
    [day] = list(archive.iterdir())
    assert day.name == f"gbq-archive-{old.date().isoformat()}.jsonl"
    lines = [json.loads(line) for line in day.read_text().splitlines()]
    assert sorted(line["event_id"] for line in lines) == [
        "cashback:K",
        "paid:P",
        "refunded:P:P-R1",
    ]
    assert all(len(line["attempts"]) == 1 for line in lines)
    assert next(line for line in lines if line["event_id"] == "paid:P")["event"]["order_id"] == "P"


def test_ordering_and_full_reversals_remember_a_removed_order(ledger: Ledger) -> None:
    """The paid event and a partial refund are removed; a second refund still goes (the
    paid event counts as delivered), and a cancellation still names the lines left. Once
    the order is forgotten, a refund waits (and would expire)."""
    settle(ledger, PAID, T0, EventState.DELIVERED)
    settle(ledger, REFUND, T0, EventState.DELIVERED)
    assert ledger.prune(cutoff=T0 + timedelta(days=1), limit=100).events == 2
    assert ledger.get("paid:P") is None
    later = OrderRefunded(
        order_id="P", refund_id="P-R2", customer_id="c", occurred_at=T0 + timedelta(days=50)
    )
    fact = OrderFact(later.event_id, "refunded", later.occurred_at, EventState.PENDING)
    facts = ledger.order_facts("P")
    assert {(f.event_id, f.state) for f in facts} == {
        ("paid:P", "delivered"),
        ("refunded:P:P-R1", "delivered"),
    }
    assert gate(fact, facts) is Gate.PROCEED
    assert ledger.order_facts_many(["P"])["P"] == facts
    history = ledger.order_history("P")
    assert history.live == []
    paid, taken = reversal_basis(history.live, history.memory)
    assert paid is not None
    left = lines_left((RefundLine(p, q, Decimal(v)) for p, q, v in paid), taken)
    assert left == reversal_lines(PAID, [REFUND])
    assert [(line.product_id, line.quantity, line.price) for line in left] == [
        ("mat", 1, Decimal(10)),
        ("bottle", 2, Decimal(5)),
    ]
    assert [(e.event_id, e.transaction_id) for e in history.memory.events] == [
        ("paid:P", "P"),
        ("refunded:P:P-R1", "P-R1"),
    ]
    forgotten = ledger.prune(
        cutoff=T0, limit=100, forget_before=ledger.clock.now() + timedelta(seconds=1)
    )
    assert forgotten.orders_forgotten == 1
    assert gate(fact, ledger.order_facts("P")) is Gate.WAIT


def test_a_cancellation_after_its_order_was_pruned_takes_back_every_bonus_point(
    make_stack: type[Stack], sandbox: SandboxProcess, sqlite_url: str
) -> None:
    """End to end with a 2-second window: the order and its partial refund are delivered,
    the scheduler removes them, then the cancellation comes: it names the lines left
    (from the order's memory), so the double-points campaign is reversed too;
    `gbq reconcile` still matches all three against Gameball once all are removed, and
    `gbq prune --dry-run` has nothing left to remove."""
    sandbox.rules(campaign_multipliers={"category:mats": "2"})
    stack = make_stack(sqlite_url, GBQ_RETENTION_DAYS=str(2 / 86400))
    stack.start_worker(concurrency=1)
    stack.start_scheduler()
    stack.publisher.publish(PAID)
    wait_until(lambda: sandbox.balance("c") == 70, timeout_s=60, what="70 points earned")
    stack.publisher.publish(REFUND)
    wait_until(lambda: sandbox.balance("c") == 30, timeout_s=60, what="40 points back")
    wait_until(lambda: stack.states() == {}, timeout_s=60, what="the scheduler to prune them")
    stack.publisher.publish(
        OrderCancelled(order_id="P", customer_id="c", occurred_at=T0 + timedelta(days=3))
    )
    wait_until(lambda: sandbox.balance("c") == 0, timeout_s=60, what="everything back")
    cancel = [r for r in sandbox.requests() if r["transaction_id"] == "P-cancel"]
    assert len(cancel) == 1
    wait_until(lambda: stack.states() == {}, timeout_s=60, what="the cancellation pruned")
    reconciled = stack.gbq("reconcile", "--order", "P", "--json")
    assert reconciled.returncode == 0, reconciled.stderr
    findings = [json.loads(line) for line in reconciled.stdout.splitlines()]
    assert sorted((f["event_id"], f["transaction_id"], f["verdict"]) for f in findings) == [
        ("cancelled:P", "P-cancel", "agreed"),
        ("paid:P", "P", "agreed"),
        ("refunded:P:P-R1", "P-R1", "agreed"),
    ]
    dry = stack.gbq("prune", "--dry-run", "--older-than", "1s")
    assert dry.returncode == 0, dry.stderr
    assert re.match(r"[01] delivered event\(s\) before .+ would be removed", dry.stdout)
    kept_all = {**stack.env, "GBQ_RETENTION_DAYS": "0"}
    refused = subprocess.run(
        [*GBQ, "prune"], env=kept_all, capture_output=True, text=True, timeout=60, check=False
    )
    assert refused.returncode == 2
    assert "GBQ_RETENTION_DAYS is 0 (keep everything): pass --older-than" in refused.stderr


def test_the_migration_makes_0005s_order_memories_compact(tmp_path: Path) -> None:
    """A ledger whose memories 0005 wrote (full content) is migrated: each is rewritten
    compactly, and ordering and full reversals read the same from it."""
    url = f"sqlite:///{tmp_path}/old.db"
    engine = create_ledger_engine(url)
    try:
        migrate(engine, "0007")
        content = [
            {
                "event_id": event.event_id,
                "kind": event.kind,
                "occurred_at": event.occurred_at.isoformat(),
                "payload": event.model_dump_json(),
            }
            for event in (PAID, REFUND)
        ]
        with engine.begin() as connection:
            for number in range(3):
                connection.execute(
                    text("INSERT INTO gbq_pruned_orders VALUES (:order, :events, :at)"),
                    {"order": f"P{number}", "events": json.dumps(content), "at": T0},
                )
        migrate(engine)
        ledger = Ledger(engine)
        with engine.connect() as connection:
            stored = dict(
                connection.execute(text("SELECT order_id, events FROM gbq_pruned_orders")).all()
            )
        assert all(text_.startswith("{") for text_ in stored.values())
        assert len(stored["P0"]) * 4 < len(json.dumps(content))
        memory = ledger.order_history("P0").memory
        assert memory.paid_lines == (("mat", 3, "10"), ("bottle", 2, "5"))
        assert dict(memory.refunded) == {"mat": 2}
        assert {(f.event_id, f.state) for f in ledger.order_facts("P2")} == {
            ("paid:P", "delivered"),
            ("refunded:P:P-R1", "delivered"),
        }
    finally:
        engine.dispose()
