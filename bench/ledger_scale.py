"""Benchmark 6: the ledger with a million rows in it.

Each database is measured small (5,000 settled events: every query finds what it looks
for, a full page of dead letters included) and then with 1,000,000 (99 % delivered,
1 % dead) and their 1,000,000 attempt rows: the time of each query on the delivery and
sweep paths (median of many runs), and the end-to-end delivery rate (prefork × 2).
The claim and sweep queries are index seeks, so their times must stay flat.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import redis
from prometheus_client import CollectorRegistry
from sqlalchemy import Engine, bindparam, text

from bench.common import Report, Services, postgres_available, services
from bench.delivery import gbq_run
from harness.processes import SandboxProcess
from harness.scenario import generate
from producers.spool import Spool
from worker.coordination.ratelimit import RateLimiter, RateLimits
from worker.ledger.core import new_event
from worker.ledger.deadletters import DeadFilter, DeadLetters
from worker.ledger.engine import create_ledger_engine
from worker.ledger.models import UtcDateTime
from worker.ledger.repository import Ledger
from worker.ops.metrics import LedgerCollector
from worker.ops.status import collect
from worker.settings import Settings

# What operators read; the target is ≤ × 2 at 1,000,000 rows (issue 15).
SMALL = 5_000  # the baseline: 50 dead letters, a full page of `gbq dlq list`
OPERATOR_READS = (
    "gbq dlq list: newest 50 and the total",
    "gbq status: every ledger and Redis figure",
    "metrics scrape: every family",
)
COLUMNS = (
    "event_id, kind, order_id, customer_id, payload, occurred_at, published_at, state, "
    "attempts, window_credit_s, last_outcome, last_status, dead_reason, first_attempt_at, "
    "last_attempt_at, created_at, updated_at, delivered_at"
)


def fill(engine: Engine, rows: int, *, days: int = 1) -> float:
    """Insert ``rows`` settled events (1 % dead) and one attempt each, in SQL, settled
    evenly over the last ``days`` days; returns seconds."""
    ledger = Ledger(engine)
    template = generate(seed=600, orders=1, total_events=1).events[0]
    now = datetime.now(UTC)
    ledger.ingest([new_event(template, None)], now - timedelta(days=1))
    per_day = -(-rows // days)
    events = text(
        "WITH RECURSIVE n(i) AS (SELECT CAST(:first AS INTEGER) UNION ALL SELECT i + 1 FROM n "
        "WHERE i < :last) "
        f"INSERT INTO gbq_events ({COLUMNS}) "
        "SELECT 'paid:F-' || n.i, 'paid', 'F-' || n.i, 'c-' || (n.i % 5000), t.payload, "
        "t.occurred_at, :at, "
        "CASE WHEN n.i % 100 = 0 THEN 'dead' ELSE 'delivered' END, 1, 0, "
        "CASE WHEN n.i % 100 = 0 THEN 'dead' ELSE 'delivered' END, "
        "CASE WHEN n.i % 100 = 0 THEN 400 ELSE 200 END, "
        "CASE WHEN n.i % 100 = 0 THEN 'rejected' ELSE NULL END, "
        ":at, :at, :at, :at, CASE WHEN n.i % 100 = 0 THEN NULL ELSE :at END "
        "FROM n, gbq_events t WHERE t.event_id = :template"
    ).bindparams(bindparam("at", type_=UtcDateTime()))
    started = time.perf_counter()
    with engine.begin() as connection:
        for day in range(days):
            first, last = day * per_day + 1, min(rows, (day + 1) * per_day)
            connection.execute(
                events,
                {
                    "first": first,
                    "last": last,
                    "at": now - timedelta(days=day + 1),
                    "template": template.event_id,
                },
            )
        connection.execute(
            text(
                "INSERT INTO gbq_attempts (event_id, attempt_no, worker, started_at, "
                "duration_s, outcome, reason, status) SELECT event_id, 1, 'bench', created_at, "
                "0.01, last_outcome, 'accepted', last_status FROM gbq_events "
                "WHERE event_id LIKE 'paid:F-%'"
            )
        )
        connection.execute(
            text("DELETE FROM gbq_events WHERE event_id = :id"), {"id": template.event_id}
        )
    with engine.connect() as connection:
        connection.execute(text("ANALYZE"))
        connection.commit()
    return time.perf_counter() - started


def query_times(engine: Engine, runs: int, redis_url: str, folder: Path) -> dict[str, float]:
    """Median microseconds of each query on the hot paths and of each operator read."""
    ledger, dead = Ledger(engine), DeadLetters(Ledger(engine))
    client = redis.Redis.from_url(redis_url)
    limiter = RateLimiter(client, RateLimits.from_settings(Settings.model_construct()))
    spool = Spool(folder / f"spool-{time.monotonic_ns()}.db")
    scrape = LedgerCollector(ledger, client, CollectorRegistry())
    now = datetime.now(UTC)
    fresh = generate(seed=601, orders=runs, total_events=runs, prefix="Q").events
    ingests = iter(fresh)
    claims = iter(fresh)

    def ingest() -> None:
        ledger.ingest([new_event(next(ingests), None)], now)

    def claim() -> None:
        event = next(claims)
        assert ledger.claim(event.event_id, "bench", now, now + timedelta(seconds=60)) is not None

    probes: dict[str, Callable[[], object]] = {
        "ingest one event": ingest,
        "claim (lease) one event": claim,
        "order facts (ordering gate)": lambda: ledger.order_facts("F-4242"),
        "take due retries (sweep)": lambda: ledger.take_due(now, 500),
        "take expired leases (sweep)": lambda: ledger.take_expired_leases(
            now - timedelta(days=2), 500
        ),
        "take stale pending (sweep)": lambda: ledger.take_stale_pending(
            now - timedelta(days=2), now, 500
        ),
        "waiting due (sweep)": lambda: ledger.waiting_due(now, 500),
        OPERATOR_READS[0]: lambda: (dead.find(DeadFilter(), limit=50), dead.count(DeadFilter())),
        OPERATOR_READS[1]: lambda: collect(ledger.engine, client, limiter, spool),
        OPERATOR_READS[2]: lambda: list(scrape.collect()),
    }
    times: dict[str, float] = {}
    for name, probe in probes.items():
        count = runs if name not in OPERATOR_READS else max(20, runs // 5)
        samples = []
        for _ in range(count):
            started = time.perf_counter()
            probe()
            samples.append(time.perf_counter() - started)
        times[name] = statistics.median(samples) * 1e6
    client.close()
    return times


def measure(
    running: Services, sandbox: SandboxProcess, kind: str, rows: int, events: int, runs: int
) -> tuple[dict[str, float], dict[str, float], float, float, float]:
    empty_url, full_url = running.ledger(kind), running.ledger(kind)
    empty_engine, full_engine = create_ledger_engine(empty_url), create_ledger_engine(full_url)
    fill(empty_engine, SMALL)
    fill_s = fill(full_engine, rows)
    empty_times = query_times(empty_engine, runs, running.redis.url, running.folder)
    full_times = query_times(full_engine, runs, running.redis.url, running.folder)
    empty_engine.dispose()
    full_engine.dispose()
    flow = generate(seed=602, orders=events // 3, total_events=events, prefix="S").events
    empty_rate = gbq_run(running, sandbox, flow, label="empty", ledger_url=empty_url).rate
    full_rate = gbq_run(running, sandbox, flow, label="full", ledger_url=full_url).rate
    return empty_times, full_times, empty_rate, full_rate, fill_s


def run(folder: Path, *, quick: bool = False) -> Report:
    rows, events, runs = (20_000, 300, 50) if quick else (1_000_000, 2_000, 300)
    report = Report(
        name="ledger_scale",
        title=f"6. Ledger scale: {rows:,} settled events already in the ledger",
        command="make bench BENCH=ledger_scale",
        columns=["database", "query / flow", f"{SMALL:,} rows", f"{rows:,} rows", "ratio"],
    )
    kinds = ["sqlite", *(["postgresql"] if postgres_available() else [])]
    with services(folder) as running:
        sandbox = running.sandbox()
        for kind in kinds:
            empty, full, empty_rate, full_rate, fill_s = measure(
                running, sandbox, kind, rows, events, runs
            )
            for name in empty:
                report.rows.append(
                    [kind, f"{name}, µs", empty[name], full[name], full[name] / empty[name]]
                )
            report.rows.append(
                [
                    kind,
                    "delivery, events/s (prefork × 2)",
                    empty_rate,
                    full_rate,
                    full_rate / empty_rate,
                ]
            )
            report.data[kind] = {
                "empty": empty,
                "full": full,
                "empty_rate": empty_rate,
                "full_rate": full_rate,
                "fill_s": fill_s,
            }
    report.notes = [
        (
            "Query times are medians of single calls through the Ledger API (a transaction each, "
            "as the worker and scheduler make them); the ingest and claim rows use new events."
        ),
        (
            "The operator reads (`gbq dlq list`, `gbq status`, the metrics scrape) count from "
            "counters the ledger's triggers keep (migration 0007) and read the newest dead "
            "letters by the (state, updated_at) index (0006): without them the counts "
            "scanned the table (× 203–259 at 1,000,000 rows, the dead-letter list × 8–76)."
        ),
        "If PostgreSQL is not configured (GBQ_TEST_DATABASE_URL) only SQLite is measured.",
    ]
    return report
