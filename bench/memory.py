"""Benchmark: a worker's memory after 100,000 events, and whether it grows.

gbq's worker and plain Celery's (the naive httpx task of ``bench/naive_app.py``) each
deliver 100,000 events (Gameball at 0 ms, no rate limit) in ten equal parts, prefork × 4
and threads × 16. After each part the benchmark reads every process of the worker
instance (the main process and its pool children) from ``/proc``: resident memory (RSS)
and its proportional share (PSS: a page shared by a prefork parent and its children
counted once, split between them; their sum is what the instance costs the host).

The leak check compares each process's RSS after the second part (warm: caches, pools
and connections made) with its RSS at the end: a worker that keeps something per event
grows with every part.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from bench.baseline import counters, send_naive_posts
from bench.common import (
    LIMITS_OFF,
    Report,
    Services,
    fresh_celery_worker,
    services,
    wait_ready,
)
from harness.processes import SandboxProcess, pool_children, wait_until
from harness.scenario import generate
from harness.stack import Process
from producers.events import Event

PARTS = 10
SETTINGS = (("prefork", 4), ("threads", 16))
GROWTH_LIMIT = 0.05  # more than 5 % of RSS between the second part and the end: growth


@dataclass(frozen=True)
class Sample:
    """One process's memory, in KiB."""

    role: str  # main, or pool N
    rss_kib: int
    pss_kib: int


def _kib(path: Path, field: str) -> int:
    with contextlib.suppress(OSError):
        for line in path.read_text().splitlines():
            if line.startswith(field):
                return int(line.split()[1])
    return 0


def instance_memory(worker: Process) -> list[Sample]:
    """The worker's main process and its pool children, now."""
    main = worker.popen.pid
    pids = [main, *sorted(pool_children(main))]
    return [
        Sample(
            "main" if pid == main else f"pool {number}",
            _kib(Path(f"/proc/{pid}/status"), "VmRSS:"),
            _kib(Path(f"/proc/{pid}/smaps_rollup"), "Pss:"),
        )
        for number, pid in enumerate(pids)
    ]


@dataclass(frozen=True)
class Trace:
    """The samples after each part, and the events delivered."""

    label: str
    parts: list[list[Sample]]
    delivered: int

    def growth(self) -> float:
        """The largest relative RSS growth of one process, second part → end."""
        warm = {sample.role: sample.rss_kib for sample in self.parts[1]}
        end = {sample.role: sample.rss_kib for sample in self.parts[-1]}
        return max((end[role] - warm[role]) / warm[role] for role in warm if role in end)


def traced(
    label: str,
    worker: Process,
    events: Sequence[Event],
    send: Callable[[Sequence[Event]], None],
    done: Callable[[], int],
) -> Trace:
    """Send ``events`` in PARTS parts, each once the one before is delivered, sampling the
    worker after each."""
    size = len(events) // PARTS
    parts = []
    for part in range(PARTS):
        send(events[part * size : (part + 1) * size])
        target = (part + 1) * size

        def reached(target: int = target) -> bool:
            return done() >= target

        wait_until(
            reached,
            timeout_s=max(300.0, size / 20),
            what=f"{label}: part {part + 1}",
            interval_s=0.5,
        )
        parts.append(instance_memory(worker))
    return Trace(label, parts, done())


def gbq_trace(
    running: Services, sandbox: SandboxProcess, events: Sequence[Event], pool: str, count: int
) -> Trace:
    running.flush_redis()
    sandbox.reset()
    sandbox.faults(reset=True)
    stack = running.stack(running.ledger("sqlite"), sandbox.url, **LIMITS_OFF)
    try:
        worker = stack.start_worker("w1", concurrency=count, pool=pool)
        stack.start_scheduler()
        wait_ready(worker)

        def send(part: Sequence[Event]) -> None:
            for start in range(0, len(part), 100):
                stack.publisher.publish_many(part[start : start + 100])

        def done() -> int:
            states = stack.states()
            return states["delivered"] + states["dead"]

        return traced(f"gbq, {pool} × {count}", worker, events, send, done)
    finally:
        running.close_stacks()


def naive_trace(
    running: Services, sandbox: SandboxProcess, events: Sequence[Event], pool: str, count: int
) -> Trace:
    worker = fresh_celery_worker(running, sandbox, latency_s=0.0, concurrency=count, pool=pool)
    url = running.redis.url
    try:
        wait_ready(worker)

        def done() -> int:
            found = counters(url)
            return found["done"] + found["failed"]

        return traced(
            f"naive Celery, {pool} × {count}",
            worker,
            events,
            lambda part: send_naive_posts(url, part),
            done,
        )
    finally:
        worker.stop()


def _mib(kib: int) -> str:
    return f"{kib / 1024:.1f}"


def rows_of(trace: Trace) -> list[list[object]]:
    end = trace.parts[-1]
    warm = {sample.role: sample.rss_kib for sample in trace.parts[1]}
    pool = [sample for sample in end if sample.role != "main"]
    main = next(sample for sample in end if sample.role == "main")
    return [
        [
            trace.label,
            trace.delivered,
            _mib(main.rss_kib),
            f"{_mib(min(s.rss_kib for s in pool))} to {_mib(max(s.rss_kib for s in pool))}"
            if pool
            else "(in the main process)",
            _mib(sum(sample.pss_kib for sample in end)),
            " / ".join(
                f"{(sample.rss_kib - warm[sample.role]) / 1024:+.1f}"
                for sample in end
                if sample.role in warm
            ),
            f"{100 * trace.growth():+.1f} %",
        ]
    ]


def run(folder: Path, *, quick: bool = False) -> Report:
    total = 5_000 if quick else 100_000
    report = Report(
        name="memory",
        title="Memory: a worker after 100,000 events",
        command="make bench BENCH=memory",
        columns=[
            "worker",
            "events",
            "main process RSS MiB",
            "each pool process RSS MiB",
            "instance PSS MiB",
            "RSS change per process, part 2 → end, MiB",
            "largest change",
        ],
    )
    events = generate(seed=41, orders=total // 3, total_events=total, prefix="M").events
    traces: list[Trace] = []
    with services(folder) as running:
        sandbox = running.sandbox()
        for pool, count in SETTINGS:
            for measure in (naive_trace, gbq_trace):
                trace = measure(running, sandbox, events, pool, count)
                traces.append(trace)
                report.rows += rows_of(trace)
    for trace in traces:
        verdict = "no growth" if trace.growth() <= GROWTH_LIMIT else "GROWS"
        report.notes.append(
            f"{trace.label}: {verdict} (largest RSS change of one process from the second "
            f"of {PARTS} parts to the end: {100 * trace.growth():+.1f} %; the limit is "
            f"{100 * GROWTH_LIMIT:.0f} %)"
        )
    report.notes += [
        (
            f"{total:,} events (the usual mix: paid, refunds, cancellations, cashback), "
            f"Gameball at 0 ms, in {PARTS} parts; each part sent once the one before was "
            "delivered, and every process of the instance read after each part."
        ),
        (
            "RSS counts every page a process maps, shared ones too: a prefork child shares "
            "its parent's pages until it writes them. PSS splits shared pages between the "
            "processes that map them; the instance's PSS is what it costs the host."
        ),
    ]
    report.data = {
        "parts": {
            trace.label: [
                [[s.role, s.rss_kib, s.pss_kib] for s in samples] for samples in trace.parts
            ]
            for trace in traces
        }
    }
    return report
