"""Benchmark: how long after checkout the customer's points arrive.

Events are published at a steady rate (10, 50 and 200 per second; a realistic mix, each
order's refunds right behind its paid event), with Gameball answering at once and after
100 ms. For each event: the time from ``publish()`` returning to the Gameball call
starting, and to the answer being recorded (gbq: the ledger's ``delivered_at``; the naive
task: the task's end). The same for a naive Celery + httpx task and for Celery's no-op
task (its start, no call) in the same run, interleaved by rate.

gbq's *overhead* is its latency minus Gameball's own part: the latency the sandbox adds
to every call (the same for both; the sandbox's own handling of a request, identical for
both, stays in) and, for a refund or cancellation, the time until what it must follow
(its order's paid event and earlier reversals) was answered and recorded, which gbq waits
for by design and the naive task does not (it sends at once and retries what Gameball
refuses). The naive task's overhead likewise. ``p99 overhead ÷ naive = × R`` compares
them per rate.

What that wait costs is measured apart: orders whose refund is published right after its
paid event, the time from the paid event's call starting to the refund's (the target: at
most twice Gameball's latency, no sweep waited for).
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
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
from harness.pacing import on_schedule
from harness.processes import SandboxProcess, wait_until
from harness.scenario import START, generate
from harness.stack import Stack
from producers.events import Event, OrderPaid, OrderRefunded
from worker.gameball.payloads import build_request
from worker.ledger.models import AttemptRow, EventRow

RATES = (10, 50, 200)
LATENCIES_MS = (0, 100)
EVENTS_PER_ORDER = 2.4  # paid, about 1.2 refunds and 0.2 cancels (harness.scenario)
REVERSALS = ("refunded", "cancelled")
RUNS = 3  # every figure three times, interleaved (this machine varies run to run)
PAIRS, PAIRS_PER_S = 60, 5  # orders whose refund is published right after its paid event
WARM_UP = 40  # events delivered before each measured stream, not measured


@dataclass(frozen=True)
class Timing:
    """One event: when ``publish()`` returned, when its Gameball call started, when the
    answer was recorded, and how long the call took as its client timed it (all in
    time.time())."""

    published: float
    call_started: float
    recorded: float
    call_s: float
    kind: str  # paid, refunded, cancelled or cashback: a refund waits for its paid event
    waited_s: float = 0.0  # for what it follows by its order to be answered and recorded
    gameball_s: float = 0.0  # how long the sandbox was told to take per call

    @property
    def to_call_s(self) -> float:
        return self.call_started - self.published

    @property
    def to_recorded_s(self) -> float:
        return self.recorded - self.published

    @property
    def overhead_s(self) -> float:
        """The latency minus Gameball's part of it: the latency the sandbox adds to each
        call, the same for gbq and the naive task, and what it waited for. Each client's
        own timing of its call is not used: it holds that client's own work (httpx's
        ``Client`` path for the naive task; a bare transport for gbq)."""
        return self.to_recorded_s - self.gameball_s - self.waited_s


def with_order_waits(timings: dict[str, Timing], events: Sequence[Event]) -> list[Timing]:
    """``timings`` (by event id) with how long each refund or cancellation waited, after
    its publishing, for the events it follows in its order (its paid event and earlier
    reversals, by occurrence) to be recorded: gbq sends it only then."""
    by_order: dict[str, list[Event]] = {}
    for event in events:
        order_id = getattr(event, "order_id", None)
        if order_id is not None:
            by_order.setdefault(order_id, []).append(event)
    out = []
    for event in events:
        timing = timings.get(event.event_id)
        if timing is None:
            continue
        order_id = getattr(event, "order_id", None)
        if order_id is None or event.kind not in REVERSALS:
            out.append(timing)
            continue
        position = (event.occurred_at, event.event_id)
        before = [
            timings[other.event_id].recorded
            for other in by_order[order_id]
            if (other.occurred_at, other.event_id) < position and other.event_id in timings
        ]
        waited = max(0.0, max(before, default=0.0) - timing.published)
        out.append(dataclasses.replace(timing, waited_s=waited))
    return out


@dataclass(frozen=True)
class Setting:
    pool: str
    concurrency: int


def setting_for(latency_ms: int) -> Setting:
    """The same pool for gbq and the naive task: prefork × 2 as in the delivery benchmark;
    with 100 ms calls, enough threads for 200 events/s (20 calls at once)."""
    return Setting("prefork", 2) if latency_ms == 0 else Setting("threads", 32)


def warm_up_events(latency_ms: int) -> list[Event]:
    """Sent and delivered before a measured stream, not measured: every pool process's
    first tasks (imports, connections, caches) are a start-up cost, not a latency."""
    return generate(
        seed=7, orders=WARM_UP // 3, total_events=WARM_UP, prefix=f"W{time.monotonic_ns()}"
    ).events


def paced(
    events: Sequence[Event], rate: int, publish: Callable[[Event], object]
) -> dict[str, float]:
    """Publish at ``rate`` per second, on a schedule (a late one is not made up by a
    burst beyond the schedule); returns when each ``publish`` returned, by event id."""
    returned = on_schedule(events, rate, publish)
    return {event.event_id: at for event, at in zip(events, returned, strict=True)}


@contextmanager
def warm_stack(
    running: Services, sandbox: SandboxProcess, latency_ms: int
) -> Iterator[tuple[Stack, int]]:
    """A fresh gbq stack (SQLite ledger, the setting for ``latency_ms``) against the
    sandbox answering after ``latency_ms``, its worker warmed up; the stack and how many
    warm-up events its ledger holds. Closed after."""
    setting = setting_for(latency_ms)
    running.flush_redis()
    sandbox.reset()
    sandbox.faults(reset=True, latency_s=latency_ms / 1000)
    stack = running.stack(running.ledger("sqlite"), sandbox.url, **LIMITS_OFF)
    try:
        worker = stack.start_worker("w1", concurrency=setting.concurrency, pool=setting.pool)
        stack.start_scheduler()
        wait_ready(worker)
        warm = warm_up_events(latency_ms)
        for event in warm:
            stack.publisher.publish(event)
        stack.wait_settled(len(warm), timeout_s=120)
        yield stack, len(warm)
    finally:
        running.close_stacks()


def gbq_timings(
    running: Services, sandbox: SandboxProcess, events: Sequence[Event], rate: int, latency_ms: int
) -> list[Timing]:
    with warm_stack(running, sandbox, latency_ms) as (stack, warmed):
        published = paced(events, rate, stack.publisher.publish)
        stack.wait_settled(warmed + len(events), timeout_s=300)
        delivered = select(EventRow.event_id, EventRow.delivered_at)
        attempts = select(AttemptRow.event_id, AttemptRow.started_at, AttemptRow.duration_s).where(
            AttemptRow.outcome == "delivered"
        )
        with stack.ledger.engine.connect() as connection:
            recorded = {row[0]: row[1] for row in connection.execute(delivered)}
            calls = {row[0]: (row[1], row[2]) for row in connection.execute(attempts)}
    kinds = {event.event_id: event.kind for event in events}
    timings = {}
    for event_id, returned in published.items():
        done, call = recorded.get(event_id), calls.get(event_id)
        if done is not None and call is not None:  # a dead letter has no delivered call
            timings[event_id] = Timing(
                returned,
                call[0].timestamp(),
                done.timestamp(),
                call[1],
                kinds[event_id],
                gameball_s=latency_ms / 1000,
            )
    return with_order_waits(timings, events)


def pair_gaps(running: Services, sandbox: SandboxProcess, latency_ms: int) -> list[float]:
    """PAIRS orders, each a paid event and a refund published right after it (PAIRS_PER_S
    orders a second): for each, the time from the paid event's call starting to the
    refund's, in seconds."""
    orders = [
        (
            OrderPaid(
                order_id=f"P{latency_ms}-{n}",
                customer_id=f"c-pair-{n}",
                occurred_at=START + timedelta(seconds=2 * n),
                total_price=Decimal(100),
                total_paid=Decimal(100),
            ),
            OrderRefunded(
                order_id=f"P{latency_ms}-{n}",
                refund_id=f"P{latency_ms}-{n}-R",
                customer_id=f"c-pair-{n}",
                occurred_at=START + timedelta(seconds=2 * n + 1),
                amount=Decimal(10),
            ),
        )
        for n in range(PAIRS)
    ]
    with warm_stack(running, sandbox, latency_ms) as (stack, warmed):

        def publish_pair(order: tuple[OrderPaid, OrderRefunded]) -> None:
            stack.publisher.publish(order[0])
            stack.publisher.publish(order[1])

        on_schedule(orders, PAIRS_PER_S, publish_pair)
        stack.wait_settled(warmed + 2 * PAIRS, timeout_s=300)
        attempts = select(AttemptRow.event_id, AttemptRow.started_at).where(
            AttemptRow.outcome == "delivered"
        )
        with stack.ledger.engine.connect() as connection:
            calls = {row[0]: row[1].timestamp() for row in connection.execute(attempts)}
    return [
        calls[refund.event_id] - calls[paid.event_id]
        for paid, refund in orders
        if paid.event_id in calls and refund.event_id in calls
    ]


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
        warm = warm_up_events(latency_ms)
        for event in warm:
            send(event)
        wait_until(
            lambda: sum(counters(url)[key] for key in ("done", "failed")) >= len(warm),
            timeout_s=120,
            what="the warm-up tasks",
        )
        published = paced(events, rate, send)
        # Done or given up: a refund that raced ahead of its paid event is retried, then
        # lost after max_retries (counted, as the delivery benchmark does).
        wait_until(
            lambda: (
                sum(counters(url)[key] for key in ("done", "failed")) >= len(warm) + len(events)
            ),
            timeout_s=300,
            what=f"{len(events)} tasks",
        )
        rows = [json.loads(raw) for raw in client.lrange(TIMES_KEY, 0, -1)]
    finally:
        client.close()
        worker.stop()
    kinds = {event.event_id: event.kind for event in events}
    return [
        Timing(
            published[key], began, ended, ended - began, kinds[key], gameball_s=latency_ms / 1000
        )
        for key, began, ended in rows
        if key in published
    ]  # no order wait: the naive task sends at once (and retries what Gameball refuses)


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


def row(
    run: int, latency_ms: int, rate: int, what: str, total: int, found: dict[str, float]
) -> list[object]:
    recorded = (
        f"{found['to_recorded_p50_ms']:.1f} / {found['to_recorded_p99_ms']:.1f} / "
        f"{found['to_recorded_max_ms']:.0f}"
    )
    return [
        run,
        f"{latency_ms} ms",
        rate,
        what,
        total,
        f"{found['to_call_p50_ms']:.1f} / {found['to_call_p99_ms']:.1f}",
        recorded,
        (
            f"{found['overhead_p50_ms']:.1f} / {found['overhead_p90_ms']:.1f} / "
            f"{found['overhead_p99_ms']:.1f}"
        ),
        f"{found['paid_overhead_p50_ms']:.1f} / {found['paid_overhead_p99_ms']:.1f}",
        total - int(found["measured"]),
    ]


def ratio_lines(results: dict[str, dict[str, float]], runs: int) -> list[str]:
    """``p99 overhead ÷ naive = × R`` (and p50) per latency and rate, each run's and the
    verdict against the targets (p99 ≤ × 1, p50 ≤ × 1.2) in every run."""
    lines = []
    for latency_ms in LATENCIES_MS:
        for rate in RATES:
            for label, target in (("p99", 1.0), ("p50", 1.2)):
                ratios = []
                for run in range(1, runs + 1):
                    ours = results[f"{run}/{latency_ms}/{rate}/gbq (SQLite)"]
                    naive = results[f"{run}/{latency_ms}/{rate}/naive Celery + httpx"]
                    key = f"overhead_{label}_ms"
                    ratios.append(ours[key] / max(naive[key], 1e-3))
                each = ", ".join(f"× {ratio:.2f}" for ratio in ratios)
                verdict = "met" if max(ratios) <= target else f"not met (target × {target})"
                lines.append(
                    f"{latency_ms} ms, {rate}/s: {label} overhead ÷ naive = × "
                    f"{sorted(ratios)[len(ratios) // 2]:.2f} (runs: {each}; {verdict})"
                )
    return lines


def pair_lines(gaps: dict[str, list[float]]) -> list[str]:
    lines = []
    for latency_ms in LATENCIES_MS:
        runs = [value for key, value in gaps.items() if key.endswith(f"/{latency_ms}")]
        figures_ms = [
            (1e3 * percentile(g, 0.5), 1e3 * percentile(g, 0.99), 1e3 * max(g)) for g in runs if g
        ]
        each = "; ".join(f"p50 {a:.1f}, p99 {b:.1f}, max {c:.1f} ms" for a, b, c in figures_ms)
        bound = 2 * latency_ms
        worst = max((c for _, _, c in figures_ms), default=float("nan"))
        verdict = (
            f"max {worst:.1f} ms ≤ {bound} ms: met"
            if latency_ms and worst <= bound
            else f"max {worst:.1f} ms against {bound} ms"
        )
        lines.append(
            f"Gameball {latency_ms} ms: a refund published right after its paid event "
            f"reached Gameball after the paid event's call started by ({each}); {verdict}"
        )
    return lines


def run(folder: Path, *, quick: bool = False) -> Report:
    seconds = {10: 4, 50: 3, 200: 2} if quick else {10: 20, 50: 15, 200: 10}
    runs = 1 if quick else RUNS
    report = Report(
        name="latency",
        title="Latency: checkout to credited",
        command="make bench BENCH=latency",
        columns=[
            "run",
            "Gameball",
            "rate/s",
            "what",
            "events",
            "to call p50 / p99 ms",
            "to recorded p50 / p99 / max ms",
            "overhead p50 / p90 / p99 ms",
            "paid events' overhead p50 / p99 ms",
            "not delivered",
        ],
    )
    results: dict[str, dict[str, float]] = {}
    gaps: dict[str, list[float]] = {}
    with services(folder) as running:
        sandbox = running.sandbox()
        for number in range(1, runs + 1):
            for latency_ms in LATENCIES_MS:
                for rate in RATES:
                    events = generate(
                        seed=300 + rate + latency_ms,
                        orders=max(1, int(rate * seconds[rate] / EVENTS_PER_ORDER)),
                        total_events=rate * seconds[rate],
                        prefix=f"L{number}-{latency_ms}-{rate}",
                    ).events
                    total = len(events)  # whole orders: a few more than rate × seconds
                    for what, measure in cases_for(running, sandbox, events, rate, latency_ms):
                        found = figures(measure())
                        results[f"{number}/{latency_ms}/{rate}/{what}"] = found
                        report.rows.append(row(number, latency_ms, rate, what, total, found))
                gaps[f"{number}/{latency_ms}"] = pair_gaps(running, sandbox, latency_ms)
    report.notes += ratio_lines(results, runs)
    report.notes += pair_lines(gaps)
    report.notes += [
        (
            "To call: publish() returned → the Gameball call started (gbq: the delivered "
            "attempt's start in the ledger; naive: the task's start). To recorded: → the "
            "answer recorded (gbq: delivered_at, the answer's time, its commit follows; "
            "naive: the task's end). Overhead: to recorded minus the latency the sandbox "
            "adds to each call (the same for both: each client's own timing of its call "
            "would count its HTTP client's work as Gameball's) and, for gbq's refunds and "
            "cancellations, minus the time until what they follow in their order was "
            "recorded (its cost is the refund-after-paid line above)."
        ),
        (
            "Pools: prefork × 2 at 0 ms (as the delivery benchmark), threads × 32 at 100 ms "
            "(20 calls at once at 200/s), the same for gbq and the naive task."
        ),
        (
            "The naive task sends a refund at once, and Gameball refuses it until its paid "
            "event is there: retried, and lost after Celery's max_retries ('not delivered')."
        ),
    ]
    report.data = {"results": results, "seconds": seconds, "runs": runs, "pair_gaps_s": gaps}
    return report
