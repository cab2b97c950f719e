"""An order's redeemed points reach Gameball the documented way and are never dropped:
v4 holds a redeemed amount before the order names it, an expired hold is held again when
its value is known, and otherwise (or when the customer is short of points) the
redemption is parked for the operator while the order, its cashback and its refunds go
on. Real Deliverer, ledger, Redis and sandbox; exact wallet balances."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from harness.processes import SandboxProcess
from producers.events import OrderPaid, OrderRefunded, Redemption
from tests.driving import deliver, runtime_for
from worker.flows.redeeming import PointsCourier
from worker.gameball.client import Attempt
from worker.gameball.payloads import GameballRequest
from worker.ledger.core import Claimed
from worker.ledger.engine import create_ledger_engine
from worker.ledger.redemptions import Redemptions
from worker.ledger.repository import Ledger
from worker.process.runtime import Runtime
from worker.rules.outcomes import Outcome, OutcomeKind, Reason
from worker.rules.states import EventState

pytestmark = pytest.mark.integration
T0 = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)


@pytest.fixture(params=["v4.1", "v3.0"])
def version(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def worker(
    sandbox: SandboxProcess, redis_url: str, database_url: str, tmp_path: Path, version: str
) -> Iterator[Runtime]:
    runtime = runtime_for(sandbox, redis_url, database_url, tmp_path, gameball_api_version=version)
    yield runtime
    runtime.close()


def order(order_id: str, customer: str, minutes: int, redemption: Redemption) -> OrderPaid:
    """100 in all: 60 paid in money, 40 in points."""
    return OrderPaid(
        order_id=order_id,
        customer_id=customer,
        occurred_at=T0 + timedelta(minutes=minutes),
        total_price=Decimal(100),
        total_paid=Decimal(60),
        total_discount=Decimal(40),
        redemption=redemption,
    )


def saved(worker: Runtime, customer: str) -> None:
    """The customer earns 100 points first (an order paid 100 in money)."""
    first = OrderPaid(
        order_id=f"{customer}-SAVED",
        customer_id=customer,
        occurred_at=T0,
        total_price=Decimal(100),
        total_paid=Decimal(100),
    )
    assert deliver(worker, first) == "delivered"


def calls(sandbox: SandboxProcess, customer: str) -> list[tuple[str, int | None]]:
    """(last path segment, code) of the customer's calls, in order."""
    return [
        (row["path"].rstrip("/").rsplit("/", 1)[-1], row["code"])
        for row in sandbox.requests()
        if row["player"] == customer
    ]


def test_a_redeemed_amount_is_held_then_named_and_refunds_return_it(
    worker: Runtime, sandbox: SandboxProcess, version: str
) -> None:
    """Gameball's how-refunds-work.mdx example with the points given as an amount: v4
    holds 40 first and the order names the hold (v3 sends redeemedAmount); 60 earned,
    40 spent; a refund of 80 takes the 60 back and returns 20 points."""
    saved(worker, "amount")
    redeeming = order("AMOUNT-1", "amount", 5, Redemption(redeemed_amount=Decimal(40)))
    assert deliver(worker, redeeming) == "delivered"
    assert sandbox.balance("amount") == 100 - 40 + 60
    sent = calls(sandbox, "amount")[1:]
    assert sent == ([("hold", None), ("orders", None)] if version != "v3.0" else [("order", None)])
    back = OrderRefunded(
        order_id="AMOUNT-1",
        refund_id="AMOUNT-1-R",
        customer_id="amount",
        occurred_at=T0 + timedelta(minutes=6),
        amount=Decimal(80),
    )
    assert deliver(worker, back) == "delivered"
    assert sandbox.balance("amount") == 120 - 60 + 20


def test_an_expired_hold_with_its_value_known_is_redeemed_again(
    worker: Runtime, sandbox: SandboxProcess, version: str
) -> None:
    """The checkout's hold expired before the order reached Gameball (an outage longer
    than the hold's lifetime): 9006 / 307, then gbq holds the value again (v4) or sends
    it as redeemedAmount (v3): the order is delivered and the points spent exactly once."""
    saved(worker, "expired")
    reference = sandbox.hold(version, "expired", 40)
    sandbox.release(version, reference)
    assert sandbox.balance("expired") == 100  # the points are back with the customer
    redemption = Redemption(points_hold_reference=reference, redeemed_amount=Decimal(40))
    assert deliver(worker, order("EXPIRED-1", "expired", 5, redemption)) == "delivered"
    assert sandbox.balance("expired") == 100 - 40 + 60
    gone = 9006 if version != "v3.0" else 307
    path = "orders" if version != "v3.0" else "order"
    names = [c for c in calls(sandbox, "expired") if c[0] != "hold"]
    assert names[1:] == [(path, gone), (path, None)]
    assert Redemptions(worker.ledger).listed() == []


def test_an_expired_hold_of_unknown_value_is_parked_and_the_order_delivered(
    worker: Runtime, sandbox: SandboxProcess, version: str
) -> None:
    """No value to hold again: the order goes without its redemption (its cashback and
    refunds are not lost) and the redemption is parked for the operator, with its own
    reason; the customer keeps the points until the operator settles them."""
    saved(worker, "unknown")
    reference = sandbox.hold(version, "unknown", 40)
    sandbox.release(version, reference)
    paid = order("UNKNOWN-1", "unknown", 5, Redemption(points_hold_reference=reference))
    assert deliver(worker, paid) == "delivered"
    assert sandbox.balance("unknown") == 100 + 60
    [parked] = Redemptions(worker.ledger).listed()
    assert (parked.order_id, parked.reason, parked.hold_reference, parked.amount) == (
        "UNKNOWN-1",
        "hold_expired",
        reference,
        None,
    )
    row = worker.ledger.get(paid.event_id)
    assert row is not None
    assert row.state == EventState.DELIVERED
    refund = OrderRefunded(
        order_id="UNKNOWN-1",
        refund_id="UNKNOWN-1-R",
        customer_id="unknown",
        occurred_at=T0 + timedelta(minutes=6),
        amount=Decimal(30),
    )
    assert deliver(worker, refund) == "delivered"  # the order is there to refund
    assert sandbox.balance("unknown") == 160 - 30


def test_a_customer_short_of_points_parks_the_redemption_not_the_order(
    worker: Runtime, sandbox: SandboxProcess, version: str
) -> None:
    """v4 must hold the amount; the customer has no points (9008): the redemption is
    parked (points_short) and the order delivered in the same attempt. v3 sends the
    amount with the order, which Gameball refuses as a whole (309): then the order goes
    again without it."""
    paid = order("SHORT-1", "short", 5, Redemption(redeemed_amount=Decimal(40)))
    assert deliver(worker, paid) == "delivered"
    assert sandbox.balance("short") == 60
    [parked] = Redemptions(worker.ledger).listed()
    assert (parked.reason, parked.amount) == ("points_short", "40")
    assert Redemptions(worker.ledger).resolve("SHORT-1", "settled by hand", T0) == 1
    assert Redemptions(worker.ledger).listed() == []
    assert Redemptions(worker.ledger).unresolved() == 0


def test_a_hold_answered_without_a_reference_is_tried_again_never_counted_delivered(
    sqlite_url: str,
) -> None:
    """A 2xx to the hold that names no holdReference: the order was not sent, so the
    attempt is a retry (counting the hold's "accepted" as the order's would lose it)."""
    ledger = Ledger(create_ledger_engine(sqlite_url))

    class Gameball:
        def send(self, request: GameballRequest) -> Attempt:
            assert request.call == "hold"
            return Attempt(Outcome(OutcomeKind.DELIVERED, Reason.ACCEPTED, "accepted"), 0.01, {})

    class Limits:
        def acquire(self, max_wait_s: float, bucket: str = "orders") -> tuple[bool, float]:
            return True, 0.0

        def penalize(self, now_us: int | None = None, bucket: str = "orders") -> None:
            raise AssertionError("no 429 here")

    courier = PointsCourier(
        redemptions=Redemptions(ledger),
        gameball=Gameball(),
        limiter=Limits(),  # type: ignore[arg-type]
        owner="w",
        api_version="v4.1",
        max_wait_s=0.0,
        clock=lambda: T0,
    )
    paid = order("NOREF-1", "noref", 5, Redemption(redeemed_amount=Decimal(40)))
    assert paid.redemption is not None
    claimed = Claimed(paid.event_id, "paid", paid.order_id, "{}", T0, 0, None, 0.0)
    prepared = courier.prepare(claimed, paid, paid.redemption)
    assert prepared.points is None
    assert prepared.hold_attempt is not None
    assert prepared.hold_attempt.outcome.kind is OutcomeKind.RETRY
    assert "names no hold" in prepared.hold_attempt.outcome.message
