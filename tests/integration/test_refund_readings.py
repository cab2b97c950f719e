"""Where Gameball's own pages disagree, a setting chooses, defaulting to the OpenAPI
(docs/gameball-contract.md, open questions): a refund's transactionTime (the original
transaction's, or the refund's own), and a refund of exactly the order's total paid (a
full refund, or a partial one of that value). Real Deliverer, ledger, Redis, sandbox."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from harness.processes import SandboxProcess
from producers.events import OrderPaid, OrderRefunded, Redemption
from tests.driving import deliver, runtime_for
from worker.process.runtime import Runtime

pytestmark = pytest.mark.integration
T0 = datetime(2026, 11, 22, 9, 0, 0, 250_000, tzinfo=UTC)


@pytest.fixture
def start(
    sandbox: SandboxProcess, redis_url: str, database_url: str, tmp_path: Path
) -> Iterator[type[Runtime]]:
    started: list[Runtime] = []

    def runtime(**overrides: object) -> Runtime:
        started.append(runtime_for(sandbox, redis_url, database_url, tmp_path, **overrides))
        return started[-1]

    yield runtime  # type: ignore[misc]
    for runtime_ in started:
        runtime_.close()


def refund(refund_id: str, amount: str, order: str = "RT-1", minutes: int = 30) -> OrderRefunded:
    return OrderRefunded(
        order_id=order,
        refund_id=refund_id,
        customer_id="timer",
        occurred_at=T0 + timedelta(minutes=minutes),
        amount=Decimal(amount),
    )


@pytest.mark.parametrize(
    ("reading", "expected"),
    [
        ("original", [T0.replace(microsecond=251_000), T0.replace(microsecond=252_000)]),
        ("refund", [T0 + timedelta(minutes=30), T0 + timedelta(minutes=31)]),
    ],
)
def test_a_refunds_transaction_time_follows_the_setting(
    start: type[Runtime], sandbox: SandboxProcess, reading: str, expected: list[datetime]
) -> None:
    """The OpenAPI: "the timestamp of the original transaction" (the first instants after
    the order's that the customer has free); the refund tutorial: the refund's own."""
    worker = start(gameball_refund_time=reading)  # type: ignore[call-arg]
    paid = OrderPaid(
        order_id="RT-1",
        customer_id="timer",
        occurred_at=T0,
        total_price=Decimal(50),
        total_paid=Decimal(50),
    )
    assert deliver(worker, paid) == "delivered"
    for event in (refund("RT-1-R1", "5"), refund("RT-1-R2", "5", minutes=31)):
        assert deliver(worker, event) == "delivered"
    times = [worker.ledger.get(f"refunded:RT-1:RT-1-R{n}") for n in (1, 2)]
    assert [row.transaction_time for row in times if row] == expected
    assert sandbox.balance("timer") == 50 - 10


@pytest.mark.parametrize(("reading", "left"), [("full", 100), ("value", 60)])
def test_a_refund_of_the_whole_paid_total_follows_the_setting(
    start: type[Runtime], sandbox: SandboxProcess, reading: str, left: int
) -> None:
    """A customer with 100 points buys for 100, paying 60 in money and 40 in points (120
    after: 60 earned), then a refund of 60 (the total paid). full (the OpenAPI:
    refundAmount equal to the total paid is a full refund): sent as a full refund, the 60
    earned go and the 40 spent come back: 100, where the customer started. value
    (how-refunds-work.mdx's arithmetic, the sandbox reading it so too): a refund worth 60
    takes back the 60 earned and returns no points: 60."""
    sandbox.rules(full_refund_at_paid=reading == "full")
    worker = start(gameball_refund_at_paid=reading, gameball_api_version="v4.1")  # type: ignore[call-arg]
    saved = OrderPaid(
        order_id="SAVE",
        customer_id="timer",
        occurred_at=T0 - timedelta(days=1),
        total_price=Decimal(100),
        total_paid=Decimal(100),
    )
    assert deliver(worker, saved) == "delivered"
    mixed = OrderPaid(
        order_id="MIX",
        customer_id="timer",
        occurred_at=T0,
        total_price=Decimal(100),
        total_discount=Decimal(40),
        total_paid=Decimal(60),
        redemption=Redemption(points_hold_reference=sandbox.hold("v4.1", "timer", 40)),
    )
    assert deliver(worker, mixed) == "delivered"
    assert sandbox.balance("timer") == 100 - 40 + 60
    assert deliver(worker, refund("MIX-R1", "60", order="MIX")) == "delivered"
    assert sandbox.balance("timer") == left
    sent = [r for r in sandbox.requests() if r["transaction_id"] == "MIX-R1"]
    assert len(sent) == 1
