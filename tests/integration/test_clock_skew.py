"""Skewed clocks, as a fleet has them (NTP drift, a VM resumed from pause): a scheduler far
ahead, a worker far behind and a producer minutes ahead change nothing, because leases and
due times are kept in the ledger's clock (``worker.ledger.clock``), the breaker in Redis's,
and clock-dependent validation happens once, at publish.

Each process's clock is really skewed, with libfaketime (Debian's ``libfaketime``; .ci/run
installs it): Python, its C libraries and SQLite all see the skewed time. The ledger is
PostgreSQL, whose server clock is the one clock; with SQLite every process shares one host
and so one clock, and libfaketime would skew SQLite's own clock with the process.
"""

from __future__ import annotations

import glob
import os
import subprocess
from collections import Counter
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from harness.processes import GBQ, SandboxProcess
from harness.stack import Stack
from producers.events import OrderPaid, event_to_json

pytestmark = pytest.mark.integration
LIBFAKETIME = sorted(glob.glob("/usr/lib/*/faketime/libfaketime.so.1"))


def skewed(offset: str) -> dict[str, str]:
    """Environment that shifts a process's wall clock by ``offset`` (e.g. "+90s")."""
    if not LIBFAKETIME:
        note = "libfaketime is not installed (apt-get install libfaketime)"
        if os.environ.get("CI"):
            pytest.fail(note)
        pytest.skip(note)
    return {
        "LD_PRELOAD": LIBFAKETIME[0],
        "FAKETIME": offset,
        "FAKETIME_DONT_FAKE_MONOTONIC": "1",
        "FAKETIME_NO_CACHE": "1",
    }


@pytest.fixture
def postgres_url(database_url: str) -> str:
    if not database_url.startswith("postgresql"):
        pytest.skip("with SQLite every process shares one host clock; skew needs PostgreSQL")
    return database_url


def _paid(order: str, occurred_at: datetime) -> OrderPaid:
    return OrderPaid(
        order_id=order,
        customer_id=f"skew-{order}",
        occurred_at=occurred_at,
        total_price=Decimal(3),
        total_paid=Decimal(3),
    )


@pytest.mark.slow(rank=3)
def test_skewed_scheduler_worker_and_producer_deliver_exactly(
    make_stack: type[Stack], sandbox: SandboxProcess, postgres_url: str, tmp_path: Path
) -> None:
    """Scheduler +90 s and worker −120 s with the default 60 s lease, Gameball answering
    in 1.5 s, a producer 6 minutes ahead: every event delivered, at most one extra call
    per event (none expected), wallets exact, nothing dead."""
    # Given: the default lease and re-drive timings, and a slow Gameball
    stack = make_stack(postgres_url, GBQ_LEASE_S="60", GBQ_REDRIVE_AFTER_S="30")
    sandbox.faults(latency_s=1.5)
    scheduler_env = {**stack.env, **skewed("+90s")}
    worker_env = {**stack.env, **skewed("-120s")}
    stack.env = worker_env
    stack.start_worker("behind", concurrency=4)
    stack.env = scheduler_env
    stack.start_scheduler("ahead")
    # When: 40 events from checkout, and 20 from a producer whose clock is 6 minutes ahead
    now = datetime.now(UTC)
    ordinary = [_paid(f"S{n}", now - timedelta(minutes=1)) for n in range(40)]
    for event in ordinary:
        stack.publisher.publish(event)
    ahead = now + timedelta(minutes=6)  # "now" on the fast producer: the test's clock refuses it
    future = [_paid(f"F{n}", now).model_copy(update={"occurred_at": ahead}) for n in range(20)]
    lines = tmp_path / "future.jsonl"
    lines.write_text("".join(event_to_json(event) + "\n" for event in future))
    published = subprocess.run(
        [*GBQ, "publish", str(lines)],
        env={**scheduler_env, **skewed("+6m")},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert published.returncode == 0, published.stderr
    # Then
    total = len(ordinary) + len(future)
    assert stack.wait_settled(total, timeout_s=150) == {"delivered": total}
    calls = Counter(
        request["transaction_id"]
        for request in sandbox.requests()
        if request["path"].lower().endswith(("/order", "/orders"))
    )
    assert set(calls) == {event.order_id for event in [*ordinary, *future]}
    assert max(calls.values()) <= 2  # the bound
    assert sum(calls.values()) == total  # and in fact none was sent twice
    for event in [*ordinary, *future]:
        assert sandbox.balance(event.customer_id) == 3
    logs = "".join(process.output() for process in stack.processes)
    assert "lease lost" not in logs
