"""``gbq demo``: the whole system on embedded defaults, through an outage and a crash.

Everything runs under ``GBQ_HOME/demo``: the embedded Redis (AOF), a SQLite ledger, the
sandbox, one worker, the scheduler and the console as child processes. A realistic stream
is published in thirds (with a slice published twice, to show deduplication), in five
phases: deliveries; Gameball down (the breaker opens, events wait); Gameball back (a probe
closes the breaker, the backlog drains); the worker killed with SIGKILL mid-delivery and a
new one started; recovery. It ends with a reconciliation of the ledger and the sandbox's
wallets against balances computed from the events alone. Whatever happens (Ctrl-C
included), every child is stopped; the state stays in ``GBQ_HOME/demo`` to look at.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx
import redis
from pydantic import SecretStr
from rich.live import Live
from rich.table import Table
from rich.text import Text

from producers import embedded_redis
from producers.events import Event
from producers.keys import BREAKER_KEY
from producers.publisher import Publisher
from worker.ledger.engine import create_ledger_engine
from worker.ledger.reads import answered_already_applied
from worker.ledger.repository import Ledger
from worker.ledger.schema import migrate
from worker.rules.breaker import Breaker
from worker.sandbox.stream import generate, wallets
from worker.settings import SANDBOX_API_KEY, SANDBOX_SECRET_KEY, Settings

PIDS_FILE = "children.pids"
DEMO_SETTINGS = {
    "GBQ_SCHEDULER_TICK_S": "0.5",
    "GBQ_REDRIVE_AFTER_S": "5",
    "GBQ_LEASE_S": "10",
    "GBQ_BREAKER_COOLDOWN_S": "2",
    "GBQ_PAUSE_DELAY_S": "2",
    "GBQ_RETRY_BASE_S": "0.2",
    "GBQ_RETRY_CAP_S": "5",
    "GBQ_RATE_LIMIT_PER_S": "0",
    "GBQ_RATE_LIMIT_PER_30S": "0",
    "GBQ_METRICS_PORT": "0",
    "GBQ_GAMEBALL_READ_TIMEOUT_S": "5",
}


@dataclass
class Reconciliation:
    published: int
    duplicates_published: int
    delivered: int
    dead: int
    duplicates_prevented: int
    wallets_matching: int
    wallets_expected: int
    an_order: str  # one the stream refunded, for `gbq events`

    @property
    def ok(self) -> bool:
        return (
            self.dead == 0
            and self.delivered == self.published
            and self.wallets_matching == self.wallets_expected
        )

    def line(self) -> str:
        return (
            f"reconciliation: {self.published} published, {self.delivered} delivered, "
            f"{self.dead} dead, {self.duplicates_prevented} duplicates prevented; "
            f"wallets: {self.wallets_matching} of {self.wallets_expected} match "
            f"{'(all equal)' if self.ok else '(MISMATCH)'}"
        )


class Children:
    """Child processes, each in its own session so that a kill takes its whole group."""

    def __init__(self, folder: Path, env: dict[str, str]) -> None:
        self.folder, self.env = folder, env
        self.processes: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, name: str, *args: str) -> subprocess.Popen[bytes]:
        log = (self.folder / f"{name}.log").open("ab")
        process = subprocess.Popen(  # noqa: S603 - this interpreter, our own CLI
            [sys.executable, "-m", "worker", *args],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.processes[name] = process
        with (self.folder / PIDS_FILE).open("a") as pids:
            pids.write(f"{process.pid}\n")
        return process

    def kill(self, name: str) -> None:
        process = self.processes.pop(name)
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=30)

    def stop_all(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        deadline = time.monotonic() + 30
        for process in self.processes.values():
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=10)
        self.processes.clear()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _poll(
    check: Callable[[], bool], timeout_s: float, what: str, refresh: Callable[[], None]
) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {timeout_s:.0f}s waiting for {what}")
        refresh()
        time.sleep(0.3)  # the demo's refresh pace


class Demo:
    """One run of the demo; :meth:`run` always stops what it started."""

    def __init__(self, home: Path, *, orders: int, outage_s: float, seed: int) -> None:
        self.folder = (home / "demo").resolve()
        self.outage_s, self.seed = outage_s, seed
        embedded_redis.stop(self.folder)
        shutil.rmtree(self.folder, ignore_errors=True)
        self.folder.mkdir(parents=True)
        self.redis_url = embedded_redis.ensure_running(self.folder)
        self.redis = redis.Redis.from_url(self.redis_url, socket_timeout=5)
        database_url = f"sqlite:///{self.folder / 'gbq.db'}"
        self.ledger = Ledger(create_ledger_engine(database_url))
        migrate(self.ledger.engine)
        self.port, self.web_port = _free_port(), _free_port()
        self.console_url = f"http://127.0.0.1:{self.web_port}"
        sandbox_url = f"http://127.0.0.1:{self.port}"
        self.children = Children(
            self.folder,
            {
                **os.environ,
                **DEMO_SETTINGS,
                "GBQ_HOME": str(self.folder),
                "GBQ_REDIS_URL": self.redis_url,
                "GBQ_DATABASE_URL": database_url,
                "GBQ_GAMEBALL_BASE_URL": sandbox_url,
                "GBQ_GAMEBALL_API_KEY": SANDBOX_API_KEY,
                "GBQ_GAMEBALL_SECRET_KEY": SANDBOX_SECRET_KEY,
            },
        )
        self.http = httpx.Client(base_url=sandbox_url, timeout=10)
        self.scenario = generate(seed=seed, orders=orders, total_events=orders * 3, customers=50)
        self.duplicates = self.scenario.events[: min(100, len(self.scenario.events) // 2)]
        self.phase = Text("starting")
        self.refresh: Callable[[], None] = lambda: None
        self.started = time.monotonic()
        self.breaker_path: list[str] = []  # the breaker's states seen during a phase

    def run(
        self, *, live: bool, announce: Callable[[str], None] = lambda _: None
    ) -> Reconciliation:
        """``live``: a table redrawn in place (a terminal); otherwise ``announce`` gets a
        line as each phase begins and one with how it ended (a pipe, a CI log)."""
        try:
            self.children.start(
                "sandbox",
                "sandbox",
                "--port",
                str(self.port),
                "--rate-limit-per-s",
                "0",
                "--rate-limit-per-30s",
                "0",
                "--seed",
                str(self.seed),
            )
            self.children.start("worker", "worker", "--concurrency", "3", "--hostname", "demo1@%h")
            self.children.start("scheduler", "scheduler")
            self.children.start("web", "web", "--port", str(self.web_port))
            announce(f"console: {self.console_url} (open it in a browser while the demo runs)")
            publisher = Publisher(Settings(home=self.folder, redis_url=SecretStr(self.redis_url)))
            if live:
                with Live(self._view(), refresh_per_second=4) as screen:
                    self.refresh = lambda: screen.update(self._view())
                    self._phases(publisher, lambda _: None)
            else:
                self.refresh = self._note_breaker
                self._phases(publisher, announce)
            return self._reconcile()
        finally:
            self.phase.plain = "stopping"
            self.http.close()
            self.children.stop_all()
            self.redis.close()
            embedded_redis.stop(self.folder)
            self.ledger.engine.dispose()

    def _phases(self, publisher: Publisher, say: Callable[[str], None]) -> None:
        def phase(text: str) -> None:
            if self.phase.plain != "starting":  # how the phase before it ended
                say(self._outcome_line())
            self.phase.plain = text
            say(f"[{time.monotonic() - self.started:5.1f}s] {text}")
            self.breaker_path = [self._breaker()]
            self.refresh()

        events = self.scenario.events
        first, second = len(events) // 3, 2 * len(events) // 3
        _poll(lambda: bool(self._sandbox_state()), 30, "the sandbox", self.refresh)
        phase("1/5 publishing the first third; the worker delivers")
        self._publish(publisher, events[:first])
        _poll(lambda: self._delivered() >= first // 2, 120, "deliveries to start", self.refresh)

        phase("2/5 Gameball down: calls fail, the breaker opens, events wait in the ledger")
        self.http.post("/_sandbox/faults", json={"outage": True})
        self._publish(publisher, self.duplicates)  # the same events again: nothing doubles
        self._publish(publisher, events[first:second])
        _poll(lambda: self._breaker() == "open", 60, "the breaker to open", self.refresh)
        ends = time.monotonic() + self.outage_s
        _poll(lambda: time.monotonic() >= ends, self.outage_s + 5, "the outage", self.refresh)

        phase("3/5 Gameball back: a probe closes the breaker, the backlog drains")
        self.http.post("/_sandbox/faults", json={"reset": True})
        _poll(lambda: self._breaker() == "closed", 60, "the breaker to close", self.refresh)
        _poll(lambda: self._delivered() >= second, 120, "the backlog to drain", self.refresh)

        phase("4/5 the worker killed (SIGKILL) mid-delivery; a new worker takes over")
        self.http.post("/_sandbox/faults", json={"latency_s": 0.05})  # calls in flight
        self._publish(publisher, events[second:])
        _poll(lambda: self._in_flight() > 0, 60, "deliveries in flight", self.refresh)
        self.children.kill("worker")
        self.children.start("worker-2", "worker", "--concurrency", "3", "--hostname", "demo2@%h")

        phase("5/5 recovering: the dead worker's events go again, each delivered once")
        total = len(events)

        def settled() -> bool:
            states = self.ledger.counts_by_state()
            done = states.get("delivered", 0) + states.get("dead", 0)
            return done == total == sum(states.values())

        _poll(settled, 300, "every event to settle", self.refresh)
        phase("done")

    def _outcome_line(self) -> str:
        """How a phase ended: the ledger's figures, the breaker's states during it, and
        Gameball's calls so far."""
        self._note_breaker()
        states = self.ledger.counts_by_state()
        figures = ", ".join(
            f"{state.replace('_', ' ')} {states.get(state, 0)}"
            for state in ("pending", "in_flight", "scheduled", "delivered", "dead")
        )
        path = " → ".join(self.breaker_path)
        return f"{'':8} {figures}; breaker {path}; Gameball calls {self._calls()}"

    def _note_breaker(self) -> None:
        state = self._breaker()
        if not self.breaker_path or self.breaker_path[-1] != state:
            self.breaker_path.append(state)

    def _breaker(self) -> str:
        try:
            return Breaker.from_json(self.redis.get(BREAKER_KEY)).state.value
        except (redis.RedisError, OSError):
            return "unknown"

    def _delivered(self) -> int:
        return self.ledger.counts_by_state().get("delivered", 0)

    def _in_flight(self) -> int:
        return self.ledger.counts_by_state().get("in_flight", 0)

    def _calls(self) -> int:
        calls = self._sandbox_state().get("request_counts", {})
        return int(calls.get("total", 0)) if isinstance(calls, dict) else 0

    def _publish(self, publisher: Publisher, events: list[Event]) -> None:
        for start in range(0, len(events), 50):
            publisher.publish_many(events[start : start + 50])
            self.refresh()

    def _sandbox_state(self) -> dict[str, object]:
        try:
            state: dict[str, object] = self.http.get(
                "/_sandbox/state", params={"transactions": "0"}
            ).json()
        except httpx.HTTPError:
            return {}
        return state

    def _view(self) -> Table:
        states = self.ledger.counts_by_state()
        table = Table(title=f"gbq demo: live status (console: {self.console_url})")
        for column in (
            "phase",
            "pending",
            "in flight",
            "scheduled",
            "waiting",
            "delivered",
            "dead",
            "breaker",
            "Gameball calls",
        ):
            table.add_column(column)
        table.add_row(
            self.phase,
            *(
                str(states.get(s, 0))
                for s in ("pending", "in_flight", "scheduled", "waiting", "delivered", "dead")
            ),
            self._breaker(),
            str(self._calls()),
        )
        return table

    def _reconcile(self) -> Reconciliation:
        states = self.ledger.counts_by_state()
        balances = wallets(self.http.get("/_sandbox/state").json())
        expected = dict(self.scenario.expected)
        already = answered_already_applied(self.ledger.engine)
        return Reconciliation(
            published=len(self.scenario.events),
            duplicates_published=len(self.duplicates),
            delivered=states.get("delivered", 0),
            dead=states.get("dead", 0),
            duplicates_prevented=len(self.duplicates) + int(already or 0),
            wallets_matching=sum(balances.get(c) == b for c, b in expected.items()),
            wallets_expected=len(expected),
            an_order=self._refunded_order(),
        )

    def _refunded_order(self) -> str:
        kinds: dict[str, set[str]] = {}
        for event in self.scenario.events:
            order = getattr(event, "order_id", None)  # a cashback has none
            if order:
                kinds.setdefault(order, set()).add(event.kind)
        refunded = [order for order, seen in kinds.items() if "refunded" in seen]
        return (refunded or list(kinds) or [""])[0]


def run_demo(
    home: Path,
    *,
    orders: int,
    outage_s: float,
    seed: int,
    live: bool = True,
    announce: Callable[[str], None] = lambda _: None,
) -> Reconciliation:
    """Run the demo; ``announce`` is told the console's address once it starts."""
    return Demo(home, orders=orders, outage_s=outage_s, seed=seed).run(live=live, announce=announce)
