"""deploy/supervisord.conf, run by a real supervisord: a killed worker comes back."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
import redis

from harness.processes import GBQ, SandboxProcess, wait_until
from harness.scenario import generate, wallets
from harness.stack import Stack
from producers.events import OrderPaid

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
CONF = ROOT / "deploy" / "supervisord.conf"
BIN = Path(sys.executable).parent


def supervisorctl(env: dict[str, str], *args: str) -> str:
    return subprocess.run(
        [str(BIN / "supervisorctl"), "-c", str(CONF), *args],
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    ).stdout


@contextlib.contextmanager
def supervised(stack: Stack) -> Iterator[dict[str, str]]:
    """deploy/supervisord.conf run by a real supervisord for ``stack``; yields its env and
    shuts it (and every program) down afterwards."""
    Path(stack.env["GBQ_HOME"]).mkdir(parents=True, exist_ok=True)
    env = {**stack.env, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    supervisord = subprocess.Popen(
        [str(BIN / "supervisord"), "-c", str(CONF)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        yield env
    finally:
        supervisorctl(env, "shutdown")
        supervisord.wait(timeout=120)


@pytest.mark.slow
def test_supervisor_restarts_a_killed_worker_and_everything_is_delivered(
    make_stack: type[Stack], sandbox: SandboxProcess, sqlite_url: str
) -> None:
    """SIGKILL the worker under supervisord: restarted, every event delivered once."""
    scenario = generate(seed=31, orders=20, total_events=60)
    stack = make_stack(sqlite_url, GBQ_LEASE_S="5")
    var = Path(stack.env["GBQ_HOME"])
    with supervised(stack) as env:

        def pid_of(program: str) -> int:
            found = supervisorctl(env, "pid", program).strip()
            return int(found) if found.isdigit() else 0

        first = wait_until(
            lambda: pid_of("gbq-worker:gbq-worker-0"),
            timeout_s=60,
            what="supervisord to start the worker",
        )
        wait_until(lambda: pid_of("gbq-scheduler"), timeout_s=60, what="the scheduler")
        sandbox.faults(latency_s=0.3)
        stack.publisher.publish_many(scenario.events)
        wait_until(
            lambda: stack.states()["delivered"] >= 5, timeout_s=60, what="deliveries to start"
        )
        # When the worker is killed outright
        os.kill(first, signal.SIGKILL)
        # Then supervisord starts a new one, and everything is delivered exactly once
        wait_until(
            lambda: pid_of("gbq-worker:gbq-worker-0") not in (0, first),
            timeout_s=60,
            what="a restarted worker",
        )
        sandbox.faults(latency_s=0)
        assert stack.wait_settled(60, timeout_s=120) == {"delivered": 60}
        state = sandbox.state()
        assert len(state["transactions"]) == 60
        assert wallets(state) == dict(scenario.expected)
        assert (var / "gbq-worker-0.log").read_text()
    assert not supervisorctl(env, "pid", "gbq-scheduler").strip().isdigit()


def test_a_worker_whose_consumer_dies_exits_non_zero(
    make_stack: type[Stack], redis_url: str, sqlite_url: str
) -> None:
    """A consumer that dies ("Unrecoverable error") ends `gbq worker` with status 1, so
    restart policies fire (Celery's worker_main used to return normally: status 0)."""
    admin = redis.Redis.from_url(redis_url)
    admin.acl_setuser(  # may use the queue, but not Celery's remote-control queues
        "no-pidbox",
        enabled=True,
        passwords=["+pw"],
        keys=["gbq*", "_kombu.*", "unacked*"],
        channels=["*"],
        commands=["+@all"],
    )
    try:
        limited = redis_url.replace("redis://", "redis://no-pidbox:pw@", 1)
        stack = make_stack(sqlite_url, redis=limited)
        worker = stack.start_worker()
        wait_until(lambda: not worker.alive(), timeout_s=60, what="the worker to exit")
        assert worker.popen.returncode == 1
        assert "Unrecoverable error" in worker.output()
    finally:
        admin.acl_deluser("no-pidbox")
        admin.close()


@pytest.mark.slow(rank=1)
def test_supervisor_keeps_retrying_until_a_cause_that_clears(
    make_stack: type[Stack], sandbox: SandboxProcess, tmp_path: Path
) -> None:
    """An unmigrated ledger makes the worker exit at start, over and over: supervisord backs
    off and retries, never FATAL, and once `gbq migrate` has run the worker delivers."""
    ledger = f"sqlite:///{tmp_path / 'later.db'}"
    stack = make_stack(ledger)
    log = Path(stack.env["GBQ_HOME"]) / "supervisord.log"

    def failed_starts() -> int:
        text = log.read_text() if log.exists() else ""
        return text.count("exited: gbq-worker-0 (exit status 3; not expected)")

    with supervised(stack) as env:
        # Given: more failed starts than supervisor's default of 3 tries allows
        wait_until(lambda: failed_starts() >= 5, timeout_s=90, what="five failed starts")
        assert "FATAL" not in supervisorctl(env, "status")
        # When the cause clears
        migrated = subprocess.run([*GBQ, "migrate"], env=env, capture_output=True, check=False)
        assert migrated.returncode == 0
        # Then the next retry stays up and delivers
        wait_until(
            lambda: "RUNNING" in supervisorctl(env, "status", "gbq-worker:gbq-worker-0"),
            timeout_s=60,
            what="the worker to run",
        )
        stack.publisher.publish(
            OrderPaid(
                order_id="LATER",
                customer_id="later",
                occurred_at=datetime.now(UTC) - timedelta(minutes=1),
                total_price=Decimal(4),
                total_paid=Decimal(4),
            )
        )
        assert stack.wait_settled(1, timeout_s=60) == {"delivered": 1}
        assert sandbox.balance("later") == 4
