"""The ``gbq`` console script and ``python -m worker``."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from harness.processes import GBQ, SandboxProcess

pytestmark = pytest.mark.integration
GBQ_SCRIPT = Path(sys.executable).parent / "gbq"


def run(*args: str, command: list[str] = GBQ) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*command, *args], capture_output=True, text=True, timeout=60, check=False
    )


def test_gbq_and_python_m_worker_are_the_same_cli() -> None:
    """Both entry points list the same commands."""
    script, module = run("--help", command=[str(GBQ_SCRIPT)]), run("--help")
    assert script.returncode == module.returncode == 0
    assert "sandbox" in script.stdout

    # Same text but for the program name on the usage line (which also shifts padding).
    script_words, module_words = script.stdout.split(), module.stdout.split()
    assert script_words[:2] == ["Usage:", "gbq"]
    assert module_words[:4] == ["Usage:", "python", "-m", "worker"]
    assert script_words[2:] == module_words[4:]


def test_version() -> None:
    """``gbq --version`` prints the installed version."""
    result = run("--version")
    assert (result.returncode, result.stdout.strip()) == (0, "gbq 0.1.0")


def test_sandbox_help_shows_default_keys_and_examples() -> None:
    """The sandbox's public default keys and an example are in its help."""
    result = run("sandbox", "--help")
    assert result.returncode == 0
    assert "sandbox-api-key" in result.stdout
    assert "sandbox-secret-k" in result.stdout  # may be cut by the help table's width
    assert "gbq sandbox --port 8099" in result.stdout


def test_bad_category_rate_is_a_usage_error() -> None:
    """A malformed option exits 2 with the option named, no traceback."""
    result = run("sandbox", "--category-rate", "shoes")
    assert result.returncode == 2
    assert "--category-rate" in result.stderr
    assert "Traceback" not in result.stderr


def test_gbq_sandbox_and_one_post_credit_a_wallet(tmp_path: Path) -> None:
    """`gbq sandbox` + one POST of Gameball's order endpoint shows a credited wallet."""
    sandbox = SandboxProcess(tmp_path / "sandbox.log", command=[str(GBQ_SCRIPT)])
    try:
        response = httpx.post(
            f"{sandbox.url}/api/v3.0/integrations/order",
            headers={"APIKey": "sandbox-api-key", "secretKey": "sandbox-secret-key"},
            json={
                "playerUniqueId": "cust_1001",
                "orderId": "ORD-1",
                "orderDate": "2024-10-16T08:13:29.290Z",
                "totalPrice": 357,
                "totalPaid": 327,
            },
        )
        assert response.status_code == 200
        assert response.json()["rewardedPoints"] == 327
        assert sandbox.state()["wallets"]["cust_1001"]["balance"] == 327
    finally:
        assert sandbox.stop() == 0  # SIGTERM stops it cleanly


@pytest.mark.parametrize(
    "args",
    [
        ["status"],
        ["worker"],
        ["scheduler"],
        ["migrate"],
        ["dlq", "list"],
        ["events", "ORD-1"],
        ["publish", "/dev/null"],
        ["reconcile", "--order", "ORD-1"],
        ["demo"],
    ],
)
def test_every_command_refuses_a_bad_setting_in_one_line(args: list[str], tmp_path: Path) -> None:
    """Exit 2 and one line per bad variable, before anything starts: no traceback, no
    embedded Redis left behind."""
    env = {
        "PATH": "/usr/bin:/bin",
        "GBQ_HOME": str(tmp_path / "home"),
        "GBQ_RETRY_BASE_S": "abc",
        "GBQ_DATABASE_URL": "mysql://gbq:hunter2@db/gbq",
    }
    result = subprocess.run(
        [*GBQ, *args], env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 2, result.stderr
    database = (
        "error: GBQ_DATABASE_URL='mysql://gbq:***@db/gbq': must be sqlite:///PATH or "
        "postgresql://user@host/db: the ledger runs on SQLite or PostgreSQL"
    )
    retry = "error: GBQ_RETRY_BASE_S='abc': must be a valid number, unable to parse string as a"
    assert result.stderr.splitlines() == [database, retry + " number"]
    assert not (tmp_path / "home").exists()


def test_celery_itself_refuses_a_bad_setting_in_one_line(tmp_path: Path) -> None:
    """``celery -A worker.process.app worker`` (the compose health check's tool) says the same."""
    env = {"PATH": "/usr/bin:/bin", "GBQ_HOME": str(tmp_path), "GBQ_LEASE_S": "-1"}
    result = subprocess.run(
        [sys.executable, "-m", "celery", "-A", "worker.process.app", "worker"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2, result.stderr
    assert "error: GBQ_LEASE_S='-1': must be greater than 0" in result.stderr.splitlines()
    assert "Traceback" not in result.stderr


def test_a_missing_ledger_says_run_gbq_migrate(tmp_path: Path) -> None:
    """A fresh GBQ_HOME: commands that read the ledger name the fix, not SQLite's
    "unable to open database file"; after `gbq migrate` they work."""
    env = {
        "PATH": "/usr/bin:/bin",
        "GBQ_HOME": str(tmp_path / "home"),
        "GBQ_REDIS_URL": "redis://127.0.0.1:1/0",
    }
    for args in (["dlq", "list"], ["events", "ORD-1"], ["worker"]):
        result = subprocess.run(
            [*GBQ, *args], env=env, capture_output=True, text=True, timeout=60, check=False
        )
        assert result.returncode == 3, result.stderr
        expected = f"error: no ledger at {tmp_path / 'home' / 'gbq.db'} yet: run `gbq migrate`"
        assert result.stderr.startswith(expected), result.stderr
        assert "unable to open" not in result.stderr
    migrated = subprocess.run(
        [*GBQ, "migrate"], env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert migrated.returncode == 0, migrated.stderr
    listed = subprocess.run(
        [*GBQ, "dlq", "list"], env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert (listed.returncode, listed.stderr.strip()) == (1, "no dead letters match")
