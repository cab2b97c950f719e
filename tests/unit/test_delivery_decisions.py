"""The delivery path's decisions, with its collaborators faked (tests/fakes.py) and a real
SQLite ledger: what is sent, what is held back, and the state each answer leaves."""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.services import sqlite_ledger
from producers.events import Event
from tests.factories import paid, refund
from tests.fakes import FixedBreaker, FixedPermits, MemoryQueue, ScriptedGameball, answer
from worker.flows.delivery import BREAKER_DEFERRAL, Deliverer
from worker.gameball.versions import ApiVersion
from worker.ledger.engine import create_ledger_engine
from worker.ledger.repository import Ledger
from worker.rules.breaker import Signal, State
from worker.rules.outcomes import OutcomeKind, Reason
from worker.rules.retry import RetryPolicy

POLICY = RetryPolicy(base_s=1, cap_s=600, window_s=72 * 3600, pause_delay_s=30)


@pytest.fixture
def ledger(tmp_path: Path) -> Iterator[Ledger]:
    ledger = Ledger(create_ledger_engine(sqlite_ledger(tmp_path)))
    yield ledger
    ledger.engine.dispose()


def deliverer(
    ledger: Ledger,
    gameball: ScriptedGameball | None = None,
    *,
    breaker: FixedBreaker | None = None,
    permits: FixedPermits | None = None,
    version: ApiVersion = "v4.1",
) -> Deliverer:
    return Deliverer(
        ledger=ledger,
        gameball=gameball or ScriptedGameball(),
        queue=MemoryQueue(),
        breaker=breaker or FixedBreaker(),
        limiter=permits or FixedPermits(),
        owner="w-test",
        policy=POLICY,
        lease_s=60,
        recheck_s=30,
        api_version=version,
        v3_refund_lines=True,
        refund_time="original",
        refund_at_paid="full",
        max_token_wait_s=2.0,
        rng=random.Random(0),
    )


def hand(worker: Deliverer, event: Event) -> str:
    return worker.handle((), {"event_id": event.event_id, "event": event.model_dump(mode="json")})


def test_an_accepted_order_is_delivered_after_one_call(ledger: Ledger) -> None:
    gameball, breaker = ScriptedGameball(), FixedBreaker()
    assert hand(deliverer(ledger, gameball, breaker=breaker), paid("D-1")) == "delivered"
    assert [request.method for request in gameball.sent] == ["POST"]
    assert breaker.observed == [Signal.SUCCESS]
    row = ledger.get("paid:D-1")
    assert row is not None
    assert (row.state, row.attempts) == ("delivered", 1)


def test_an_open_breaker_defers_without_a_call_or_an_attempt(ledger: Ledger) -> None:
    gameball = ScriptedGameball()
    worker = deliverer(ledger, gameball, breaker=FixedBreaker(State.OPEN, wait_s=4.2))
    assert hand(worker, paid("D-2")) == "deferred"
    row = ledger.get("paid:D-2")
    assert row is not None
    assert (row.state, row.attempts, row.last_outcome) == ("scheduled", 0, BREAKER_DEFERRAL)
    assert row.next_attempt_at is not None
    assert row.next_attempt_at.microsecond == 0  # one cool-down's deferrals share a second
    assert gameball.sent == []


def test_no_permit_defers_without_spending_an_attempt(ledger: Ledger) -> None:
    gameball = ScriptedGameball()
    worker = deliverer(ledger, gameball, permits=FixedPermits(allowed=False, wait_s=3))
    assert hand(worker, paid("D-3")) == "deferred"
    row = ledger.get("paid:D-3")
    assert row is not None
    assert (row.state, row.attempts, row.last_outcome) == ("scheduled", 0, "rate_limited")
    assert gameball.sent == []


def test_a_server_error_is_retried_later_and_counts_as_a_failure(ledger: Ledger) -> None:
    gameball = ScriptedGameball([answer(OutcomeKind.RETRY, Reason.SERVER_ERROR, 503)])
    breaker = FixedBreaker()
    assert hand(deliverer(ledger, gameball, breaker=breaker), paid("D-4")) == "scheduled"
    assert breaker.observed == [Signal.FAILURE]
    row = ledger.get("paid:D-4")
    assert row is not None
    assert (row.state, row.attempts, row.last_outcome) == ("scheduled", 1, "server_error")


def test_a_bad_key_pauses_without_spending_the_budget(ledger: Ledger) -> None:
    gameball = ScriptedGameball([answer(OutcomeKind.PAUSED, Reason.UNAUTHORIZED, 401)])
    breaker = FixedBreaker()
    assert hand(deliverer(ledger, gameball, breaker=breaker), paid("D-5")) == "scheduled"
    assert breaker.observed == [Signal.PAUSE]
    row = ledger.get("paid:D-5")
    assert row is not None
    assert row.window_credit_s == POLICY.pause_delay_s  # the pause is credited back


def test_a_refund_before_its_order_waits_and_is_not_sent(ledger: Ledger) -> None:
    gameball = ScriptedGameball()
    assert hand(deliverer(ledger, gameball), refund("D-6")) == "waiting"
    assert gameball.sent == []


def _customer_list(transaction_id: str, customer: str) -> tuple[int, object]:
    row = {"transactionId": transaction_id, "type": "Order", "points": 10}
    return 200, {"transactions": [row], "count": 1, "hasMore": False, "customerId": customer}


@pytest.mark.parametrize(
    ("held_by", "state", "reason"),
    [
        ("D-7", "delivered", "already_applied"),  # ours: applied by a lost attempt
        ("another-id", "dead", "rejected"),  # the id is another transaction's
    ],
)
def test_id_taken_is_settled_by_gameballs_records(
    ledger: Ledger, held_by: str, state: str, reason: str
) -> None:
    """305/9004 is unsettled until the customer's transactions say whose the id is."""
    gameball = ScriptedGameball(
        [answer(OutcomeKind.UNSETTLED, Reason.ID_TAKEN, 422, 9004)],
        reads=lambda _path: _customer_list(held_by, "cust-D-7"),
    )
    assert hand(deliverer(ledger, gameball), paid("D-7")) == state
    assert any("/transactions?customerId=cust-D-7" in path for path in gameball.read_paths)
    row = ledger.get("paid:D-7")
    assert row is not None
    assert row.last_outcome == reason


def test_time_taken_by_another_transaction_moves_the_time_and_retries(ledger: Ledger) -> None:
    gameball = ScriptedGameball(
        [answer(OutcomeKind.UNSETTLED, Reason.TIME_TAKEN, 422, 9003)],
        reads=lambda _path: _customer_list("someone-else", "cust-D-8"),
    )
    worker = deliverer(ledger, gameball)
    assert hand(worker, paid("D-8")) == "scheduled"
    before = gameball.sent[0].json()["orderDate"]
    row = ledger.get("paid:D-8")
    assert row is not None
    assert row.last_outcome == "transient_rejection"
    ledger.wake_deferred("transient_rejection", ledger.clock.now())  # due now, for the test
    assert hand(worker, paid("D-8")) == "delivered"
    assert gameball.sent[1].json()["orderDate"] > before  # a millisecond later
