"""Benchmark 8: retention keeps the ledger the size of its window.

1,000,000 settled events (1 % dead letters) with one attempt each, settled evenly over
the last 60 days, then retention with the default settings (GBQ_RETENTION_DAYS 30, batches
of GBQ_SCHEDULER_BATCH) until nothing is left to remove, as the scheduler does one batch
per tick: rows per table and the space they use, before and after, and the rate of
removal. What remains is the window: 30 days of events, every dead letter, and the
compact order memory (GBQ_ORDER_MEMORY_DAYS, 400 by default) that ordering needs.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import Engine, text

from bench.common import Report, postgres_available, services
from bench.ledger_scale import fill
from worker.ledger.engine import create_ledger_engine
from worker.ledger.repository import Ledger
from worker.settings import Settings

TABLES = ("gbq_events", "gbq_attempts", "gbq_pruned_orders")
DAYS = 60


def table_rows(engine: Engine) -> dict[str, int]:
    with engine.connect() as connection:
        return {
            table: int(connection.execute(text(f"SELECT count(*) FROM {table}")).scalar() or 0)
            for table in TABLES
        }


def used_mb(engine: Engine) -> float:
    """Space the ledger's data takes: SQLite's pages in use, indexes included (free pages
    are reused, not returned); PostgreSQL's live rows' bytes (a plain VACUUM, which
    autovacuum runs, makes dead rows' space reusable without shrinking the files)."""
    with engine.connect() as connection:
        if engine.dialect.name == "sqlite":
            pages = connection.execute(text("PRAGMA page_count")).scalar() or 0
            free = connection.execute(text("PRAGMA freelist_count")).scalar() or 0
            size = connection.execute(text("PRAGMA page_size")).scalar() or 0
            return (int(pages) - int(free)) * int(size) / 1e6
        total = sum(
            int(
                connection.execute(
                    text(f"SELECT coalesce(sum(pg_column_size(t.*)), 0) FROM {table} t")
                ).scalar()
                or 0
            )
            for table in TABLES
        )
    return total / 1e6


def mean_bytes(engine: Engine) -> tuple[float, float]:
    """Mean length of an event's content and of an order's memory, as stored (JSON)."""
    with engine.connect() as connection:
        payload = connection.execute(text("SELECT avg(length(payload)) FROM gbq_events")).scalar()
        memory = connection.execute(
            text("SELECT avg(length(events)) FROM gbq_pruned_orders")
        ).scalar()
    return float(payload or 0), float(memory or 0)


def run(folder: Path, *, quick: bool = False) -> Report:
    rows = 20_000 if quick else 1_000_000
    settings = Settings()
    report = Report(
        name="retention",
        title=f"8. Retention: {rows:,} events settled over {DAYS} days, default settings",
        command="make bench BENCH=retention",
        columns=["database", "figure", "before", "after", "ratio"],
    )
    kinds = ["sqlite", *(["postgresql"] if postgres_available() else [])]
    with services(folder) as running:
        for kind in kinds:
            engine = create_ledger_engine(running.ledger(kind))
            fill(engine, rows, days=DAYS)
            before_rows, before_mb = table_rows(engine), used_mb(engine)
            ledger = Ledger(engine)
            now = datetime.now(UTC)
            cutoff = now - timedelta(days=settings.retention_days)
            forget = now - timedelta(days=settings.order_memory_days)
            removed, batches, started = 0, 0, time.perf_counter()
            while True:
                batch = ledger.prune(
                    cutoff=cutoff, limit=settings.scheduler_batch, forget_before=forget
                )
                if batch.events == 0:
                    break
                removed, batches = removed + batch.events, batches + 1
            seconds = time.perf_counter() - started
            after_rows, after_mb = table_rows(engine), used_mb(engine)
            payload_bytes, memory_bytes = mean_bytes(engine)
            engine.dispose()
            for table in TABLES:
                before, after = before_rows[table], after_rows[table]
                report.rows.append(
                    [kind, f"rows in {table}", before, after, after / before if before else ""]
                )
            report.rows.append(
                [kind, "data, MB (see the notes)", before_mb, after_mb, after_mb / before_mb]
            )
            report.rows.append(
                [
                    kind,
                    "bytes: an event's content → its order's memory",
                    payload_bytes,
                    memory_bytes,
                    memory_bytes / payload_bytes if payload_bytes else "",
                ]
            )
            report.rows.append(
                [kind, f"removal: events/s ({batches:,} batches)", "", removed / seconds, ""]
            )
            report.data[kind] = {
                "before": before_rows,
                "after": after_rows,
                "before_mb": before_mb,
                "after_mb": after_mb,
                "removed": removed,
                "seconds": seconds,
                "payload_bytes": payload_bytes,
                "memory_bytes": memory_bytes,
            }
    report.notes = [
        (
            f"Retention {settings.retention_days} days, batches of "
            f"{settings.scheduler_batch}: half the events were older than the window; every "
            "dead letter stays until `gbq dlq purge`. A steady flow therefore keeps about "
            "(retention days × events per day) events and their attempts."
        ),
        (
            "Each removed event leaves its order a compact memory (id, kind, time, transaction "
            "id; the paid lines and refunded quantities, not the content: migration 0008) "
            f"for GBQ_ORDER_MEMORY_DAYS ({settings.order_memory_days}): a refund months later "
            "still finds its paid event delivered. Set it to the longest refund window of the "
            "shop to bound it tighter."
        ),
        (
            "Data, MB: SQLite's pages in use, indexes included (freed pages are reused by "
            "later writes, the file does not shrink); PostgreSQL's live rows' bytes, indexes "
            "excluded (autovacuum makes dead rows' space reusable)."
        ),
        (
            "The scheduler removes one batch per tick (GBQ_SCHEDULER_TICK_S), beside its other "
            "sweeps; `gbq prune` runs batches back to back as here."
        ),
    ]
    return report
