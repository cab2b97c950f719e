"""The operator's repair loop, end to end: a dead letter is exported, corrected, put back
in place of the dead one under its id, and delivered; attempt numbers continue; nothing
known is queued twice."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from harness.processes import SandboxProcess
from harness.stack import Stack
from producers.events import OrderPaid
from worker.ledger.core import AttemptRecord, new_event
from worker.rules.outcomes import Outcome, OutcomeKind, Reason
from worker.rules.retry import Transition
from worker.rules.states import DeadReason, EventState

pytestmark = pytest.mark.integration
T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def paid(order_id: str, total: int) -> OrderPaid:
    return OrderPaid(
        order_id=order_id,
        customer_id="c-fix",
        occurred_at=T0,
        total_price=Decimal(total),
        total_paid=Decimal(total),
    )


def test_a_dead_letter_is_corrected_replaced_and_delivered(
    make_stack: type[Stack], sandbox: SandboxProcess, database_url: str, tmp_path: Path
) -> None:
    """Gameball refuses an order (code 7): it is dead. Publishing the corrected event
    again is refused ("already known (dead)"), as the worker would keep the first content;
    `gbq dlq export --events`, corrected, then `gbq publish --replace` puts it in place:
    delivered with the corrected amount, its first attempt kept in the history (#1 dead,
    #2 delivered). A delivered event cannot be replaced."""
    stack = make_stack(database_url)
    stack.start_worker(concurrency=1)
    stack.start_scheduler()
    sandbox.faults(reject_count=1, reject_code=7)
    stack.publisher.publish(paid("FIX-1", 10))
    assert stack.wait_settled(1) == {"dead": 1}

    exported = tmp_path / "dead.jsonl"
    assert stack.gbq("dlq", "export", "--events", "-o", str(exported)).returncode == 0
    [event] = [json.loads(line) for line in exported.read_text().splitlines()]
    assert event == json.loads(paid("FIX-1", 10).model_dump_json())  # only the event
    event["total_price"] = event["total_paid"] = "12"
    fixed = tmp_path / "fixed.jsonl"
    fixed.write_text(json.dumps(event) + "\n")

    again = stack.gbq("publish", str(fixed))
    assert again.returncode == 1
    assert "paid:FIX-1: already known (dead), not re-queued" in again.stderr
    assert "already known 1" in again.stdout
    assert stack.gbq("publish", "--known-ok", str(fixed)).returncode == 0
    assert stack.event("paid:FIX-1").state == "dead"  # nothing was queued

    replaced = stack.gbq("publish", "--replace", str(fixed))
    assert replaced.returncode == 0, replaced.stderr
    assert "replaced 1" in replaced.stdout
    assert stack.wait_settled(1) == {"delivered": 1}
    assert sandbox.balance("c-fix") == 12
    attempts = stack.ledger.attempts_of("paid:FIX-1")
    assert [(a.attempt_no, a.outcome) for a in attempts] == [(1, "dead"), (2, "delivered")]
    assert json.loads(stack.event("paid:FIX-1").payload)["total_paid"] == "12"

    late = stack.gbq("dlq", "retry", "--replace", str(fixed))
    assert late.returncode == 1
    assert "paid:FIX-1: already known (delivered), not replaced" in late.stderr


def test_retries_number_their_attempts_after_the_earlier_ones(
    make_stack: type[Stack], sandbox: SandboxProcess, sqlite_url: str
) -> None:
    """Dead twice, retried twice: attempts #1, #2, #3, each retry with a fresh budget."""
    stack = make_stack(sqlite_url)
    stack.start_worker(concurrency=1)
    stack.start_scheduler()
    sandbox.faults(reject_count=2, reject_code=7)
    stack.publisher.publish(paid("TWICE", 5))
    assert stack.wait_settled(1) == {"dead": 1}
    assert stack.gbq("dlq", "retry", "paid:TWICE").returncode == 0
    wait_dead_again = stack.wait_settled(1)
    assert wait_dead_again == {"dead": 1}
    assert stack.gbq("dlq", "retry", "paid:TWICE").returncode == 0
    assert stack.wait_settled(1) == {"delivered": 1}
    numbers = [a.attempt_no for a in stack.ledger.attempts_of("paid:TWICE")]
    assert numbers == [1, 2, 3]
    assert sandbox.balance("c-fix") == 5


def test_an_export_line_with_its_metadata_is_read_as_its_event(
    make_stack: type[Stack], sandbox: SandboxProcess, sqlite_url: str, tmp_path: Path
) -> None:
    """`gbq dlq export` (with why each died) is also accepted by `gbq dlq retry --replace`."""
    stack = make_stack(sqlite_url)
    stack.start_worker(concurrency=1)
    stack.start_scheduler()
    sandbox.faults(reject_count=1, reject_code=7)
    stack.publisher.publish(paid("META", 3))
    assert stack.wait_settled(1) == {"dead": 1}
    exported = tmp_path / "dead.jsonl"
    assert stack.gbq("dlq", "export", "-o", str(exported)).returncode == 0
    line = json.loads(exported.read_text())
    assert line["reason"] == "rejected"
    line["event"]["total_price"] = line["event"]["total_paid"] = "4"
    exported.write_text(json.dumps(line) + "\n")
    done = stack.gbq("dlq", "retry", "--replace", str(exported))
    assert done.returncode == 0, done.stderr
    assert "replaced and retried 1 dead letter(s)" in done.stdout
    assert stack.wait_settled(1) == {"delivered": 1}
    assert sandbox.balance("c-fix") == 4


def test_a_304_dead_letter_from_an_older_gbq_is_retried_and_delivered(
    make_stack: type[Stack], sandbox: SandboxProcess, sqlite_url: str
) -> None:
    """The troubleshooting row: dead letters with code 304 (an older gbq dead-lettered
    them) are retried with `gbq dlq retry --all --code 304` and delivered."""
    stack = make_stack(sqlite_url)
    event = paid("OLD-304", 6)
    died = datetime.now(UTC)
    stack.ledger.ingest([new_event(event, None)], died)
    stack.ledger.claim(event.event_id, "old", died, died + timedelta(seconds=60))
    outcome = Outcome(
        OutcomeKind.DEAD, Reason.REJECTED, "Transaction Time Already Exists", 422, 304
    )
    stack.ledger.record_attempt(
        event.event_id,
        "old",
        AttemptRecord(1, "old", died, 0.01, outcome),
        Transition(EventState.DEAD, dead_reason=DeadReason.REJECTED),
        died,
    )
    stack.start_worker(concurrency=1)
    stack.start_scheduler()
    listed = stack.gbq("dlq", "list", "--code", "304", "--jsonl")
    assert [json.loads(line)["event_id"] for line in listed.stdout.splitlines()] == ["paid:OLD-304"]
    retried = stack.gbq("dlq", "retry", "--all", "--code", "304")
    assert retried.returncode == 0, retried.stderr
    assert stack.wait_settled(1) == {"delivered": 1}
    assert [a.attempt_no for a in stack.ledger.attempts_of("paid:OLD-304")] == [1, 2]
    assert sandbox.balance("c-fix") == 6
