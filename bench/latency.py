"""Benchmark: how long after checkout the customer's points arrive.

Events are published at a steady rate (10, 50 and 200 per second; a realistic mix, each
order's refunds right behind its paid event), with Gameball answering at once and after
100 ms. For each event: the time from ``publish()`` returning to the Gameball call
starting, and to the answer being recorded (gbq: the ledger's ``delivered_at``; the naive
task: the task's end). The same for a naive Celery + httpx task and for Celery's no-op
task (its start, no call) in the same run, interleaved by rate.

gbq's *overhead* is its latency minus Gameball's own part (the call's duration); the
naive task's likewise. ``p99 overhead ÷ naive = × R`` compares them per rate.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import redis
from sqlalchemy import select

from bench.baseline import counters, sender
from bench.common import (
    LIMITS_OFF,
    Report,
    Services,
    fresh_celery_worker,
    percentile,
    services,
    wait_ready,
)
from bench.naive_app import QUEUE, TIMES_KEY
from harness.processes import SandboxProcess, wait_until
from harness.scenario import generate
from producers.events import Event
from worker.gameball.payloads import build_request
from worker.ledger.models import AttemptRow, EventRow

RATES = (10, 50, 200)
LATENCIES_MS = (0, 100)
EVENTS_PER_ORDER = 2.4  # paid, about 1.2 refunds and 0.2 cancels (harness.scenario)


@dataclass(frozen=True)
class Timing:
    """One event: when ``publish()`` returned, when its Gameball call started, when the
    answer was recorded, and how long the call itself took (all in time.time())."""

    published: float
    call_started: float
    recorded: float
    call_s: float
    kind: str  # paid, refunded, cancelled or cashback: a refund waits for its paid event

    @property
    def to_call_s(self) -> float:
        return self.call_started - self.published

    @property
    def to_recorded_s(self) -> float:
        return self.recorded - self.published

    @property
    def overhead_s(self) -> float:
        """The latency minus Gameball's part of it."""
        return self.to_recorded_s - self.call_s


@dataclass(frozen=True)
class Setting:
    pool: str
    concurrency: int


def setting_for(latency_ms: int) -> Setting:
    """The same pool for gbq and the naive task: prefork × 2 as in the delivery benchmark;
    with 100 ms calls, enough threads for 200 events/s (20 calls at once)."""
    return Setting("prefork", 2) if latency_ms == 0 else Setting("threads", 32)


def paced(
    events: Sequence[Event], rate: int, publish: Callable[[Event], object]
) -> dict[str, float]:
    """Publish at ``rate`` per second, on a schedule (a late one is not made up by a
    burst beyond the schedule); returns when each ``publish`` returned, by event id."""
    returned: dict[str, float] = {}
    started = time.perf_counter()
    for number, event in enumerate(events):
        wait = started + number / rate - time.perf_counter()
        if wait > 0:
            time.sleep(wait)  # the publisher's pace, not a wait for a result
        publish(event)
        returned[event.event_id] = time.time()
    return returned


def gbq_timings(
    running: Services, sandbox: SandboxProcess, events: Sequence[Event], rate: int, latency_ms: int
) -> list[Timing]:
    setting = setting_for(latency_ms)
    running.flush_redis()
    sandbox.reset()
    sandbox.faults(reset=True, latency_s=latency_ms / 1000)
    stack = running.stack(running.ledger("sqlite"), sandbox.url, **LIMITS_OFF)
    try:
        worker = stack.start_worker("w1", concurrency=setting.concurrency, pool=setting.pool)
        stack.start_scheduler()
        wait_ready(worker)
        published = paced(events, rate, stack.publisher.publish)
        stack.wait_settled(len(events), timeout_s=300)
        delivered = select(EventRow.event_id, EventRow.delivered_at)
        attempts = select(AttemptRow.event_id, AttemptRow.started_at, AttemptRow.duration_s).where(
            AttemptRow.outcome == "delivered"
        )
        with stack.ledger.engine.connect() as connection:
            recorded = {row[0]: row[1] for row in connection.execute(delivered)}
            calls = {row[0]: (row[1], row[2]) for row in connection.execute(attempts)}
    finally:
        running.close_stacks()
    kinds = {event.event_id: event.kind for event in events}
    timings = []
    for event_id, returned in published.items():
        done, call = recorded.get(event_id), calls.get(event_id)
        if done is not None and call is not None:  # a dead letter has no delivered call
            timings.append(
                Timing(returned, call[0].timestamp(), done.timestamp(), call[1], kinds[event_id])
            )
    return timings


def celery_timings(
    running: Services,
    sandbox: SandboxProcess,
    events: Sequence[Event],
    rate: int,
    latency_ms: int,
    *,
    naive: bool,
) -> list[Timing]:
    setting = setting_for(latency_ms)
    worker = fresh_celery_worker(
        running,
        sandbox,
        latency_s=latency_ms / 1000,
        concurrency=setting.concurrency,
        pool=setting.pool,
    )
    url = running.redis.url
    app = sender(url)

    def send(event: Event) -> None:
        if naive:
            request = build_request(event, "v3.0")
            args = [request.path, request.body.decode(), event.event_id]
            app.send_task("bench.naive_post", args=args, queue=QUEUE)
        else:
            app.send_task("bench.noop", args=[event.event_id], queue=QUEUE)

    client = redis.Redis.from_url(url)
    try:
        wait_ready(worker)
        published = paced(events, rate, send)
        # Done or given up: a refund that raced ahead of its paid event is retried, then
        # lost after max_retries (counted, as the delivery benchmark does).
        wait_until(
            lambda: sum(counters(url)[key] for key in ("done", "failed")) >= len(events),
            timeout_s=300,
            what=f"{len(events)} tasks",
        )
        rows = [json.loads(raw) for raw in client.lrange(TIMES_KEY, 0, -1)]
    finally:
        client.close()
        worker.stop()
    kinds = {event.event_id: event.kind for event in events}
    return [
        Timing(published[key], began, ended, ended - began, kinds[key])
        for key, began, ended in rows
        if key in published
    ]


def figures(timings: Sequence[Timing]) -> dict[str, float]:
    """Percentiles in ms; ``paid_overhead`` counts paid events only (no refund waiting
    for its order's paid event), and ``lost`` what never reached Gameball."""
    out: dict[str, float] = {"measured": float(len(timings))}
    paid = [t.overhead_s for t in timings if t.kind == "paid"] or [0.0]
    for name, values in (
        ("to_call", [t.to_call_s for t in timings]),
        ("to_recorded", [t.to_recorded_s for t in timings]),
        ("overhead", [t.overhead_s for t in timings]),
        ("paid_overhead", paid),
    ):
        for share, label in ((0.5, "p50"), (0.9, "p90"), (0.99, "p99"), (1.0, "max")):
            out[f"{name}_{label}_ms"] = 1e3 * percentile(values, share)
    return out


def cases_for(
    running: Services, sandbox: SandboxProcess, events: Sequence[Event], rate: int, latency_ms: int
) -> list[tuple[str, Callable[[], list[Timing]]]]:
    """What is measured at one rate and latency, in order: Celery's no-op (at 0 ms), the
    naive task, gbq."""

    def celery(naive: bool) -> Callable[[], list[Timing]]:
        return lambda: celery_timings(running, sandbox, events, rate, latency_ms, naive=naive)

    cases = [
        ("naive Celery + httpx", celery(True)),
        ("gbq (SQLite)", lambda: gbq_timings(running, sandbox, events, rate, latency_ms)),
    ]
    return [("Celery no-op (its start)", celery(False)), *cases] if latency_ms == 0 else cases


def row(latency_ms: int, rate: int, what: str, total: int, found: dict[str, float]) -> list[object]:
    recorded = (
        f"{found['to_recorded_p50_ms']:.1f} / {found['to_recorded_p99_ms']:.1f} / "
        f"{found['to_recorded_max_ms']:.0f}"
    )
    return [
        f"{latency_ms} ms",
        rate,
        what,
        total,
        f"{found['to_call_p50_ms']:.1f} / {found['to_call_p99_ms']:.1f}",
        recorded,
        f"{found['overhead_p50_ms']:.1f} / {found['overhead_p99_ms']:.1f}",
        f"{found['paid_overhead_p50_ms']:.1f} / {found['paid_overhead_p99_ms']:.1f}",
        total - int(found["measured"]),
    ]


def run(folder: Path, *, quick: bool = False) -> Report:
    seconds = {10: 4, 50: 3, 200: 2} if quick else {10: 20, 50: 15, 200: 10}
    report = Report(
        name="latency",
        title="Latency: checkout to credited",
        command="make bench BENCH=latency",
        columns=[
            "Gameball",
            "rate/s",
            "what",
            "events",
            "to call p50 / p99 ms",
            "to recorded p50 / p99 / max ms",
            "overhead p50 / p99 ms",
            "paid events' overhead p50 / p99 ms",
            "not delivered",
        ],
    )
    results: dict[str, dict[str, float]] = {}
    with services(folder) as running:
        sandbox = running.sandbox()
        for latency_ms in LATENCIES_MS:
            for rate in RATES:
                events = generate(
                    seed=300 + rate + latency_ms,
                    orders=max(1, int(rate * seconds[rate] / EVENTS_PER_ORDER)),
                    total_events=rate * seconds[rate],
                    prefix=f"L{latency_ms}-{rate}",
                ).events
                total = len(events)  # whole orders: a few more than rate × seconds
                for what, measure in cases_for(running, sandbox, events, rate, latency_ms):
                    found = figures(measure())
                    results[f"{latency_ms}/{rate}/{what}"] = found
                    report.rows.append(row(latency_ms, rate, what, total, found))
                ours = results[f"{latency_ms}/{rate}/gbq (SQLite)"]
                naive = results[f"{latency_ms}/{rate}/naive Celery + httpx"]
                for label in ("p99", "p50"):
                    ratio = ours[f"overhead_{label}_ms"] / max(naive[f"overhead_{label}_ms"], 1e-3)
                    report.notes.append(
                        f"{latency_ms} ms, {rate}/s: {label} overhead ÷ naive = × {ratio:.2f}"
                    )
    report.notes += [
        (
            "To call: publish() returned → the Gameball call started (gbq: the delivered "
            "attempt's start in the ledger; naive: the task's start). To recorded: → the "
            "answer recorded (gbq: delivered_at; naive: the task's end). Overhead: to "
            "recorded minus the call's own duration."
        ),
        (
            "Pools: prefork × 2 at 0 ms (as the delivery benchmark), threads × 32 at 100 ms "
            "(20 calls at once at 200/s), the same for gbq and the naive task."
        ),
        (
            "A refund's latency includes waiting for its order's paid event (gbq sends it "
            "after; the naive task sends it at once, and Gameball refuses it until the paid "
            "event is there: retried, and lost after Celery's max_retries, 'not delivered')."
        ),
    ]
    report.data = {"results": results, "seconds": seconds}
    return report
