"""The four partial indexes of gbq_events (migration 0009): built as the models declare
them, and used by the sweeps that read them, with their parameters bound as the ledger
binds them. A delivered row has none of their columns set, so it never enters them."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, event, text

from worker.ledger.core import NewEvent
from worker.ledger.deadletters import DeadFilter, DeadLetters
from worker.ledger.repository import Ledger

NOW = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)
PARTIAL = {
    "ix_gbq_events_state_next_attempt_at": "next_attempt_at",
    "ix_gbq_events_state_lease_expires_at": "lease_expires_at",
    "ix_gbq_events_state_enqueued_at": "enqueued_at",
    "ix_gbq_events_dead_reason_updated_at": "dead_reason",
}


def definition(engine: Engine, index: str) -> str:
    query = (
        "SELECT sql FROM sqlite_master WHERE name = :n"
        if engine.dialect.name == "sqlite"
        else "SELECT indexdef FROM pg_indexes WHERE indexname = :n"
    )
    with engine.connect() as connection:
        return str(connection.execute(text(query), {"n": index}).scalar())


@pytest.mark.parametrize("index", sorted(PARTIAL))
def test_the_index_holds_only_rows_with_its_column_set(engine: Engine, index: str) -> None:
    where = definition(engine, index).split("WHERE", 1)[1]
    assert where.replace("(", "").replace(")", "").strip() == f"{PARTIAL[index]} IS NOT NULL"


def statements_of(engine: Engine, run: Callable[[], object]) -> list[tuple[str, Any]]:
    """The SELECTs on gbq_events that ``run`` makes, with their driver parameters."""
    seen: list[tuple[str, Any]] = []

    def record(_c: Any, _cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        if statement.lstrip().upper().startswith("SELECT") and "gbq_events" in statement:
            seen.append((statement, parameters))

    event.listen(engine, "before_cursor_execute", record)
    try:
        run()
    finally:
        event.remove(engine, "before_cursor_execute", record)
    assert seen, "no SELECT on gbq_events was made"
    return seen


def plan(engine: Engine, statement: str, parameters: Any) -> str:
    with engine.connect() as connection:
        if engine.dialect.name == "sqlite":
            rows = connection.exec_driver_sql(f"EXPLAIN QUERY PLAN {statement}", parameters)
            return "\n".join(str(row[-1]) for row in rows)
        connection.exec_driver_sql("SET enable_seqscan = off")  # the tables are small here
        rows = connection.exec_driver_sql(f"EXPLAIN {statement}", parameters)
        return "\n".join(str(row[0]) for row in rows)


SWEEPS: dict[str, tuple[str, Callable[[Ledger], object]]] = {
    "take_due": ("ix_gbq_events_state_next_attempt_at", lambda ledger: ledger.take_due(NOW, 10)),
    "waiting_due": (
        "ix_gbq_events_state_next_attempt_at",
        lambda ledger: ledger.waiting_due(NOW, 10),
    ),
    "take_expired_leases": (
        "ix_gbq_events_state_lease_expires_at",
        lambda ledger: ledger.take_expired_leases(NOW, 10),
    ),
    "take_stale_pending": (
        "ix_gbq_events_state_enqueued_at",
        lambda ledger: ledger.take_stale_pending(NOW - timedelta(minutes=5), NOW, 10),
    ),
}


@pytest.mark.parametrize("sweep", sorted(SWEEPS))
def test_each_sweep_reads_its_partial_index(engine: Engine, sweep: str) -> None:
    index, run = SWEEPS[sweep]
    ledger = Ledger(engine)
    ledger.ingest(
        [NewEvent(f"paid:{n}", "paid", f"O{n}", "c", "{}", NOW, None) for n in range(3)], NOW
    )
    statement, parameters = statements_of(engine, lambda: run(ledger))[0]
    assert index in plan(engine, statement, parameters)


def test_the_dead_letters_of_one_reason_are_read_by_an_index(engine: Engine) -> None:
    dead = DeadLetters(Ledger(engine))
    statement, parameters = statements_of(engine, lambda: dead.find(DeadFilter(reason="x")))[0]
    shown = plan(engine, statement, parameters)
    assert "ix_gbq_events_" in shown
    assert "Seq Scan" not in shown
    assert "SCAN gbq_events\n" not in f"{shown}\n"  # SQLite: a scan without an index
