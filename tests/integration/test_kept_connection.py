"""The delivery path's transactions on a kept connection (``worker.ledger.kept``): one per
process's main thread, pooled for other threads, pinged after idling on PostgreSQL,
replaced when lost, closed with the engine, never shared with a forked child."""

from __future__ import annotations

import os
import sys
import threading
from typing import Any

import pytest
from sqlalchemy import Engine, event, text
from sqlalchemy.exc import IntegrityError, OperationalError

from harness.processes import wait_until
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


@pytest.fixture
def sqlite_engine(tmp_path: Any) -> Any:
    engine = create_ledger_engine(f"sqlite:///{tmp_path / 'ledger.db'}")
    yield engine
    engine.dispose()


def waiting_in(thread: threading.Thread) -> str | None:
    """The innermost function of ours ``thread`` is running."""
    frame = sys._current_frames().get(thread.ident or -1)
    while frame is not None and "worker/ledger" not in frame.f_code.co_filename:
        frame = frame.f_back
    return None if frame is None else frame.f_code.co_name


def test_sqlite_threads_begin_a_write_only_once_the_writer_before_them_committed(
    sqlite_engine: Engine,
) -> None:
    """SQLite: a thread whose write transaction would find the write lock taken waits for
    this process's writer before it, not on SQLite's busy schedule (1, 2, 5, 10... ms):
    its BEGIN comes after the holder's COMMIT."""
    kept, happened = KeptConnection(sqlite_engine), []
    event.listen(sqlite_engine, "begin", lambda _: happened.append("begin"))
    event.listen(sqlite_engine, "commit", lambda _: happened.append("commit"))

    def second_writer() -> None:
        with kept.begin() as connection:
            connection.execute(text("SELECT 1"))

    with kept.begin() as connection:
        connection.execute(text("SELECT 1"))
        other = threading.Thread(target=second_writer)
        other.start()
        wait_until(
            lambda: waiting_in(other) == "_write_turn",
            timeout_s=5,
            what="the second writer to wait for its turn",
        )
        assert happened == ["begin"]  # it has not begun, so SQLite never made it sleep
    other.join(10)
    assert not other.is_alive()
    assert happened == ["begin", "commit", "begin", "commit"]


def test_sqlite_a_writer_waits_for_this_process_as_long_as_sqlite_would(
    sqlite_engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(engine_module, "SQLITE_BUSY_TIMEOUT_MS", 50)
    kept, failed = KeptConnection(sqlite_engine), []

    def second_writer() -> None:
        try:
            with kept.begin():
                pass
        except OperationalError as error:
            failed.append(str(error))

    with kept.begin():
        other = threading.Thread(target=second_writer)
        other.start()
        other.join(10)
    assert len(failed) == 1
    assert "database is locked" in failed[0]
    with kept.begin() as connection:  # the holder gone, the next one goes ahead
        assert connection.execute(text("SELECT 1")).scalar() == 1


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
