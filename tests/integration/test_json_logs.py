"""GBQ_LOG_FORMAT=json: every line of every long-running process is one JSON object.

The worker (its pool children too, Celery's banner and warnings, its shutdown notice),
the scheduler, the sandbox and the console run deliveries, a dead letter and a graceful
stop; every line each wrote is parsed, and none holds a secret."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import httpx
import pytest

from harness.processes import GBQ, free_port, wait_until
from harness.services import sqlite_ledger
from harness.stack import Process, Stack
from tests.console import ConsoleProcess
from tests.factories import paid

pytestmark = pytest.mark.integration
API_KEY, SECRET_KEY = "json-logs-APIKEY-7d1", "json-logs-SECRET-e42"
WEB_PASSWORD = "json-logs-web-password-93a"
REQUIRED = {"ts", "level", "process", "pid", "process_name", "logger", "message"}


def json_lines(path: Path, role: str) -> list[dict[str, object]]:
    lines = path.read_text().splitlines()
    assert lines, f"{path.name} is empty"
    parsed = []
    for number, line in enumerate(lines, 1):
        try:
            found = json.loads(line)
        except ValueError:
            raise AssertionError(f"{path.name} line {number} is not JSON: {line!r}") from None
        assert isinstance(found, dict), line
        assert set(found) >= REQUIRED, (path.name, number, line)
        assert found["process"] == role, line
        for secret in (API_KEY, SECRET_KEY, WEB_PASSWORD):
            assert secret not in line, (path.name, number)
        parsed.append(found)
    return parsed


def test_every_line_of_every_process_is_one_json_object(
    make_stack: type[Stack], tmp_path: Path
) -> None:
    port = free_port()
    stack_env = {
        "GBQ_LOG_FORMAT": "json",
        "GBQ_GAMEBALL_API_KEY": API_KEY,
        "GBQ_GAMEBALL_SECRET_KEY": SECRET_KEY,
        "GBQ_WEB_PASSWORD": WEB_PASSWORD,
    }
    sandbox_log = tmp_path / "sandbox.log"
    sandbox = Process(
        "sandbox",
        ["sandbox", "--port", str(port), "--api-key", API_KEY, "--secret-key", SECRET_KEY],
        {**os.environ, "GBQ_LOG_FORMAT": "json"},
        sandbox_log,
    )
    url = f"http://127.0.0.1:{port}"
    wait_until(lambda: _answers(url), timeout_s=30, what="the sandbox")
    stack = make_stack(sqlite_ledger(tmp_path), gameball=url, **stack_env)
    stack.processes.append(sandbox)
    worker = stack.start_worker(concurrency=2)
    scheduler = stack.start_scheduler()
    console = ConsoleProcess(stack)
    httpx.post(url + "/_sandbox/faults", json={"reject_count": 1, "reject_code": 7}, timeout=5)
    stack.publisher.publish_many([paid(f"JSON-{n}") for n in range(6)])
    assert stack.wait_settled(6) == {"delivered": 5, "dead": 1}
    assert httpx.get(console.url + "/", auth=("x", WEB_PASSWORD), timeout=10).status_code == 200
    for process in (worker, scheduler, console.process, sandbox):
        assert process.stop() == 0, process.output()[-2000:]

    lines = json_lines(worker.log_path, "worker")
    children = {line["process_name"] for line in lines if line["pid"] != worker.popen.pid}
    assert children
    assert all(str(name).startswith("ForkPoolWorker-") for name in children)
    delivered = [line for line in lines if line.get("outcome")]
    assert {line["event_id"] for line in delivered} == {f"paid:JSON-{n}" for n in range(6)}
    assert any(line["logger"] == "py.warnings" for line in lines) or _not_root()
    assert any("shutdown" in str(line["message"]) for line in lines)
    received = [line for line in lines if str(line["message"]).endswith("received")]
    assert received
    assert all(str(line["event_id"]).startswith("paid:JSON-") for line in received)
    scheduler_lines = json_lines(scheduler.log_path, "scheduler")
    assert any("leads" in str(line["message"]) for line in scheduler_lines)
    json_lines(console.process.log_path, "console")
    assert any(
        "Gameball sandbox on" in str(line["message"]) for line in json_lines(sandbox_log, "sandbox")
    )


def _answers(url: str) -> bool:
    try:
        return httpx.get(url + "/_sandbox/health", timeout=2).status_code == 200
    except httpx.TransportError:
        return False


def _not_root() -> bool:
    """Celery warns only a root user (the superuser warning)."""
    return os.geteuid() != 0


@pytest.mark.parametrize("command", ["worker", "scheduler", "web"])  # the sandbox reads none
def test_a_bad_setting_is_a_json_line_too(command: str) -> None:
    """A long-running process told to log JSON that cannot start: its lines (a typo's
    warning, the setting's error) are JSON objects as well, and it exits 2."""
    env = {**os.environ, "GBQ_LOG_FORMAT": "json", "GBQ_LEASE_S": "abc", "GBQ_TYPO_X": "1"}
    result = subprocess.run(
        [*GBQ, command], env=env, capture_output=True, text=True, timeout=60, check=False
    )
    lines = [json.loads(line) for line in result.stderr.splitlines()]
    role = "console" if command == "web" else command
    assert [(line["level"], line["process"]) for line in lines] == [
        ("WARNING", role),
        ("ERROR", role),
    ]
    assert "GBQ_LEASE_S='abc'" in str(lines[1]["message"])
    assert result.returncode == 2
