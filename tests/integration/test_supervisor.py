"""deploy/supervisord.conf, run by a real supervisord: a killed worker comes back."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.processes import SandboxProcess, wait_until
from tests.scenario import generate, wallets
from tests.stack import Stack

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
CONF = ROOT / "deploy" / "supervisord.conf"
BIN = Path(sys.executable).parent


def test_supervisor_restarts_a_killed_worker_and_everything_is_delivered(
    make_stack: type[Stack], sandbox: SandboxProcess, sqlite_url: str
) -> None:
    """SIGKILL the worker under supervisord: restarted, every event delivered once."""
    scenario = generate(seed=31, orders=20, total_events=60)
    stack = make_stack(sqlite_url, GBQ_LEASE_S="5")
    var = Path(stack.env["GBQ_VAR_DIR"])
    var.mkdir(parents=True, exist_ok=True)
    env = {**stack.env, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    supervisord = subprocess.Popen(
        [str(BIN / "supervisord"), "-c", str(CONF)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )

    def pid_of(program: str) -> int:
        result = subprocess.run(
            [str(BIN / "supervisorctl"), "-c", str(CONF), "pid", program],
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        return int(result.stdout.strip()) if result.stdout.strip().isdigit() else 0

    try:
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
    finally:
        subprocess.run(
            [str(BIN / "supervisorctl"), "-c", str(CONF), "shutdown"],
            env=env,
            capture_output=True,
            check=False,
            timeout=120,
        )
        supervisord.wait(timeout=120)
    assert not pid_of("gbq-scheduler")
