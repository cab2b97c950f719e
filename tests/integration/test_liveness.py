"""Liveness: a worker process that stops announcing itself loses its leases in seconds,
and one cut from Redis mid-call cannot double-credit or overwrite what replaced it."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import redis

from harness.processes import SandboxProcess, wait_until
from harness.services import RedisServer
from harness.stack import Process, Stack
from producers.events import OrderPaid
from tests.proxy import Proxy
from worker.coordination.liveness import alive

pytestmark = pytest.mark.integration


@pytest.mark.slow
def test_a_worker_cut_from_redis_mid_call_neither_double_credits_nor_overwrites(
    make_stack: type[Stack], sandbox: SandboxProcess, sqlite_url: str, redis_url: str
) -> None:
    """Worker A reaches Redis through a proxy. Its Gameball call is slow (12 s); the proxy
    is cut meanwhile, so its heartbeat lapses and the scheduler hands its lease (10
    minutes long) to worker B, which delivers. Then A's connection comes back and its call
    ends ("already exists": B's was applied first): one credit in all, and the ledger keeps
    B's outcome; A's attempt is in the history, marked as not applied."""
    port = urlsplit(redis_url).port
    assert port is not None
    proxy = Proxy(port)
    stack = make_stack(sqlite_url, GBQ_LEASE_S="600", GBQ_HEARTBEAT_TTL_S="2")
    stack.start_scheduler()
    cut_off = {
        **stack.env,
        "GBQ_REDIS_URL": f"redis://127.0.0.1:{proxy.port}/0",
        "GBQ_GAMEBALL_READ_TIMEOUT_S": "30",  # A waits its slow call out
    }
    args = ["worker", "--concurrency", "1", "--hostname", "a@%h", "--loglevel", "INFO"]
    worker_a = Process("a", args, cut_off, stack.folder / "a.log")
    stack.processes.append(worker_a)
    sandbox.faults(slow_count=1, slow_s=12)
    stack.publisher.publish(
        OrderPaid(
            order_id="CUT",
            customer_id="c-cut",
            occurred_at=datetime(2026, 4, 1, tzinfo=UTC),
            total_price=Decimal(10),
            total_paid=Decimal(10),
        )
    )
    wait_until(lambda: stack.states() == {"in_flight": 1}, timeout_s=60, what="A's claim")
    owner_a = stack.event("paid:CUT").lease_owner
    proxy.cut()
    stack.start_worker("b", concurrency=1)
    wait_until(lambda: stack.states() == {"delivered": 1}, timeout_s=60, what="B to deliver it")
    proxy.restore()
    wait_until(
        lambda: len(stack.ledger.attempts_of("paid:CUT")) == 2,
        timeout_s=60,
        what="A's slow call to end",
    )
    row = stack.event("paid:CUT")
    attempts = stack.ledger.attempts_of("paid:CUT")
    by_worker = {attempt.worker: attempt for attempt in attempts}
    assert (row.state, row.last_outcome, row.last_code) == ("delivered", "accepted", None)
    assert by_worker[owner_a].reason == "already_applied"  # A's, recorded, not applied
    assert [t["transaction_id"] for t in sandbox.state()["transactions"]] == ["CUT"]
    assert sandbox.balance("c-cut") == 10
    assert "stopped beating: handed back 1 lease(s)" in stack.processes[0].output()


@pytest.mark.parametrize(("pool", "processes"), [("prefork", 2), ("threads", 1)])
def test_an_idle_worker_beats_before_its_first_event(
    make_stack: type[Stack], sqlite_url: str, pool: str, processes: int, tmp_path: Path
) -> None:
    """Each delivering process announces itself at start, not at its first task: an idle
    worker counts as alive (``gbq status``, the console, ``gbq publish``'s check). A Redis
    of its own: nothing else beats there."""
    server = RedisServer(tmp_path / "redis").start()
    stack = make_stack(sqlite_url, redis=server.url)
    client = redis.Redis.from_url(server.url)
    assert alive(client) == []
    worker = stack.start_worker(concurrency=2, pool=pool)
    beating = wait_until(
        lambda: len(alive(client)) == processes, timeout_s=60, what=f"{processes} heartbeats"
    )
    assert beating
    assert stack.states() == {}  # nothing was ever delivered
    worker.stop()
    server.kill()
