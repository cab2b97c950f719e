"""The counters the triggers keep (worker/ledger/counters.py) always equal a count of the
rows, whatever writes the rows: every state change, kind, reason, removal and attempt,
on SQLite and PostgreSQL; concurrent PostgreSQL writers never wait on them; the shards
of backends that have gone fold into one without changing a total."""

from __future__ import annotations

import random
import threading
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Connection, Engine, text

from worker.ledger.counters import attempt_counts, event_counts, fold_gone_shards
from worker.ledger.engine import create_ledger_engine
from worker.ledger.schema import migrate

pytestmark = pytest.mark.integration
NOW = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)
KINDS = ("paid", "refund", "cancel", "cashback")
STATES = ("pending", "in_flight", "scheduled", "waiting", "delivered", "dead")
REASONS = (None, "rejected", "expired", "blocked", "malformed")


def insert(
    connection: Connection, event_id: str, kind: str, state: str, reason: str | None
) -> None:
    connection.execute(
        text(
            "INSERT INTO gbq_events (event_id, kind, order_id, customer_id, payload, "
            "occurred_at, state, attempts, window_credit_s, dead_reason, created_at, "
            "updated_at) VALUES (:id, :kind, :id, 'c', '{}', :now, :state, 0, 0, :reason, "
            ":now, :now)"
        ),
        {"id": event_id, "kind": kind, "state": state, "reason": reason, "now": NOW},
    )


def attempt(connection: Connection, event_id: str, outcome: str, reason: str) -> None:
    connection.execute(
        text(
            "INSERT INTO gbq_attempts (event_id, attempt_no, worker, started_at, duration_s, "
            "outcome, reason) VALUES (:id, 1, 'w', :now, 0.1, :outcome, :reason)"
        ),
        {"id": event_id, "outcome": outcome, "reason": reason, "now": NOW},
    )


def counted_rows(connection: Connection) -> dict[tuple[str, str, str | None], int]:
    rows = connection.execute(
        text("SELECT kind, state, dead_reason, count(*) FROM gbq_events GROUP BY 1, 2, 3")
    )
    return {(kind, state, reason): int(count) for kind, state, reason, count in rows}


def random_writes(engine: Engine, seed: int, steps: int, prefix: str) -> Counter[tuple[str, str]]:
    """Inserts, updates of any counted column (or none), bulk updates and removals, in
    random transactions (some rolled back); returns the attempts committed."""
    rng = random.Random(seed)
    alive: list[str] = []
    attempts: Counter[tuple[str, str]] = Counter()
    for step in range(steps):
        rollback = rng.random() < 0.1
        with engine.connect() as connection:
            transaction = connection.begin()
            made: Counter[tuple[str, str]] = Counter()
            born: list[str] = []
            for _ in range(rng.randint(1, 4)):
                action = rng.choice(("insert", "insert", "update", "bulk", "delete", "attempt"))
                if action == "insert" or not alive:
                    event_id = f"{prefix}-{step}-{len(born)}"
                    reason = rng.choice(REASONS)
                    insert(connection, event_id, rng.choice(KINDS), rng.choice(STATES), reason)
                    born.append(event_id)
                    alive.append(event_id)
                elif action == "update":
                    column, value = rng.choice(
                        (
                            ("state", rng.choice(STATES)),
                            ("kind", rng.choice(KINDS)),
                            ("dead_reason", rng.choice(REASONS)),
                            ("attempts", rng.randint(0, 9)),  # counted by nothing
                        )
                    )
                    connection.execute(
                        text(f"UPDATE gbq_events SET {column} = :value WHERE event_id = :id"),  # noqa: S608 - a column name of ours
                        {"value": value, "id": rng.choice(alive)},
                    )
                elif action == "bulk":
                    connection.execute(
                        text(
                            "UPDATE gbq_events SET state = :state, dead_reason = NULL "
                            "WHERE state = :was"
                        ),
                        {"state": rng.choice(STATES), "was": rng.choice(STATES)},
                    )
                elif action == "delete":
                    victim = rng.choice(alive)
                    connection.execute(
                        text("DELETE FROM gbq_attempts WHERE event_id = :id"), {"id": victim}
                    )
                    connection.execute(
                        text("DELETE FROM gbq_events WHERE event_id = :id"), {"id": victim}
                    )
                    alive.remove(victim)
                else:
                    outcome = rng.choice(("delivered", "retry", "dead"))
                    reason = rng.choice(("accepted", "timeout", "http_500"))
                    attempt(connection, rng.choice(alive), outcome, reason)
                    made[(outcome, reason)] += 1
            if rollback:
                transaction.rollback()
                alive = [event_id for event_id in alive if event_id not in born]
                alive = [
                    event_id
                    for event_id in alive
                    if connection.execute(
                        text("SELECT 1 FROM gbq_events WHERE event_id = :id"), {"id": event_id}
                    ).first()
                ]
            else:
                transaction.commit()
                attempts.update(made)
    return attempts


def test_counters_equal_a_count_of_the_rows_after_any_writes(engine: Engine) -> None:
    attempts = random_writes(engine, seed=11, steps=300, prefix="r")
    with engine.connect() as connection:
        assert event_counts(connection) == counted_rows(connection)
        assert attempt_counts(connection) == dict(attempts)
        assert sum(attempts.values()) > 50  # the run did count attempts


def test_removed_attempts_stay_counted(engine: Engine) -> None:
    """gbq_attempts_total is a Prometheus counter: retention must not lower it."""
    with engine.begin() as connection:
        insert(connection, "e", "paid", "delivered", None)
        attempt(connection, "e", "delivered", "accepted")
    with engine.begin() as connection:
        connection.execute(text("DELETE FROM gbq_attempts"))
        connection.execute(text("DELETE FROM gbq_events"))
    with engine.connect() as connection:
        assert attempt_counts(connection) == {("delivered", "accepted"): 1}
        assert event_counts(connection) == {}


def test_the_migration_counts_the_rows_already_there(tmp_path: pytest.TempPathFactory) -> None:
    url = f"sqlite:///{tmp_path}/old.db"
    engine = create_ledger_engine(url)
    try:
        migrate(engine, "0006")
        with engine.begin() as connection:
            for number in range(30):
                insert(connection, f"old-{number}", KINDS[number % 4], STATES[number % 6], None)
                attempt(connection, f"old-{number}", "retry", "timeout")
        migrate(engine)
        with engine.connect() as connection:
            assert event_counts(connection) == counted_rows(connection)
            assert attempt_counts(connection) == {("retry", "timeout"): 30}
    finally:
        engine.dispose()


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_concurrent_postgresql_writers_share_no_counter_row_and_fold(engine: Engine) -> None:
    """Four connections each hold an open transaction that changed states while the
    others write: none waits (a shared counter row would block them until commit). After
    they close, one fold leaves only shard 0 and the same totals."""
    with engine.begin() as connection:
        for number in range(40):
            insert(connection, f"c-{number}", "paid", "pending", None)
    started, done = threading.Barrier(4), threading.Barrier(4)
    errors: list[BaseException] = []

    def writer(offset: int) -> None:
        try:
            with engine.connect() as connection, connection.begin():
                connection.execute(text("SET LOCAL lock_timeout = '3s'"))
                for number in range(offset, 40, 4):
                    connection.execute(
                        text("UPDATE gbq_events SET state = 'in_flight' WHERE event_id = :id"),
                        {"id": f"c-{number}"},
                    )
                started.wait(10)  # all four hold their changes uncommitted
                insert(connection, f"n-{offset}", "refund", "pending", None)
                done.wait(10)
        except BaseException as error:  # noqa: BLE001 - reported below
            errors.append(error)

    threads = [threading.Thread(target=writer, args=(offset,)) for offset in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert errors == []
    engine.dispose()  # the writers' backends go
    with engine.connect() as connection:
        before = event_counts(connection)
        shards = connection.execute(text("SELECT count(DISTINCT shard) FROM gbq_event_counts"))
        assert (shards.scalar() or 0) >= 4  # a shard per writer (the first may be reused)
    deadline = datetime.now(UTC) + timedelta(seconds=10)
    while fold_gone_shards(engine) == 0 or _shards(engine) != {0}:
        assert datetime.now(UTC) < deadline, "the writers' shards were never folded"
    with engine.connect() as connection:
        assert event_counts(connection) == before == counted_rows(connection)
        assert before == {("paid", "in_flight", None): 40, ("refund", "pending", None): 4}


def _shards(engine: Engine) -> set[int]:
    with engine.connect() as connection:
        return {
            int(shard)
            for (shard,) in connection.execute(text("SELECT DISTINCT shard FROM gbq_event_counts"))
        }
