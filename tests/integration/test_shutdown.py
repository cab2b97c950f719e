"""Graceful shutdown: SIGTERM lets in-flight deliveries finish and exits 0."""

from __future__ import annotations

import signal

import pytest

from harness.processes import SandboxProcess, wait_until
from harness.scenario import generate, wallets
from harness.stack import Stack

pytestmark = pytest.mark.integration


def test_sigterm_finishes_in_flight_deliveries_and_exits_zero(
    make_stack: type[Stack], sandbox: SandboxProcess, sqlite_url: str
) -> None:
    """Calls under way complete and are recorded; no lease is left behind; the rest is
    delivered afterwards, exactly once in effect."""
    scenario = generate(seed=21, orders=10, total_events=30)
    sandbox.faults(latency_s=1.5)
    stack = make_stack(sqlite_url)
    worker = stack.start_worker("graceful", concurrency=4)
    stack.start_scheduler()
    stack.publisher.publish_many(scenario.events)
    wait_until(lambda: stack.states()["in_flight"] >= 2, timeout_s=60, what="deliveries in flight")
    # When the worker (its main process, as supervisor does it) gets SIGTERM
    worker.popen.send_signal(signal.SIGTERM)
    assert worker.popen.wait(timeout=60) == 0
    # Then what was in flight finished: nothing holds a lease
    assert stack.states()["in_flight"] == 0
    applied_at_stop = len(sandbox.state()["transactions"])
    assert applied_at_stop >= 2
    # and a new worker delivers the rest, nothing twice
    sandbox.faults(latency_s=0)
    stack.start_worker("next", concurrency=2)
    assert stack.wait_settled(30, timeout_s=120) == {"delivered": 30}
    assert len(sandbox.state()["transactions"]) == 30
    assert wallets(sandbox.state(transactions=False)) == dict(scenario.expected)
