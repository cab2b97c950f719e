"""A ledger outage while messages flow: one warning per worker process, not a traceback
per message, and everything delivered once the ledger is back."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from sqlalchemy.engine import make_url

from harness.processes import SandboxProcess, wait_until
from harness.stack import Stack
from producers.events import OrderPaid
from tests.proxy import Proxy

pytestmark = pytest.mark.integration
EVENTS = 60


@pytest.fixture
def postgres_url(database_url: str) -> str:
    if not database_url.startswith("postgresql"):
        pytest.skip("the outage is a PostgreSQL server going away (a proxy is cut)")
    return database_url


def test_a_ledger_outage_is_one_warning_per_worker_process_and_loses_nothing(
    make_stack: type[Stack], sandbox: SandboxProcess, postgres_url: str
) -> None:
    # Given: a worker and a scheduler that reach PostgreSQL through a proxy
    url = make_url(postgres_url)
    proxy = Proxy(url.port or 5432, url.host or "127.0.0.1")
    through = url.set(port=proxy.port).render_as_string(hide_password=False)
    stack = make_stack(through)
    worker = stack.start_worker(concurrency=2)
    stack.start_scheduler()
    wait_until(lambda: "ready" in worker.output(), timeout_s=60, what="the worker")
    # When the ledger goes away while events are published
    proxy.cut()
    for number in range(EVENTS):
        stack.publisher.publish(
            OrderPaid(
                order_id=f"OUT-{number}",
                customer_id=f"out-{number}",
                occurred_at=datetime.now(UTC) - timedelta(minutes=1),
                total_price=Decimal(2),
                total_paid=Decimal(2),
            )
        )
    wait_until(
        lambda: worker.output().count("succeeded") >= EVENTS,
        timeout_s=60,
        what="every message to meet the outage",
    )
    proxy.restore()
    # Then
    assert stack.wait_settled(EVENTS, timeout_s=120) == {"delivered": EVENTS}
    log = worker.output()
    assert 1 <= log.count("the ledger unavailable") <= 2  # one per pool process
    assert "Traceback" not in log
    assert "the ledger available again" in log
    assert [sandbox.balance(f"out-{number}") for number in range(EVENTS)] == [2] * EVENTS
