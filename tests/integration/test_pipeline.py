"""The whole pipeline: publish → Redis → Celery worker → ledger → sandbox (DESIGN §1)."""

from __future__ import annotations

import pytest

from tests.processes import SandboxProcess
from tests.scenario import generate, wallets
from tests.stack import Stack

pytestmark = pytest.mark.integration


def test_500_events_across_100_orders_are_delivered_exactly(
    make_stack: type[Stack], sandbox: SandboxProcess, database_url: str
) -> None:
    """Every event delivered; every wallet equals the balance computed from the events."""
    # Given a running worker and scheduler
    scenario = generate(seed=1, orders=100, total_events=500)
    stack = make_stack(database_url)
    stack.start_worker(concurrency=3)
    stack.start_scheduler()
    # When 500 events are published (pipelined in batches, as a busy checkout would)
    for start in range(0, len(scenario.events), 50):
        assert stack.publisher.publish_many(scenario.events[start : start + 50]) == "queued"
    # Then every event is delivered and the wallets are exact
    states = stack.wait_settled(len(scenario.events), timeout_s=180)
    assert states == {"delivered": 500}
    assert wallets(sandbox.state(transactions=False)) == dict(scenario.expected)
    transactions = sandbox.state()["transactions"]
    assert len(transactions) == 500
    assert len({t["transaction_id"] for t in transactions}) == 500
