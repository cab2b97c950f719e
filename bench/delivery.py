"""Benchmark 2: delivery throughput, end to end (publish → Gameball acceptance).

Same machine, same Redis, same sandbox (no rate limit), same worker settings (prefork,
2 processes, prefetch 1, late acks):

- plain Celery with a no-op task: the ceiling of a Celery worker on this machine;
- a naive Celery task that posts with httpx and ``autoretry_for``: what users write by hand;
- gbq: ledger, lease, ordering gate, breaker, limiter, attempt record.

Then with 50 ms of Gameball latency, where concurrency matters: pools compared.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import func, select

from bench.baseline import counters, send_naive_posts, send_noops
from bench.common import (
    LIMITS_OFF,
    Report,
    Services,
    fresh_celery_worker,
    postgres_available,
    postgres_server_cpu_s,
    processes_cpu_s,
    services,
    wait_ready,
)
from harness.processes import SandboxProcess, wait_until
from harness.scenario import generate
from harness.stack import Process
from producers.events import Event
from worker.ledger.models import EventRow

BATCH = 100


@dataclass
class Run:
    label: str
    events: int
    seconds: float
    cpu_s: float
    failed: int = 0
    server_cpu_s: float | None = None  # the PostgreSQL server's, for a PostgreSQL ledger

    @property
    def rate(self) -> float:
        return self.events / self.seconds

    @property
    def cpu_ms_per_event(self) -> float:
        return 1e3 * self.cpu_s / self.events

    @property
    def server_ms_per_event(self) -> str:
        return "" if self.server_cpu_s is None else f"{1e3 * self.server_cpu_s / self.events:.2f}"


def measure(
    label: str,
    processes: Sequence[Process],
    send: Callable[[], None],
    done: Callable[[], int | None],
    total: int,
    failed: Callable[[], int] = lambda: 0,
) -> Run:
    """Time from the first publish to the last acceptance, and the workers' CPU."""
    cpu_before = processes_cpu_s(processes)
    started = time.perf_counter()
    send()
    wait_until(
        lambda: (done() or 0) >= total,
        timeout_s=max(120.0, total / 5),
        what=f"{label}: {total} events",
        interval_s=0.05,
    )
    seconds = time.perf_counter() - started
    cpu_s = processes_cpu_s(processes) - cpu_before
    return Run(label, total, seconds, cpu_s, failed())


def gbq_run(
    running: Services,
    sandbox: SandboxProcess,
    events: Sequence[Event],
    *,
    label: str,
    database: str = "sqlite",
    ledger_url: str | None = None,
    concurrency: int = 2,
    pool: str = "prefork",
    latency_s: float = 0.0,
    workers: int = 1,
) -> Run:
    """gbq end to end on a fresh ledger of kind ``database``, or on ``ledger_url``, with
    ``workers`` worker instances of ``pool × concurrency`` each."""
    running.flush_redis()
    sandbox.reset()
    sandbox.faults(reset=True, latency_s=latency_s)
    stack = running.stack(ledger_url or running.ledger(database), sandbox.url, **LIMITS_OFF)
    started_workers = [
        stack.start_worker(f"w{number}", concurrency=concurrency, pool=pool)
        for number in range(1, workers + 1)
    ]
    scheduler = stack.start_scheduler()
    for worker in started_workers:
        wait_ready(worker)

    def send() -> None:
        for start in range(0, len(events), BATCH):
            stack.publisher.publish_many(events[start : start + BATCH])

    started = datetime.now(UTC)

    def settled(dead_only: bool = False) -> int:
        """This run's settled events, by index range: a poll must not scan a big ledger."""
        dead = select(func.count()).where(EventRow.state == "dead", EventRow.updated_at >= started)
        delivered = select(func.count()).where(EventRow.delivered_at >= started)
        with stack.ledger.engine.connect() as connection:
            count = int(connection.execute(dead).scalar() or 0)
            if not dead_only:
                count += int(connection.execute(delivered).scalar() or 0)
        return count

    server_before = postgres_server_cpu_s() if database == "postgresql" else None
    try:
        run = measure(
            label,
            [*started_workers, scheduler],
            send,
            settled,
            len(events),
            failed=lambda: settled(dead_only=True),
        )
        if server_before is not None:  # read while the run's backends live: one that
            # has exited is counted only once its postmaster has reaped it
            run.server_cpu_s = postgres_server_cpu_s() - server_before
    finally:
        running.close_stacks()
    return run


def celery_run(
    running: Services,
    sandbox: SandboxProcess,
    events: Sequence[Event],
    *,
    label: str,
    naive: bool,
    concurrency: int = 2,
    pool: str = "prefork",
    latency_s: float = 0.0,
) -> Run:
    worker = fresh_celery_worker(
        running, sandbox, latency_s=latency_s, concurrency=concurrency, pool=pool
    )
    url = running.redis.url
    try:
        wait_ready(worker)
        run = measure(
            label,
            [worker],
            (lambda: send_naive_posts(url, events))
            if naive
            else (lambda: send_noops(url, len(events))),
            lambda: sum(counters(url)[key] for key in ("done", "failed")),
            len(events),
            failed=lambda: counters(url)["failed"],
        )
    finally:
        worker.stop()
    return run


@dataclass(frozen=True)
class Case:
    key: str
    latency_ms: int
    what: str  # noop, naive or gbq
    pool: str = "prefork"
    concurrency: int = 2
    database: str = "sqlite"

    @property
    def label(self) -> str:
        if self.what == "noop":
            return "Celery no-op task (ceiling)"
        if self.what == "naive":
            return "naive Celery + httpx autoretry"
        return f"gbq ({'SQLite' if self.database == 'sqlite' else 'PostgreSQL'} ledger)"


# The headline cases run RUNS times, interleaved (this machine's speed varies by tens of
# percent from one minute to the next); the pool comparisons once.
HEADLINE = [
    Case("noop", 0, "noop"),
    Case("naive", 0, "naive"),
    Case("gbq", 0, "gbq"),
    Case("gbq_pg", 0, "gbq", database="postgresql"),
]
RUNS = 3
CASES = [
    Case("gbq_prefork_4", 0, "gbq", concurrency=4),
    Case("gbq_threads_8", 0, "gbq", pool="threads", concurrency=8),
    Case("naive_50", 50, "naive"),
    Case("naive_50_prefork_8", 50, "naive", concurrency=8),
    Case("gbq_50", 50, "gbq"),
    Case("gbq_50_prefork_8", 50, "gbq", concurrency=8),
    Case("gbq_50_prefork_16", 50, "gbq", concurrency=16),
    Case("gbq_50_threads_16", 50, "gbq", pool="threads", concurrency=16),
    Case("gbq_50_threads_32", 50, "gbq", pool="threads", concurrency=32),
]
# Targets (the latency issue): PostgreSQL's CPU per event ÷ the naive task's, and the
# delivery rate ÷ the naive task's and ÷ the no-op ceiling's, on both ledgers
CPU_TARGET, NAIVE_TARGET, NOOP_TARGET = 1.3, 1.1, 0.5


def measure_case(
    running: Services, sandbox: SandboxProcess, case: Case, sample: Sequence[Event]
) -> Run:
    latency_s = case.latency_ms / 1000
    if case.what == "gbq":
        return gbq_run(
            running,
            sandbox,
            sample,
            label=case.label,
            database=case.database,
            pool=case.pool,
            concurrency=case.concurrency,
            latency_s=latency_s,
        )
    return celery_run(
        running,
        sandbox,
        sample,
        label=case.label,
        naive=case.what == "naive",
        pool=case.pool,
        concurrency=case.concurrency,
        latency_s=latency_s,
    )


def target_lines(rounds: list[dict[str, Run]]) -> list[str]:
    """Per run: each ledger's rate ÷ the naive task's and ÷ the no-op ceiling's, and its CPU
    per event ÷ the naive task's (PostgreSQL's server beside it); then the verdicts."""
    lines: list[str] = []
    verdicts: dict[str, list[bool]] = {}
    for number, runs in enumerate(rounds, start=1):
        noop, naive = runs["noop"], runs["naive"]
        parts = []
        for key, name in (("gbq", "SQLite"), ("gbq_pg", "PostgreSQL")):
            ours = runs.get(key)
            if ours is None:
                continue
            to_naive, to_noop = ours.rate / naive.rate, ours.rate / noop.rate
            cpu = ours.cpu_ms_per_event / naive.cpu_ms_per_event
            server = f", its server {ours.server_ms_per_event} ms" if ours.server_cpu_s else ""
            parts.append(
                f"{name} ÷ naive × {to_naive:.2f}, ÷ no-op × {to_noop:.2f}, CPU ÷ naive "
                f"× {cpu:.2f} ({ours.cpu_ms_per_event:.2f} ms{server})"
            )
            verdicts.setdefault(f"{name} rate ÷ naive ≥ × {NAIVE_TARGET}", []).append(
                to_naive >= NAIVE_TARGET
            )
            verdicts.setdefault(f"{name} rate ÷ no-op ≥ × {NOOP_TARGET}", []).append(
                to_noop >= NOOP_TARGET
            )
            if key == "gbq_pg":
                verdicts.setdefault(f"PostgreSQL CPU ÷ naive ≤ × {CPU_TARGET}", []).append(
                    cpu <= CPU_TARGET
                )
        lines.append(
            f"Run {number} (prefork × 2, 0 ms; naive {naive.rate:.0f}/s at "
            f"{naive.cpu_ms_per_event:.2f} ms CPU, no-op {noop.rate:.0f}/s): " + "; ".join(parts)
        )
    for target, met in verdicts.items():
        lines.append(f"Target {target}: met in {sum(met)} of {len(met)} runs")
    return lines


def run(folder: Path, *, quick: bool = False) -> Report:
    sizes = {0: 300, 50: 200} if quick else {0: 3_000, 50: 1_500}
    events = {
        latency: generate(
            seed=200 + latency, orders=n // 3, total_events=n, prefix=f"D{latency}"
        ).events
        for latency, n in sizes.items()
    }
    report = Report(
        name="delivery",
        title="2. Delivery throughput: publish → Gameball acceptance",
        command="make bench BENCH=delivery",
        columns=[
            "run",
            "Gameball latency",
            "what",
            "pool × concurrency",
            "events",
            "events/s",
            "CPU ms/event",
            "PostgreSQL server CPU ms/event",
            "not delivered",
        ],
    )

    def measured(number: int, case: Case) -> Run:
        result = measure_case(running, sandbox, case, events[case.latency_ms])
        report.rows.append(
            [
                number,
                f"{case.latency_ms} ms",
                case.label,
                f"{case.pool} × {case.concurrency}",
                result.events,
                result.rate,
                result.cpu_ms_per_event,
                result.server_ms_per_event,
                result.failed,
            ]
        )
        return result

    with services(folder) as running:
        sandbox = running.sandbox()
        headline = [c for c in HEADLINE if c.database != "postgresql" or postgres_available()]
        rounds = [
            {case.key: measured(number, case) for case in headline}
            for number in range(1, (1 if quick else RUNS) + 1)
        ]
        runs: dict[str, Run] = dict(rounds[-1])
        for case in CASES:
            runs[case.key] = measured(1, case)
    best = max((c for c in CASES if c.key.startswith("gbq_50")), key=lambda c: runs[c.key].rate)
    report.notes = [
        *target_lines(rounds),
        (
            f"With 50 ms per call the best setting measured was {best.pool} × "
            f"{best.concurrency}: {runs[best.key].rate:.0f} events/s."
        ),
        (
            "CPU is the workers' (and for gbq the scheduler's) user+system time, prefork "
            "children included; Redis, the sandbox and the publisher are not counted. All of "
            "them share the machine's cores. PostgreSQL's server CPU is every postgres "
            "process's over the run, the benchmark's own progress polls included."
        ),
        (
            "The events are a realistic mix (paid, partial refunds, cancels, cashback); "
            "'not delivered' is dead letters for gbq and tasks that exhausted their retries "
            "for the naive task (a refund that raced ahead of its paid event, for example)."
        ),
    ]
    report.data = {
        "rounds": [
            {key: vars(value) | {"rate": value.rate} for key, value in runs_.items()}
            for runs_ in rounds
        ],
        "cases": {key: vars(value) | {"rate": value.rate} for key, value in runs.items()},
    }
    return report
