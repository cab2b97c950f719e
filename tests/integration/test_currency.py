"""A refund in another currency than its order's is not sent blind: Gameball converts
nothing and would take 100 EUR as 100 of the order's USD. Dead with a reason of its own
(``currency``), for the operator, while the order's own-currency refunds go on; the order's
currency is remembered after retention removed its paid event."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from harness.processes import SandboxProcess
from producers.events import OrderPaid, OrderRefunded
from tests.driving import deliver, runtime_for
from worker.ledger.deadletters import DeadFilter, DeadLetters
from worker.process.runtime import Runtime

pytestmark = pytest.mark.integration
T0 = datetime(2026, 11, 21, 9, 0, tzinfo=UTC)


@pytest.fixture
def worker(
    sandbox: SandboxProcess, redis_url: str, database_url: str, tmp_path: Path
) -> Iterator[Runtime]:
    runtime = runtime_for(sandbox, redis_url, database_url, tmp_path)
    yield runtime
    runtime.close()


def refund(refund_id: str, currency: str, minutes: int) -> OrderRefunded:
    return OrderRefunded(
        order_id="FX-1",
        refund_id=refund_id,
        customer_id="fx",
        occurred_at=T0 + timedelta(minutes=minutes),
        currency=currency,
        amount=Decimal(10),
    )


def test_a_refund_in_another_currency_is_dead_with_its_own_reason_and_never_sent(
    worker: Runtime, sandbox: SandboxProcess
) -> None:
    paid = OrderPaid(
        order_id="FX-1",
        customer_id="fx",
        occurred_at=T0,
        currency="USD",
        total_price=Decimal(100),
        total_paid=Decimal(100),
    )
    assert deliver(worker, paid) == "delivered"
    assert deliver(worker, refund("FX-1-EUR", "EUR", 1)) == "dead"
    assert deliver(worker, refund("FX-1-USD", "USD", 2)) == "delivered"
    assert sandbox.balance("fx") == 100 - 10  # only the refund in the order's currency
    sent = [row["transaction_id"] for row in sandbox.requests()]
    assert "FX-1-EUR" not in sent
    [letter] = DeadLetters(worker.ledger).find(DeadFilter(reason="currency"))
    assert letter.event_id == "refunded:FX-1:FX-1-EUR"
    assert letter.last_message is not None
    assert "EUR" in letter.last_message
    assert "paid in USD" in letter.last_message
