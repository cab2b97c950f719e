"""The soak: real Redis, sandbox, workers, schedulers and producer processes, a seeded fault
schedule, then an exact check of the end state (tests/chaos/check.py).

On failure the result names the seed and the first divergence; the same seed replays the
same history and the same fault schedule (timing on a busy machine may still differ).
"""

from __future__ import annotations

import json
import random
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import select

from harness.processes import NO_RATE_LIMIT, SandboxProcess, wait_until
from harness.sentinel import SentinelGroup
from harness.services import sqlite_ledger
from harness.stack import Process, Stack
from producers.keys import LEADER_KEY
from producers.transport import redis_client
from tests.chaos.check import Row, check_calls, check_settled, check_wallets, expected_wallets
from tests.chaos.faults import Fault, schedule
from tests.chaos.histories import PROMO, PROMO_MULTIPLIER, SEED_PREFIX, History, generate
from worker.ledger.models import EventRow
from worker.ledger.redemptions import Redemptions
from worker.settings import SANDBOX_API_KEY, SANDBOX_SECRET_KEY

ROOT = Path(__file__).resolve().parents[2]
HOLD_TTL_S = 3  # the sandbox's hold lifetime (Gameball's default: 10 minutes)


@dataclass(frozen=True)
class SoakConfig:
    seed: int
    events: int
    producers: int = 3
    workers: int = 3
    concurrency: int = 2
    schedulers: int = 2
    per_kind: int = 1  # faults of each kind
    window_s: float | None = None  # publishing window; default: events / 100 per second
    database_url: str | None = None  # default: a SQLite file in the run's folder

    @property
    def publishing_s(self) -> float:
        return self.window_s or max(20.0, self.events / 100)


@dataclass
class SoakResult:
    config: SoakConfig
    history: History
    faults: list[Fault] = field(default_factory=list)
    states: Counter[str] = field(default_factory=Counter)
    calls: dict[str, Any] = field(default_factory=dict)
    published: Counter[str] = field(default_factory=Counter)
    wallets: int = 0
    seconds: float = 0.0
    divergences: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.divergences

    def summary(self) -> str:
        config, history = self.config, self.history
        kinds = Counter(fault.kind for fault in self.faults)
        head = (
            f"seed {config.seed}: {len(history.events):,} events ({history.duplicates:,} "
            f"re-published, {history.early_refunds:,} refunds before their paid event) from "
            f"{config.producers} producers ({self.published['spooled']:,} publications "
            f"spooled), {len(self.faults)} faults ({len(kinds)} kinds), "
            f"{config.workers} workers x {config.concurrency}: "
            f"{self.states['delivered']:,} delivered, {self.states['dead']:,} dead "
            f"({len(history.invalid):,} made invalid on purpose), "
            f"{self.wallets:,} wallets, {self.calls.get('holds made', 0)} points holds "
            f"({self.published['checkout holds']:,} by the checkouts, the rest by gbq; "
            f"{self.calls.get('orders finding their hold expired (9006)', 0)} expired and "
            f"held again), in {self.seconds:.0f} s: "
        )
        if self.ok:
            return head + "every check exact"
        return head + f"{len(self.divergences)} divergences; first: {self.divergences[0]}"

    def markdown(self) -> str:
        lines = [
            f"# Soak, seed {self.config.seed}, {self.config.events:,} events",
            "",
            self.summary(),
            "",
            "## Faults",
            "",
            *(f"- {fault.describe()}" for fault in self.faults),
            "",
            "## Sandbox calls",
            "",
            *(f"- {key}: {value}" for key, value in self.calls.items()),
            "",
            "## Divergences",
            "",
            *(f"- {problem}" for problem in self.divergences[:50]),
        ]
        if not self.divergences:
            lines.append("none")
        return "\n".join(lines) + "\n"


class Soak:
    def __init__(self, folder: Path, config: SoakConfig) -> None:
        self.folder, self.config = folder, config
        self.rng = random.Random(config.seed)
        self.history = generate(config.seed, config.events, config.producers)
        # Redis as production runs it replicated: a primary, two replicas, three sentinels
        self.redis = SentinelGroup(folder / "redis", replicas=2)
        try:
            self.sandbox = SandboxProcess(
                folder / "sandbox.log",
                [
                    *NO_RATE_LIMIT,
                    "--seed",
                    str(config.seed),
                    "--campaign",
                    f"category:{PROMO}={PROMO_MULTIPLIER}",
                    "--hold-ttl-s",  # holds gbq makes expire in outages (then held again)
                    str(HOLD_TTL_S),
                ],
            )
        except BaseException:
            self.redis.stop()  # no server left behind when the sandbox cannot start
            raise
        (folder / "stack").mkdir()
        self.stack = Stack(
            folder / "stack",
            redis_url=self.redis.url,
            database_url=config.database_url or sqlite_ledger(folder),
            gameball_url=self.sandbox.url,
            GBQ_REDIS_MIN_REPLICAS="1",  # acknowledged means replicated: a failover loses none
            GBQ_REDIS_REPLICA_WAIT_S="0.2",
        )
        self.workers: dict[str, Process] = {}
        self.schedulers: dict[str, Process] = {}
        self.producers: list[Process] = []

    # --- the run -----------------------------------------------------------------------

    def run(self) -> SoakResult:
        started = time.monotonic()
        result = SoakResult(self.config, self.history)
        try:
            self._start()
            result.faults = self._inject(
                schedule(self.config.seed, self.config.publishing_s, self.config.per_kind)
            )
            result.published = self._wait_producers()
            self._wait_quiet()
            result.seconds = time.monotonic() - started
            self._check(result)
        finally:
            self.close()
        return result

    def _start(self) -> None:
        self._seed_savers()
        for number in range(self.config.workers):
            self._start_worker(f"w{number}")
        for number in range(self.config.schedulers):
            self._start_scheduler(f"s{number}")
        for process in self.workers.values():
            wait_until(lambda p=process: " ready." in p.output(), timeout_s=60, what="workers")
        env = {**self.stack.env, "PYTHONPATH": str(ROOT)}
        for number in range(self.config.producers):
            args = [
                "--seed", str(self.config.seed),
                "--events", str(self.config.events),
                "--producers", str(self.config.producers),
                "--producer", str(number),
                "--window-s", str(self.config.publishing_s),
            ]  # fmt: skip
            self.producers.append(
                Process(
                    f"producer-{number}",
                    args,
                    env,
                    self.folder / f"producer-{number}.log",
                    command=[sys.executable, "-m", "tests.chaos.producer"],
                )
            )

    def _seed_savers(self) -> None:
        """The savers' points before the soak, straight at the sandbox (not gbq events)."""
        headers = {"APIKey": SANDBOX_API_KEY, "secretKey": SANDBOX_SECRET_KEY}
        for saver, points in self.history.seeded.items():
            body = {
                "customerId": saver,
                "transactionId": f"{SEED_PREFIX}{saver}",
                "transactionTime": "2026-05-01T00:00:00.000Z",
                "amount": points,
            }
            answer = httpx.post(
                f"{self.sandbox.url}/api/v4.1/integrations/transactions/cashback",
                json=body,
                headers=headers,
                timeout=10,
            )
            answer.raise_for_status()

    def _start_worker(self, name: str) -> None:
        self.workers[name] = self.stack.start_worker(name, concurrency=self.config.concurrency)

    def _start_scheduler(self, name: str) -> None:
        self.schedulers[name] = self.stack.start_scheduler(name)

    def _inject(self, faults: list[Fault]) -> list[Fault]:
        began = time.monotonic()
        for fault in faults:
            delay = began + fault.at_s - time.monotonic()
            if delay > 0:
                time.sleep(delay)  # the schedule's moment for this fault
            self._fault(fault)
        return faults

    def _fault(self, fault: Fault) -> None:
        sandbox, kind = self.sandbox, fault.kind
        if kind == "outage":
            sandbox.faults(outage=True)
            time.sleep(fault.duration_s)  # the fault lasts this long
            sandbox.faults(outage=False)
        elif kind in ("server_errors", "rate_limits", "drop_after_apply"):
            field_name = {
                "server_errors": "error_count",
                "rate_limits": "rate_limit_count",
                "drop_after_apply": "drop_after_apply_count",
            }[kind]
            sandbox.faults(**{field_name: fault.size, "retry_after_s": 1})
            time.sleep(fault.duration_s)
            sandbox.faults(**{field_name: 0})
        elif kind == "latency":
            sandbox.faults(latency_s=0.3, latency_jitter_s=0.7)
            time.sleep(fault.duration_s)
            sandbox.faults(latency_s=0, latency_jitter_s=0)
        elif kind == "kill_worker":
            name = self.rng.choice(sorted(self.workers))
            self.workers[name].kill()
            time.sleep(fault.duration_s)  # supervisor's restart delay
            self._start_worker(name)
        elif kind == "kill_leader":
            name = self._leader()
            self.schedulers[name].kill()
            time.sleep(fault.duration_s)
            self._start_scheduler(name)
        elif kind in ("redis_restart", "redis_down_publishing"):
            primary = self.redis.current_primary()
            primary.stop()
            time.sleep(fault.duration_s)
            primary.start()
        elif kind == "redis_failover":
            old = self.redis.kill_primary()
            self.redis.wait_failover(old)
            time.sleep(fault.duration_s)  # the lost machine is back after this long
            self.redis.restart(old)
        else:
            raise ValueError(f"unknown fault {kind!r}")

    def _leader(self) -> str:
        client = redis_client(self.redis.url, 5)
        owner = client.get(LEADER_KEY)
        client.close()
        for name, process in self.schedulers.items():
            if owner and owner.decode() in process.output():
                return name
        return self.rng.choice(sorted(self.schedulers))  # no leader right now: any

    def _wait_producers(self) -> Counter[str]:
        counts: Counter[str] = Counter()
        for producer in self.producers:
            producer.popen.wait(timeout=self.config.publishing_s * 3 + 120)
            if producer.popen.returncode != 0:
                raise AssertionError(f"{producer.name} failed: {producer.output()[-3000:]}")
            counts.update(json.loads(producer.output().strip().splitlines()[-1]))
        return counts

    def _wait_quiet(self) -> None:
        """Every published event is in the ledger and settled."""
        total = len(self.history.events)

        def quiet() -> bool:
            states = self.stack.states()
            return states["delivered"] + states["dead"] == total == sum(states.values())

        try:
            wait_until(quiet, timeout_s=300 + total / 20, what="quiescence", interval_s=0.5)
        except AssertionError:
            raise AssertionError(
                f"seed {self.config.seed}: not quiet: {dict(self.stack.states())}"
            ) from None

    # --- the check ---------------------------------------------------------------------

    def _check(self, result: SoakResult) -> None:
        statement = select(
            EventRow.event_id, EventRow.state, EventRow.dead_reason, EventRow.last_code
        )
        with self.stack.ledger.engine.connect() as connection:
            rows = {row.event_id: Row(*row) for row in connection.execute(statement)}
        result.states = Counter(row.state for row in rows.values())
        state = self.sandbox.state(transactions=False)
        wallets = {player: int(w["balance"]) for player, w in state["wallets"].items()}
        result.wallets = len(wallets)
        result.calls = dict(state["request_counts"])
        log = self.sandbox.requests()
        delivered = {event_id for event_id, row in rows.items() if row.state == "delivered"}
        holds = [call for call in log if str(call["path"]).lower().endswith("/hold")]
        result.calls["holds made"] = sum(1 for call in holds if call["status"] == 200)
        result.calls["orders finding their hold expired (9006)"] = sum(
            1 for call in log if call["code"] == 9006
        )
        parked = Redemptions(self.stack.ledger).listed(include_resolved=True)
        result.divergences = [
            *(f"redemption of {p.order_id} parked: {p.reason}" for p in parked),
            *check_settled(self.history, rows),
            *check_wallets(
                expected_wallets(self.history.events, delivered, self.history.seeded), wallets
            ),
            *check_calls(self.history, rows, log),
        ]

    def close(self) -> None:
        for producer in self.producers:
            producer.stop()  # already exited, normally: this closes its log
        self.stack.close()
        self.sandbox.stop()
        self.redis.stop()


def run_soak(folder: Path, config: SoakConfig) -> SoakResult:
    folder.mkdir(parents=True, exist_ok=True)
    return Soak(folder, config).run()
