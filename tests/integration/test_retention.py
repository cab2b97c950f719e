"""Retention: delivered events leave the ledger after their window (archived first when
asked), dead letters stay, and ordering and full reversals still know what was removed."""

from __future__ import annotations

import json
import re
import subprocess
import threading
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import text

from harness.processes import GBQ, SandboxProcess, wait_until
from harness.stack import Stack
from producers.events import (
    CashbackAwarded,
    Event,
    LineItem,
    OrderCancelled,
    OrderPaid,
    OrderRefunded,
)
from worker.gameball.payloads import RefundLine, lines_left, reversal_lines
from worker.ledger.core import AttemptRecord, new_event
from worker.ledger.engine import create_ledger_engine
from worker.ledger.order_memory import reversal_basis
from worker.ledger.repository import Ledger
from worker.ledger.retention import ArchiveAppend, RemovedBatch, memories
from worker.ledger.schema import migrate
from worker.rules.ordering import Gate, OrderFact, gate
from worker.rules.outcomes import Outcome, OutcomeKind, Reason
from worker.rules.retry import Transition
from worker.rules.states import DeadReason, EventState

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
    [day] = list(archive.glob("gbq-archive-*.jsonl"))
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


def _interleaved_orders(ledger: Ledger, orders: int) -> dict[str, set[str]]:
    """``orders`` orders of a paid event and three refunds, all delivered at T0, the events
    of two orders at a time in turn: a batch of two holds the same step of both orders,
    so four pruners at once hold four steps of the same two orders."""
    expected: dict[str, set[str]] = {}
    at = T0
    for pair in range(0, orders, 2):
        names = [f"O{pair}", f"O{pair + 1}"]
        steps: list[list[Event]] = [[], [], [], []]
        for name in names:
            steps[0].append(PAID.model_copy(update={"order_id": name}))
            for number in (1, 2, 3):
                steps[number].append(
                    REFUND.model_copy(
                        update={
                            "order_id": name,
                            "refund_id": f"{name}-R{number}",
                            "line_items": (),
                            "amount": Decimal(1),
                            "occurred_at": T0 + timedelta(minutes=number),
                        }
                    )
                )
        for step in steps:
            for event in step:
                at += timedelta(milliseconds=10)
                settle(ledger, event, at, EventState.DELIVERED)
                expected.setdefault(event.order_id, set()).add(event.event_id)
    return expected


def test_any_number_of_pruners_at_once_neither_fail_nor_archive_twice_nor_forget(
    database_url: str, tmp_path: Path
) -> None:
    """Four pruners (the scheduler's sweep, operators' ``gbq prune``) removing events of
    the same orders at the same time: none fails, every removed event is archived exactly
    once, and every order's memory holds all four of its events."""
    setup = Ledger(create_ledger_engine(database_url))
    expected = _interleaved_orders(setup, 24)
    total = sum(len(ids) for ids in expected.values())
    cutoff, archive = T0 + timedelta(days=30), tmp_path / "archive"
    start, failures, removed = threading.Barrier(4), [], []

    def prune() -> None:
        ledger = Ledger(create_ledger_engine(database_url))
        try:
            start.wait()
            while True:
                result = ledger.prune(cutoff=cutoff, limit=2, archive_dir=archive)
                removed.append(result.events)
                if result.events == 0 and ledger.count_prunable(cutoff) == 0:
                    return
        except Exception as error:  # noqa: BLE001 - what a pruner raised is the finding
            failures.append(error)
        finally:
            ledger.engine.dispose()

    pruners = [threading.Thread(target=prune) for _ in range(4)]
    for pruner in pruners:
        pruner.start()
    for pruner in pruners:
        pruner.join(timeout=120)
    assert failures == []
    assert sum(removed) == total
    lines = [
        json.loads(line)["event_id"]
        for path in archive.glob("gbq-archive-*.jsonl")
        for line in path.read_text().splitlines()
    ]
    assert len(lines) == len(set(lines)) == total
    with setup.engine.connect() as connection:
        remembered = memories(connection, expected)
    assert {order: {e.event_id for e in memory.events} for order, memory in remembered.items()} == (
        expected
    )
    setup.engine.dispose()


def test_a_batch_whose_commit_fails_takes_its_archive_lines_back(
    ledger: Ledger, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Lines written for a batch that is then rolled back are removed again: the next
    batch archives those events once, not twice."""
    for event in (PAID, REFUND):
        settle(ledger, event, T0, EventState.DELIVERED)
    cutoff, archive = T0 + timedelta(days=30), tmp_path / "archive"
    written = ArchiveAppend.write

    def write_then_fail(self: ArchiveAppend, batch: RemovedBatch) -> int:
        written(self, batch)
        raise ConnectionError("the ledger went away before the commit")

    monkeypatch.setattr(ArchiveAppend, "write", write_then_fail)
    with pytest.raises(ConnectionError):
        ledger.prune(cutoff=cutoff, limit=10, archive_dir=archive)
    assert ledger.count_prunable(cutoff) == 2
    assert all(path.stat().st_size == 0 for path in archive.glob("gbq-archive-*.jsonl"))
    monkeypatch.setattr(ArchiveAppend, "write", written)
    assert ledger.prune(cutoff=cutoff, limit=10, archive_dir=archive).archived == 2
    [day] = archive.glob("gbq-archive-*.jsonl")
    assert sorted(json.loads(line)["event_id"] for line in day.read_text().splitlines()) == [
        "paid:P",
        "refunded:P:P-R1",
    ]


def test_the_scheduler_and_two_gbq_prunes_at_once_on_every_redis_form(
    make_stack: type[Stack], database_url: str, any_redis_url: str, tmp_path: Path
) -> None:
    """Real processes: the scheduler's retention sweep and two ``gbq prune`` racing over
    the same orders, on TCP, unix-socket and TLS Redis and both ledgers: every command
    succeeds, each event is archived once and each order remembers all its events."""
    archive = tmp_path / "archive"
    stack = make_stack(
        database_url,
        redis=any_redis_url,
        GBQ_RETENTION_DAYS="30",
        GBQ_SCHEDULER_BATCH="2",
        GBQ_ARCHIVE_DIR=str(archive),
    )
    expected = _interleaved_orders(stack.ledger, 40)
    total = sum(len(ids) for ids in expected.values())
    stack.start_scheduler()
    prunes = [
        subprocess.Popen(
            [*GBQ, "prune", "--batch", "2"],
            env=stack.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    for prune in prunes:
        _, err = prune.communicate(timeout=120)
        assert prune.returncode == 0, err
        assert "Traceback" not in err
    wait_until(
        lambda: stack.ledger.count_prunable(T0 + timedelta(days=30)) == 0,
        timeout_s=60,
        what="every old event pruned",
    )
    lines = [
        json.loads(line)["event_id"]
        for path in archive.glob("gbq-archive-*.jsonl")
        for line in path.read_text().splitlines()
    ]
    assert len(lines) == len(set(lines)) == total
    with stack.ledger.engine.connect() as connection:
        remembered = memories(connection, expected)
    assert {order: {e.event_id for e in memory.events} for order, memory in remembered.items()} == (
        expected
    )
    assert "failed" not in stack.processes[0].output()
