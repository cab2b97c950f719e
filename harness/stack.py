"""The whole pipeline for integration tests: real worker and scheduler processes."""

from __future__ import annotations

import os
import signal
import subprocess
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from harness.processes import GBQ, wait_until
from producers.publisher import Publisher
from producers.settings import PublisherSettings
from worker.ledger.engine import create_ledger_engine
from worker.ledger.repository import Ledger
from worker.settings import SANDBOX_API_KEY, SANDBOX_SECRET_KEY, Settings

FAST = {
    "GBQ_SCHEDULER_TICK_S": "0.2",
    "GBQ_REDRIVE_AFTER_S": "2",
    "GBQ_LEASE_S": "10",
    "GBQ_RETRY_BASE_S": "0.05",
    "GBQ_RETRY_CAP_S": "0.5",
    "GBQ_PAUSE_DELAY_S": "1",
    "GBQ_GAMEBALL_READ_TIMEOUT_S": "5",
    "GBQ_PUBLISH_TIMEOUT_S": "0.5",
    "GBQ_RATE_LIMIT_PER_S": "0",  # off unless a test is about the limit
    "GBQ_RATE_LIMIT_PER_30S": "0",
    "GBQ_BREAKER_COOLDOWN_S": "1",
    "GBQ_METRICS_PORT": "0",  # on only where a test scrapes it
}


class Process:
    """A child process in its own session, so that SIGKILL takes all of its children."""

    def __init__(
        self,
        name: str,
        args: list[str],
        env: dict[str, str],
        log: Path,
        command: Sequence[str] = GBQ,
    ) -> None:
        self.name, self.log_path = name, log
        self._log = log.open("ab")
        self.popen = subprocess.Popen(
            [*command, *args],
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def alive(self) -> bool:
        return self.popen.poll() is None

    def kill(self) -> None:
        """SIGKILL the process and every child it has (a crashed host, in effect)."""
        if self.alive():
            os.killpg(self.popen.pid, signal.SIGKILL)
        self.popen.wait(timeout=30)
        self._log.close()

    def stop(self, timeout_s: float = 30) -> int:
        if self.alive():
            os.killpg(self.popen.pid, signal.SIGTERM)
            try:
                self.popen.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                os.killpg(self.popen.pid, signal.SIGKILL)
                self.popen.wait(timeout=30)
        self._log.close()
        return self.popen.returncode

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")


class Stack:
    """Settings, a publisher, the ledger, and worker/scheduler processes, all on loopback."""

    def __init__(
        self,
        folder: Path,
        *,
        redis_url: str,
        database_url: str,
        gameball_url: str,
        **overrides: str,
    ) -> None:
        self.folder = folder
        self.env = {
            **os.environ,
            "GBQ_HOME": str(folder / "var"),
            "GBQ_REDIS_URL": redis_url,
            "GBQ_DATABASE_URL": database_url,
            "GBQ_GAMEBALL_BASE_URL": gameball_url,
            "GBQ_GAMEBALL_API_KEY": SANDBOX_API_KEY,
            "GBQ_GAMEBALL_SECRET_KEY": SANDBOX_SECRET_KEY,
            **FAST,
            **overrides,
        }
        gbq = {k[4:].lower(): v for k, v in self.env.items() if k.startswith("GBQ_")}
        self.settings = Settings(**gbq)  # type: ignore[arg-type]
        self.ledger = Ledger(create_ledger_engine(database_url))
        self.processes: list[Process] = []
        self._publisher: Publisher | None = None
        self._checkouts: list[Publisher] = []

    @property
    def publisher(self) -> Publisher:
        """Checkout on the workers' host: its GBQ_HOME and spool, which the scheduler
        relays too."""
        if self._publisher is None:
            self._publisher = Publisher(self.settings)
        return self._publisher

    def checkout_host(self, name: str = "checkout") -> Publisher:
        """Checkout on a host of its own: its own GBQ_HOME and spool, no scheduler beside
        it (only its publisher relays its spool), the same Redis."""
        settings = PublisherSettings(
            home=self.folder / name,
            redis_url=self.settings.redis_url,
            publish_timeout_s=self.settings.publish_timeout_s,
            redis_min_replicas=self.settings.redis_min_replicas,
            redis_replica_wait_s=self.settings.redis_replica_wait_s,
        )
        publisher = Publisher(settings)
        self._checkouts.append(publisher)
        return publisher

    def start_worker(
        self, name: str = "w1", concurrency: int = 2, pool: str = "prefork"
    ) -> Process:
        process = Process(
            name,
            [
                "worker",
                "--concurrency",
                str(concurrency),
                "--pool",
                pool,
                "--hostname",
                f"{name}@%h",
                "--loglevel",
                "INFO",
            ],
            self.env,
            self.folder / f"{name}.log",
        )
        self.processes.append(process)
        return process

    def start_scheduler(self, name: str = "scheduler") -> Process:
        process = Process(name, ["scheduler"], self.env, self.folder / f"{name}.log")
        self.processes.append(process)
        return process

    def states(self) -> Counter[str]:
        return Counter(self.ledger.counts_by_state())

    def wait_settled(self, total: int, timeout_s: float = 120) -> Counter[str]:
        """Wait until ``total`` events are all delivered or dead; returns the counts."""

        def settled() -> Counter[str] | None:
            for process in self.processes:
                if not process.alive() and process.popen.returncode not in (0, -9, -15):
                    raise AssertionError(f"{process.name} exited: {process.output()[-3000:]}")
            states = self.states()
            done = states["delivered"] + states["dead"]
            return states if done >= total and done == sum(states.values()) else None

        try:
            return wait_until(settled, timeout_s=timeout_s, what=f"{total} events to settle")
        except AssertionError:
            logs = "\n".join(f"--- {p.name}\n{p.output()[-4000:]}" for p in self.processes)
            raise AssertionError(f"not settled: {dict(self.states())}\n{logs}") from None

    def close(self) -> None:
        """Everything stops at once: a test's promises are checked before its teardown
        (graceful shutdown has tests of its own), and a worker's warm shutdown cost each
        test about a second and a half."""
        for process in self.processes:
            process.kill()
        if self._publisher is not None:
            self._publisher.close()
        for checkout in self._checkouts:
            checkout.close()
        self.ledger.engine.dispose()

    def event(self, event_id: str) -> Any:
        return self.ledger.get(event_id)

    def gbq(self, *args: str) -> subprocess.CompletedProcess[str]:
        """A ``gbq`` command against this stack; its exit code is the caller's to check."""
        return subprocess.run(
            [*GBQ, *args], env=self.env, capture_output=True, text=True, timeout=120, check=False
        )
