"""The delivery path's statements run on the driver (worker.ledger.prepared): the same
rows and row counts as SQLAlchemy's path, its errors, and its instrumentation."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Connection, event, text
from sqlalchemy.exc import IntegrityError

from worker.coordination.outage import LEDGER_DOWN
from worker.ledger import prepared as prepared_module
from worker.ledger import statements as st
from worker.ledger.core import NewEvent
from worker.ledger.prepared import Rows, Runner
from worker.ledger.repository import Ledger
from worker.rules.states import EventState

pytestmark = pytest.mark.integration
NOW = datetime(2026, 12, 4, 12, 0, 0, 123000, tzinfo=UTC)
LEASE = NOW + timedelta(seconds=60)
ROOT = Path(__file__).resolve().parents[2]


def _event(event_id: str, kind: str = "refunded", minutes: int = 0) -> NewEvent:
    occurred = NOW + timedelta(minutes=minutes)
    return NewEvent(event_id, kind, "O", "c", '{"x": "é"}', occurred, NOW)


def _both(connection: Connection, statement: Any, params: dict[str, Any]) -> tuple[Any, Any]:
    """The statement's rows and row count both ways, in one transaction rolled back
    between them, so that each way sees the same rows."""
    results = []
    for runner in (Runner().execute, lambda c, s, p: c.execute(s, p)):
        savepoint = connection.begin_nested()
        result = runner(connection, statement, params)
        if _returns(statement):  # (a row count is read only where no rows come back)
            results.append([tuple(row) for row in result])
        else:
            results.append(result.rowcount)
        savepoint.rollback()
    return results[0], results[1]


def _returns(statement: Any) -> bool:
    return bool(getattr(statement, "is_select", False) or list(statement.exported_columns))


def test_every_delivery_statement_reads_and_writes_as_sqlalchemy_does(ledger: Ledger) -> None:
    """Same rows (aware UTC times, None, text), same row counts (where no rows come back),
    for each statement the runner takes, against rows in several states."""
    ledger.ingest(
        [_event("paid:O", "paid"), _event("refunded:R1"), _event("refunded:R2", minutes=1)], NOW
    )
    assert ledger.claim("refunded:R1", "w", NOW, LEASE) is not None
    apply = {
        "b_id": "refunded:R1",
        "b_owner": "w",
        "b_state": EventState.SCHEDULED.value,
        "b_next": NOW + timedelta(seconds=5),
        "b_dead_reason": None,
        "b_counts": 1,
        "b_credit": 0.5,
        "b_started": NOW,
        "b_outcome": "server_error",
        "b_status": 503,
        "b_code": None,
        "b_message": "m",
        "b_body": None,
        "b_now": NOW,
        "b_delivered": None,
    }
    cases: list[tuple[Any, dict[str, Any]]] = [
        (st.CLAIM, {"b_id": "refunded:R2", "b_now": NOW, "b_owner": "x", "b_until": LEASE}),
        (st.CLAIM, {"b_id": "refunded:R1", "b_now": NOW, "b_owner": "x", "b_until": LEASE}),
        (st.ORDER_FACTS_ONE, {"b_order": "O"}),
        (st.HAS_ORDER, {"b_order": "O"}),
        (st.HAS_ORDER, {"b_order": "nope"}),
        (st.TIMES_TAKEN_ONE, {"b_customer": "c", "b_low": NOW, "b_high": LEASE}),
        (st.APPLY_ATTEMPT, apply),
        (st.APPLY_ATTEMPT, {**apply, "b_owner": "not the holder"}),
        (st.RELEASE_WAITING, {"b_order": "O", "b_now": NOW}),
    ]
    with ledger.engine.begin() as connection:
        connection.execute(
            text("UPDATE gbq_events SET state = 'waiting' WHERE event_id = 'paid:O'")
        )
        for statement, params in cases:
            ours, theirs = _both(connection, statement, params)
            assert ours == theirs, statement
            if ours and isinstance(ours, list) and isinstance(ours[0][-1], datetime):
                assert ours[0][-1].tzinfo is not None
    claimed = ledger.ingest_and_claim(_event("refunded:R3", minutes=2), "w", NOW, LEASE)
    assert claimed is not None
    row = ledger.get("refunded:R3")
    assert row is not None
    assert (row.payload, row.published_at, row.occurred_at) == (
        '{"x": "é"}',
        NOW,
        NOW + timedelta(minutes=2),
    )
    assert (row.attempts, row.retried_at_attempt, row.conflicts, row.window_credit_s) == (
        0,
        0,
        0,
        0.0,
    )


def test_a_driver_error_is_raised_as_sqlalchemy_raises_it(ledger: Ledger) -> None:
    """A constraint refusing a row (an attempt of no event): SQLAlchemy's IntegrityError,
    the transaction rolled back, the ledger usable at once."""
    runner = Runner()
    row = {
        "event_id": "attempt-of-nothing",
        "attempt_no": 1,
        "worker": "w",
        "started_at": NOW,
        "duration_s": 0.1,
        "outcome": "delivered",
        "reason": "accepted",
        "status": 200,
        "code": None,
        "message": "",
        "body": None,
    }
    ledger.ingest([_event("paid:O", "paid")], NOW)
    with ledger.engine.connect() as connection:
        transaction = connection.begin()
        runner.execute(connection, st.INSERT_ATTEMPT, {**row, "event_id": "paid:O"})
        with pytest.raises(IntegrityError):
            runner.execute(connection, st.INSERT_ATTEMPT, row)
        transaction.rollback()
    with ledger.engine.begin() as connection:
        assert connection.execute(text("SELECT count(*) FROM gbq_attempts")).scalar() == 0
        runner.execute(connection, st.INSERT_ATTEMPT, {**row, "event_id": "paid:O"})
    assert [attempt.worker for attempt in ledger.attempts_of("paid:O")] == ["w"]


def test_a_lost_postgresql_connection_is_invalidated_and_replaced(ledger: Ledger) -> None:
    """The server ends the ledger's session: the statement fails as a ledger outage, the
    connection is thrown away, and the next transaction gets a working one."""
    if ledger.engine.dialect.name != "postgresql":
        pytest.skip("a server that ends a session is PostgreSQL's")
    ledger.ingest([_event("paid:O", "paid")], NOW)
    runner = Runner()
    with ledger.engine.connect() as victim:
        pid = victim.execute(text("SELECT pg_backend_pid()")).scalar()
        with ledger.engine.connect() as killer:
            killer.execute(text("SELECT pg_terminate_backend(:p)"), {"p": pid})
            killer.commit()
        with pytest.raises(LEDGER_DOWN) as failure:
            runner.execute(victim, st.HAS_ORDER, {"b_order": "O"})
        assert getattr(failure.value, "connection_invalidated", False)
    with ledger.engine.begin() as connection:
        assert runner.execute(connection, st.HAS_ORDER, {"b_order": "O"}).first() is not None


def test_while_anything_listens_to_cursor_events_statements_take_sqlalchemys_path(
    ledger: Ledger,
) -> None:
    """A tracer (or a test) listening to the engine's cursor events sees every statement
    of the delivery path."""
    seen: list[str] = []

    def record(_c: Any, _cursor: Any, statement: str, *_: Any) -> None:
        seen.append(statement)

    with ledger.engine.begin() as connection:
        assert isinstance(Runner().execute(connection, st.HAS_ORDER, {"b_order": "O"}), Rows)
    event.listen(ledger.engine, "after_cursor_execute", record)
    claimed = ledger.ingest_and_claim(_event("paid:O", "paid"), "w", NOW, LEASE, read_order=True)
    assert claimed is not None
    assert any("INSERT INTO gbq_events" in statement for statement in seen)
    assert any("gbq_events.order_id =" in statement for statement in seen)
    event.remove(ledger.engine, "after_cursor_execute", record)


def test_outside_its_fence_every_statement_takes_sqlalchemys_public_path(
    ledger: Ledger, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On another SQLAlchemy minor version the private APIs are never touched."""
    monkeypatch.setattr(prepared_module, "IN_FENCE", False)
    with ledger.engine.begin() as connection:
        result = Runner().execute(connection, st.HAS_ORDER, {"b_order": "O"})
    assert not isinstance(result, Rows)


def test_the_fence_is_the_version_ci_pins() -> None:
    """Moving constraints.txt to another SQLAlchemy minor fails here until the cursor path
    has been checked on it (then FENCED_TO moves with it)."""
    pinned = re.search(
        r"^SQLAlchemy==(\d+\.\d+)\.", (ROOT / "constraints.txt").read_text(), re.MULTILINE
    )
    assert pinned is not None
    assert pinned.group(1) == prepared_module.FENCED_TO
    assert prepared_module.IN_FENCE  # what CI installs is inside it
