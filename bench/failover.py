"""Losing a machine: how long gbq takes to deliver again after its Redis primary or its
ledger's primary is lost, and what it loses with and without the settings that close
the gap (``GBQ_REDIS_MIN_REPLICAS``, ``GBQ_LEDGER_STANDBYS``).

Two checkout hosts publish at a steady rate, a worker and the scheduler deliver to the
sandbox (0 ms). Redis: a primary with two replicas and three sentinels (Debian's
redis-server), the primary SIGKILLed a third of the way in. Ledger: a PostgreSQL primary
and its streaming standby; the standby stops receiving a quarter of the way in (a lagging
standby), the primary is SIGKILLed half way and the standby promoted, so the new ledger
lacks what the old one committed meanwhile. Recovery: from the SIGKILL to the first
delivery of an event published after it. Lost: events ``publish()`` acknowledged that
were never delivered (after everything else settled).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from sqlalchemy import func, select

from bench.common import LIMITS_OFF, Report, services
from harness.pacing import on_schedule
from harness.postgres_pair import PostgresPair
from harness.processes import SandboxProcess, wait_until
from harness.scenario import generate
from harness.sentinel import SentinelGroup
from harness.stack import Stack
from producers.events import Event
from producers.publisher import Publisher
from producers.settings import PublisherSettings, multi_host_as_query
from worker.ledger.engine import create_ledger_engine
from worker.ledger.models import EventRow
from worker.ledger.schema import migrate

RATE_PER_HOST = 25  # events a second from each of two checkout hosts
EVENTS = 400
SETTLE_S = 90
SHOWN = 5  # undelivered events described in the log, each run


class Stream:
    """Two checkout hosts publishing ``events`` at a steady rate in the background."""

    def __init__(self, stack: Stack, events: Sequence[Event], min_replicas: int) -> None:
        self.answers: dict[str, tuple[str, float]] = {}  # event id → (answer, when)
        publishers = [
            Publisher(
                PublisherSettings(
                    home=stack.folder / f"checkout-{n}",
                    redis_url=stack.settings.redis_url,
                    publish_timeout_s=1.0,
                    redis_min_replicas=min_replicas,
                    redis_replica_wait_s=0.2,
                )
            )
            for n in (1, 2)
        ]
        self.publishers = publishers
        self.threads = [
            threading.Thread(target=self._publish, args=(p, events[n::2]), daemon=True)
            for n, p in enumerate(publishers)
        ]
        for thread in self.threads:
            thread.start()

    def _publish(self, publisher: Publisher, events: Sequence[Event]) -> None:
        def publish(event: Event) -> None:
            self.answers[event.event_id] = (publisher.publish(event), time.time())

        on_schedule(events, RATE_PER_HOST, publish)

    def published(self, share: float, total: int) -> Callable[[], bool]:
        return lambda: len(self.answers) >= share * total

    def finish(self) -> None:
        for thread in self.threads:
            thread.join(120)
        for publisher in self.publishers:
            wait_until(lambda p=publisher: p.spool.count() == 0, timeout_s=120, what="spools")  # type: ignore[misc]
            publisher.close()


def outcome(stack: Stack, stream: Stream, killed_at: float) -> dict[str, float]:
    """Recovery (s) and acknowledged events lost, once the rest settled."""
    ids = list(stream.answers)

    def settled() -> bool:
        try:
            states = stack.ledger.states_of(ids)
        except Exception:  # noqa: BLE001 - the ledger's first connection after a failover
            return False
        return sum(s in ("delivered", "dead") for s in states.values()) >= len(ids)

    deadline = time.monotonic() + SETTLE_S
    while time.monotonic() < deadline and not settled():
        time.sleep(0.5)  # polling a benchmark's end, not synchronising a test
    states = stack.ledger.states_of(ids)
    after = [e for e, (_, at) in stream.answers.items() if at > killed_at]
    with stack.ledger.engine.connect() as connection:
        first = connection.execute(
            select(func.min(EventRow.delivered_at)).where(EventRow.event_id.in_(after))
        ).scalar()
    undelivered = [e for e in ids if states.get(e) != "delivered"]
    for event_id in undelivered[:SHOWN]:  # what became of them, for whoever reads the log
        found = stack.ledger.get(event_id)
        print(
            f"  not delivered: {event_id} answered {stream.answers[event_id][0]!r}: "
            + (
                "unknown to the ledger"
                if found is None
                else f"{found.state} {found.dead_reason or ''} {found.last_code or ''}".rstrip()
            ),
            flush=True,
        )
    if len(undelivered) > SHOWN:
        print(f"  … and {len(undelivered) - SHOWN} more not delivered", flush=True)
    return {
        "recovery_s": (first.timestamp() - killed_at) if first else float("nan"),
        "acknowledged": len(ids),
        "lost": len(undelivered),
        "spooled": sum(answer == "spooled" for answer, _ in stream.answers.values()),
    }


def started_stack(
    folder: Path, redis_url: str, database_url: str, sandbox: SandboxProcess, **env: str
) -> Stack:
    """A worker (prefork × 2) and the scheduler on ``redis_url`` and ``database_url``."""
    folder.mkdir()
    stack = Stack(
        folder,
        redis_url=redis_url,
        database_url=database_url,
        gameball_url=sandbox.url,
        **{**LIMITS_OFF, **env},
    )
    stack.start_worker("w1", concurrency=2)
    stack.start_scheduler()
    return stack


def stream_events(seed: int, prefix: str) -> list[Event]:
    return generate(
        seed=seed, orders=EVENTS // 3, total_events=EVENTS, prefix=f"{prefix}{seed}"
    ).events


def redis_failover(
    folder: Path, sandbox: SandboxProcess, ledger: str, min_replicas: int, seed: int
) -> dict[str, float]:
    group = SentinelGroup(folder / f"redis-{seed}", replicas=2)
    stack = started_stack(
        folder / f"stack-redis-{seed}",
        group.url,
        ledger,
        sandbox,
        GBQ_REDIS_MIN_REPLICAS=str(min_replicas),
    )
    try:
        events = stream_events(seed, "R")
        stream = Stream(stack, events, min_replicas)
        wait_until(stream.published(1 / 3, len(events)), timeout_s=60, what="a third")
        killed_at = time.time()
        old = group.kill_primary()
        group.wait_failover(old)
        failover_s = time.time() - killed_at
        stream.finish()
        return {**outcome(stack, stream, killed_at), "failover_s": failover_s}
    finally:
        stack.close()
        group.stop()


def ledger_failover(
    folder: Path, sandbox: SandboxProcess, redis_url: str, standbys: int, seed: int
) -> dict[str, float]:
    pair = PostgresPair()
    url = multi_host_as_query(pair.url.replace("postgresql://", "postgresql+psycopg://", 1))
    engine = create_ledger_engine(url)
    migrate(engine)
    engine.dispose()
    stack = started_stack(
        folder / f"stack-pg-{seed}", redis_url, url, sandbox, GBQ_LEDGER_STANDBYS=str(standbys)
    )
    try:
        events = stream_events(seed, "P")
        stream = Stream(stack, events, 0)
        wait_until(stream.published(1 / 4, len(events)), timeout_s=60, what="a quarter")
        pair.stop_replication()
        wait_until(stream.published(1 / 2, len(events)), timeout_s=60, what="half")
        killed_at = time.time()
        pair.primary.kill()
        pair.promote()
        promoted_s = time.time() - killed_at
        stream.finish()
        return {**outcome(stack, stream, killed_at), "failover_s": promoted_s}
    finally:
        stack.close()
        pair.stop()


def run(folder: Path, *, quick: bool = False) -> Report:
    runs = 1 if quick else 3
    report = Report(
        name="failover",
        title="Losing a machine: Redis and ledger failover",
        command="make bench BENCH=failover",
        columns=[
            "run",
            "what failed",
            "setting",
            "events acknowledged",
            "spooled",
            "primary replaced after s",
            "delivering again after s",
            "acknowledged events lost",
        ],
    )
    results: dict[str, list[dict[str, float]]] = {}
    with services(folder) as running:
        sandbox = running.sandbox()
        for number in range(1, runs + 1):
            for replicas in (0, 1):
                sandbox.reset()
                found = redis_failover(
                    folder,
                    sandbox,
                    running.ledger("sqlite"),
                    replicas,
                    500 + 10 * number + replicas,
                )
                results.setdefault(f"redis/{replicas}", []).append(found)
                report.rows.append(
                    row(
                        number,
                        "Redis primary (Sentinel)",
                        f"GBQ_REDIS_MIN_REPLICAS={replicas}",
                        found,
                    )
                )
            for standbys in (0, 1):
                sandbox.reset()
                running.flush_redis()
                found = ledger_failover(
                    folder, sandbox, running.redis.url, standbys, 600 + 10 * number + standbys
                )
                results.setdefault(f"ledger/{standbys}", []).append(found)
                report.rows.append(
                    row(
                        number,
                        "PostgreSQL primary (standby behind)",
                        f"GBQ_LEDGER_STANDBYS={standbys}",
                        found,
                    )
                )
    report.notes = notes(results)
    report.data = {"results": results, "rate_per_host": RATE_PER_HOST, "events": EVENTS}
    return report


def row(number: int, what: str, setting: str, found: dict[str, float]) -> list[object]:
    return [
        number,
        what,
        setting,
        int(found["acknowledged"]),
        int(found["spooled"]),
        found["failover_s"],
        found["recovery_s"],
        int(found["lost"]),
    ]


def notes(results: dict[str, list[dict[str, float]]]) -> list[str]:
    def span(key: str, field: str) -> str:
        values = [r[field] for r in results.get(key, [])]
        return f"{min(values):.1f} to {max(values):.1f}" if values else "–"

    def lost(key: str) -> str:
        return ", ".join(str(int(r["lost"])) for r in results.get(key, []))

    return [
        (
            "Redis: the sentinels (down-after 1 s) named a new primary "
            f"{span('redis/1', 'failover_s')} s after the SIGKILL, and events published "
            "after it were delivered "
            f"{span('redis/1', 'recovery_s')} s after it (GBQ_REDIS_MIN_REPLICAS=1; "
            f"{span('redis/0', 'recovery_s')} s with 0). Acknowledged events lost per run: "
            f"{lost('redis/1')} with GBQ_REDIS_MIN_REPLICAS=1, {lost('redis/0')} with 0."
        ),
        (
            f"Ledger: promoted {span('ledger/1', 'failover_s')} s after the SIGKILL (the "
            f"benchmark promotes at once: an HA manager adds its own detection time); "
            f"delivering again {span('ledger/1', 'recovery_s')} s after it "
            f"(GBQ_LEDGER_STANDBYS=1; {span('ledger/0', 'recovery_s')} s with 0). Events lost "
            f"per run: {lost('ledger/1')} with GBQ_LEDGER_STANDBYS=1, {lost('ledger/0')} with 0 "
            "(the inbox forgot them once the old primary had them)."
        ),
        (
            f"Two checkout hosts at {RATE_PER_HOST} events/s each, {EVENTS} events per run, "
            "a worker (prefork × 2) and the scheduler; the sandbox at 0 ms; everything on "
            "loopback (replication lag is what loopback gives: the Redis figures with 0 are "
            "a lower bound of what a network loses)."
        ),
    ]
