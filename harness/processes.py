"""Real processes for tests: the sandbox over HTTP on loopback, and polling with a deadline."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

import httpx

from worker.settings import SANDBOX_API_KEY, SANDBOX_SECRET_KEY

T = TypeVar("T")
GBQ = [sys.executable, "-m", "worker"]
NO_RATE_LIMIT = ("--rate-limit-per-s", "0", "--rate-limit-per-30s", "0")  # sandbox options
SANDBOX_KEYS = {"APIKey": SANDBOX_API_KEY, "secretKey": SANDBOX_SECRET_KEY}


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_until(
    probe: Callable[[], T | None], *, timeout_s: float, what: str, interval_s: float = 0.05
) -> T:
    """Call ``probe`` until it returns something truthy; fail naming ``what`` at the deadline."""
    deadline = time.monotonic() + timeout_s
    while True:
        result = probe()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")
        time.sleep(interval_s)  # polling interval, not synchronisation


def scrape_metrics(port: int) -> str | None:
    """The scheduler's /metrics on ``port``, or None while it does not answer yet."""
    try:
        return httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    except httpx.TransportError:
        return None


def proc_stats() -> Iterator[tuple[int, list[str]]]:
    """(pid, /proc/<pid>/stat fields after the command name) of every live process:
    fields[1] is the parent pid, fields[2] the process group, fields[11:15] CPU ticks."""
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                yield int(entry.name), (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue  # it ended while we looked


def pool_children(parent: int) -> list[int]:
    """Pids whose parent is ``parent`` (a Celery worker's prefork pool)."""
    return [pid for pid, fields in proc_stats() if int(fields[1]) == parent]


class SandboxProcess:
    """``gbq sandbox`` in a child process, with helpers for its control endpoints."""

    def __init__(self, log_path: Path, args: Sequence[str] = (), command: Sequence[str] = GBQ):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        self._log = log_path.open("wb")
        self.process = subprocess.Popen(
            [*command, "sandbox", "--port", str(self.port), *args],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env={**os.environ},
        )
        self.http = httpx.Client(base_url=self.url, timeout=10)
        wait_until(self._healthy, timeout_s=30, what=f"the sandbox on port {self.port}")

    def _healthy(self) -> bool:
        if self.process.poll() is not None:
            raise AssertionError(f"the sandbox exited: {self.log_path.read_text()}")
        try:
            return self.http.get("/_sandbox/health").status_code == 200
        except httpx.TransportError:
            return False

    def state(self, *, transactions: bool = True) -> dict[str, Any]:
        params = {} if transactions else {"transactions": "0"}
        response = self.http.get("/_sandbox/state", params=params)
        response.raise_for_status()
        state: dict[str, Any] = response.json()
        return state

    def requests(self) -> list[dict[str, Any]]:
        """The whole request log, page by page."""
        rows: list[dict[str, Any]] = []
        while True:
            page = self.http.get(
                "/_sandbox/requests", params={"since": len(rows), "limit": 100_000}
            ).json()["requests"]
            if not page:
                return rows
            rows += page

    def balance(self, player: str) -> int:
        wallet = self.state(transactions=False)["wallets"].get(player)
        return 0 if wallet is None else int(wallet["balance"])

    def hold(self, version: str, customer: str, amount: int) -> str:
        """A checkout's points hold, made straight at the sandbox (as a shop's own code
        would, not through gbq): its reference."""
        v4 = version != "v3.0"
        path = f"/api/{version}/integrations/{'transactions' if v4 else 'transaction'}/hold"
        body = {
            "customerId" if v4 else "playerUniqueId": customer,
            "amountToHold" if v4 else "amount": amount,
            "transactionTime": "2026-01-10T09:04:00Z",
        }
        made = self.http.post(path, json=body, headers=SANDBOX_KEYS)
        made.raise_for_status()
        return str(made.json()["holdReference"])

    def release(self, version: str, reference: str) -> None:
        """Release a hold: Gameball then answers an order naming it as for an expired one."""
        v4 = version != "v3.0"
        path = f"/api/{version}/integrations/{'transactions' if v4 else 'transaction'}/hold"
        self.http.delete(f"{path}/{reference}", headers=SANDBOX_KEYS).raise_for_status()

    def faults(self, **settings: Any) -> dict[str, Any]:
        response = self.http.post("/_sandbox/faults", json=settings)
        response.raise_for_status()
        config: dict[str, Any] = response.json()
        return config

    def rules(self, **settings: Any) -> None:
        self.http.post("/_sandbox/rules", json=settings).raise_for_status()

    def reset(self) -> None:
        self.http.post("/_sandbox/reset").raise_for_status()

    def stop(self) -> int:
        self.http.close()
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        self._log.close()
        return self.process.returncode
