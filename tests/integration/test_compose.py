"""docker-compose.yml's worker, run as compose runs it, answers compose's health check."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from harness.processes import GBQ, wait_until
from harness.stack import Process, Stack

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def health_check(env: dict[str, str], command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: S602 - compose's own CMD-SHELL line, run as Docker runs it
        command, shell=True, env=env, capture_output=True, text=True, check=False, timeout=60
    )


@pytest.mark.slow
def test_the_compose_worker_answers_the_compose_health_check(
    make_stack: type[Stack], sqlite_url: str
) -> None:
    """The worker service's command line, then its health check through a shell with
    HOSTNAME set as Docker sets it: healthy. Pinging another node name (celery@…, the
    default the check used to name) is not answered: the check can fail."""
    worker = COMPOSE["services"]["worker"]
    stack = make_stack(sqlite_url)
    subprocess.run([*GBQ, "migrate"], env=stack.env, check=True, capture_output=True)
    stack.processes.append(
        Process("compose-worker", worker["command"], stack.env, stack.folder / "compose.log")
    )
    kind, line = worker["healthcheck"]["test"]
    assert kind == "CMD-SHELL"
    command = line.replace("$$", "$")  # compose's escape for a literal $
    env = {
        **stack.env,
        "HOSTNAME": socket.gethostname(),
        "PATH": f"{Path(sys.executable).parent}:{stack.env.get('PATH', '')}",
    }
    assert shutil.which("celery", path=env["PATH"])
    last: list[subprocess.CompletedProcess[str]] = []

    def healthy() -> bool:
        last[:] = [health_check(env, command)]
        return last[0].returncode == 0

    try:
        wait_until(healthy, timeout_s=90, what="the compose health check to pass")
    except AssertionError:
        log = (stack.folder / "compose.log").read_text()[-3000:]
        raise AssertionError(f"{last[0].stdout}{last[0].stderr}\n--- worker\n{log}") from None
    wrong = command.replace("worker@$HOSTNAME", "celery@$HOSTNAME")
    assert wrong != command
    assert health_check(env, wrong).returncode != 0


def test_the_compose_scheduler_health_check_follows_its_loop(
    make_stack: type[Stack], sqlite_url: str
) -> None:
    """The scheduler service's health check passes only while a scheduler's loop turns on
    this host: not before it starts (Redis and the ledger answering are not enough), yes
    while it runs, and no longer once it is killed (its heartbeat lapses in three ticks)."""
    scheduler = COMPOSE["services"]["scheduler"]
    check = scheduler["healthcheck"]["test"]
    assert check[0] == "CMD"
    stack = make_stack(sqlite_url)

    def health() -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*GBQ, *check[2:]], env=stack.env, capture_output=True, text=True, check=False
        )

    assert check[1] == "gbq"
    before = health()
    assert before.returncode == 1
    assert "no scheduler on" in before.stderr
    process = Process("compose-scheduler", scheduler["command"], stack.env, stack.folder / "s.log")
    stack.processes.append(process)
    healthy = wait_until(
        lambda: (result := health()).returncode == 0 and result,
        timeout_s=60,
        what="the scheduler's health check to pass",
    )
    assert "is alive and leads" in healthy.stdout
    process.kill()
    wait_until(lambda: health().returncode == 1, timeout_s=30, what="the check to fail")
