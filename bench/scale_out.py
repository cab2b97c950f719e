"""Benchmark 7: scale-out. 1, 2 and 4 worker instances (prefork × 4 each) share one
PostgreSQL ledger, one Redis and the sandbox answering in 50 ms, as separate hosts would;
events/s in all and per worker, to size a deployment against a Gameball rate limit.

Every instance here shares this machine's 2 cores with the others, the ledger, Redis and
the sandbox: the figure per worker is a floor for workers on hosts of their own.
"""

from __future__ import annotations

from pathlib import Path

from bench.common import Report, postgres_available, services
from bench.delivery import gbq_run
from harness.scenario import generate

LATENCY_S = 0.05
CONCURRENCY = 4
WORKERS = (1, 2, 4)


def run(folder: Path, *, quick: bool = False) -> Report:
    size = 300 if quick else 2_000
    report = Report(
        name="scale_out",
        title="7. Scale-out: worker instances on one PostgreSQL ledger, Gameball at 50 ms",
        command="make bench BENCH=scale_out",
        columns=[
            "workers",
            "processes (prefork × 4 each)",
            "events",
            "events/s",
            "events/s per worker",
            "CPU ms/event",
            "not delivered",
        ],
    )
    database = "postgresql" if postgres_available() else "sqlite"
    with services(folder) as running:
        sandbox = running.sandbox()
        for workers in WORKERS:
            events = generate(
                seed=700 + workers, orders=size // 3, total_events=size, prefix=f"X{workers}"
            ).events
            result = gbq_run(
                running,
                sandbox,
                events,
                label=f"{workers} worker(s)",
                database=database,
                concurrency=CONCURRENCY,
                latency_s=LATENCY_S,
                workers=workers,
            )
            report.rows.append(
                [
                    workers,
                    workers * CONCURRENCY,
                    result.events,
                    result.rate,
                    result.rate / workers,
                    result.cpu_ms_per_event,
                    result.failed,
                ]
            )
            report.data[str(workers)] = vars(result) | {"rate": result.rate}
    one = report.data["1"]["rate"]
    report.notes = [
        (
            f"Ledger: {database}. Throughput × {report.data['2']['rate'] / one:.2f} with 2 "
            f"workers and × {report.data['4']['rate'] / one:.2f} with 4, against 1."
        ),
        (
            "Each process holds one call at a time, so one instance of prefork × N sends at "
            "most N ÷ latency per second (80/s here); the figures show what the ledger, the "
            "breaker and the limiter cost on top. Gameball's default limits (30 per second, "
            "360 per 30 s: GBQ_RATE_LIMIT_PER_S and GBQ_RATE_LIMIT_PER_30S) are reached by "
            "one instance: add instances for availability, not speed."
        ),
        (
            "All instances share this machine's 2 cores; on hosts of their own each would "
            "keep its single-instance rate until the ledger or Gameball's limit binds."
        ),
    ]
    return report
