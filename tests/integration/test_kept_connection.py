"""The delivery path's transactions on a kept connection (``worker.ledger.kept``): one per
process's main thread, pooled for other threads, pinged after idling on PostgreSQL,
replaced when lost, closed with the engine, never shared with a forked child."""

from __future__ import annotations

import os
import threading
from typing import Any

import pytest
from sqlalchemy import Engine, event, text
from sqlalchemy.exc import IntegrityError

from worker.coordination.outage import LEDGER_DOWN
from worker.ledger import engine as engine_module
from worker.ledger.engine import create_ledger_engine
from worker.ledger.kept import KeptConnection


def checkouts(engine: Engine) -> list[Any]:
    """The DBAPI connections the pool hands out, from now on."""
    seen: list[Any] = []
    event.listen(engine, "checkout", lambda dbapi, *_: seen.append(dbapi))
    return seen


def driver_connection_of(kept: KeptConnection) -> Any:
    with kept.begin() as connection:
        return connection.connection.dbapi_connection


def test_the_main_thread_keeps_one_connection_for_its_transactions(engine: Engine) -> None:
    kept = KeptConnection(engine)
    taken = checkouts(engine)
    first = driver_connection_of(kept)
    for _ in range(5):
        assert driver_connection_of(kept) is first
    assert len(taken) == 1
    assert engine.pool.checkedout() == 1  # type: ignore[attr-defined]


def test_a_transaction_that_raises_is_rolled_back_and_the_connection_kept(engine: Engine) -> None:
    kept = KeptConnection(engine)
    with kept.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO gbq_pruned_orders (order_id, events, pruned_at)"
                " VALUES ('O', 'before', CURRENT_TIMESTAMP)"
            )
        )
    first = driver_connection_of(kept)

    def fail_after_an_update() -> None:
        with kept.begin() as connection:
            connection.execute(text("UPDATE gbq_pruned_orders SET events = 'after'"))
            raise RuntimeError("the delivery failed")

    with pytest.raises(RuntimeError):
        fail_after_an_update()
    with kept.begin() as connection:
        assert connection.execute(text("SELECT events FROM gbq_pruned_orders")).scalar() == "before"
        assert connection.connection.dbapi_connection is first


def test_other_threads_take_a_pooled_connection_and_give_it_back(engine: Engine) -> None:
    """A threads pool's tasks never hold more connections than they use at once."""
    kept = KeptConnection(engine)
    taken = checkouts(engine)

    def two_transactions() -> None:
        for _ in range(2):
            with kept.begin() as connection:
                connection.execute(text("SELECT 1"))

    threads = [threading.Thread(target=two_transactions) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(taken) == 6
    assert engine.pool.checkedout() == 0  # type: ignore[attr-defined]


def test_dispose_closes_the_kept_connection(engine: Engine) -> None:
    kept = KeptConnection(engine)
    driver = driver_connection_of(kept)
    engine.dispose()
    with pytest.raises(engine.dialect.loaded_dbapi.Error):
        driver.cursor().execute("SELECT 1")
    assert driver_connection_of(kept) is not driver  # a new one, from the new pool


def test_a_forked_child_never_uses_its_parents_kept_connection(engine: Engine) -> None:
    kept = KeptConnection(engine)
    parents = driver_connection_of(kept)
    pid = os.fork()
    if pid == 0:  # the child: exit 0 only if it got a connection of its own
        code = 1
        try:
            code = 0 if driver_connection_of(kept) is not parents else 3
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert driver_connection_of(kept) is parents


def end_session_of(kept: KeptConnection, database_url: str) -> None:
    with kept.begin() as connection:
        pid = connection.execute(text("SELECT pg_backend_pid()")).scalar()
    killer = create_ledger_engine(database_url)
    with killer.connect() as connection:
        connection.execute(text("SELECT pg_terminate_backend(:p)"), {"p": pid})
        connection.commit()
    killer.dispose()


def test_postgresql_a_lost_kept_connection_fails_once_then_is_replaced(
    engine: Engine, database_url: str
) -> None:
    """Used within the ping window, a connection the server ended fails its transaction as
    a ledger outage (the scheduler re-sends the event); the next transaction works."""
    if engine.dialect.name != "postgresql":
        pytest.skip("a server that ends a session is PostgreSQL's")
    kept = KeptConnection(engine)
    end_session_of(kept, database_url)
    with pytest.raises(LEDGER_DOWN), kept.begin() as connection:
        connection.execute(text("SELECT 1"))
    with kept.begin() as connection:
        assert connection.execute(text("SELECT 1")).scalar() == 1


def test_postgresql_a_kept_connection_idle_past_the_window_is_pinged_and_replaced(
    engine: Engine, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    if engine.dialect.name != "postgresql":
        pytest.skip("pinging is the PostgreSQL engine's")
    kept = KeptConnection(engine)
    end_session_of(kept, database_url)
    monkeypatch.setattr(engine_module, "PING_IDLE_S", 0.0)  # it has idled past the window
    with kept.begin() as connection:  # pinged, found dead, replaced: no failure
        assert connection.execute(text("SELECT 1")).scalar() == 1


def test_statements_commit_as_they_run_on_postgresql_and_the_connection_goes_back(
    engine: Engine,
) -> None:
    """``statements()``: on PostgreSQL each statement is committed as it runs (another
    connection sees it before the block ends), a failing one takes nothing else with it,
    and the kept connection is back in transactions after; on SQLite it is a
    transaction."""
    kept = KeptConnection(engine)
    first = driver_connection_of(kept)
    insert = text(
        "INSERT INTO gbq_pruned_orders (order_id, events, pruned_at)"
        " VALUES (:id, 'x', CURRENT_TIMESTAMP)"
    )
    count = text("SELECT count(*) FROM gbq_pruned_orders")

    def seen() -> int:
        """What another connection sees (reading only: SQLite lets it in meanwhile)."""
        with engine.connect() as plain:
            other = plain.execution_options(**{engine_module.READ_ONLY: True})
            return int(other.execute(count).scalar() or 0)

    postgresql = engine.dialect.name == "postgresql"

    def insert_twice() -> None:
        with kept.statements() as connection:
            connection.execute(insert, {"id": "A"})
            assert seen() == (1 if postgresql else 0)  # SQLite: not committed yet
            connection.execute(insert, {"id": "A"})  # the same key: refused

    with pytest.raises(IntegrityError):
        insert_twice()
    assert seen() == (1 if postgresql else 0)
    assert driver_connection_of(kept) is first  # the same connection, usable
    assert not getattr(first, "autocommit", False)
    with kept.begin() as connection:  # a transaction again: rolled back as one
        connection.execute(insert, {"id": "B"})
        connection.rollback()
    assert seen() == (1 if postgresql else 0)
