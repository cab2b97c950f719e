"""The delivery path's write transactions, on a connection kept between them.

A pooled transaction (``engine.begin()``) checks a connection out of the pool, builds a
SQLAlchemy ``Connection`` around it and checks it back in: per event, twice, as much CPU as
the SQL it runs. A process's main thread (a prefork child, the solo pool) delivers one
event at a time, so it keeps one ``Connection`` and opens each transaction on it. Other
threads (the threads pool) take one from the pool each time, so that their number never
exceeds the pool's size.

What a pooled checkout did and a kept connection must still do:
- PostgreSQL: a connection idle for more than ``worker.ledger.engine.PING_IDLE_S`` is
  pinged before use (a server restart, an idle timeout); one that fails is dropped and a
  new one opened;
- a connection SQLAlchemy invalidated (its statement found it lost) is replaced;
- a process forked with a kept connection never uses it (it is the parent's);
- ``engine.dispose()`` closes it, as it closes the pool's.

SQLite allows one writer at a time, and one that finds the write lock taken sleeps on
SQLite's fixed schedule (1, 2, 5, 10, 15, 20, 25... ms) however soon the lock is free: with
a threads pool, a delivery's ``BEGIN IMMEDIATE`` waited 34 to 180 ms behind a transaction
that took well under one. The threads of one process therefore queue for their write
transactions on a lock of their own, which wakes the next one as soon as it is released.
Processes (a prefork pool, the scheduler) still meet at SQLite's lock.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import Connection, Engine, event
from sqlalchemy.exc import OperationalError

from worker.ledger import engine as ledger_engine


class KeptConnection:
    """Write transactions for the delivery path (see the module's docstring)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._kept: Connection | None = None
        self._pid = os.getpid()
        self._used_at = float("-inf")
        self._pings = engine.dialect.name == "postgresql"
        self._inherited: list[Connection] = []  # a parent's, kept referenced, never used
        # SQLite: this process's writers, one at a time (reentrant: a nested transaction
        # meets SQLite's own lock, as it did without this one)
        self._writers = threading.RLock() if not self._pings else None
        self._writers_pid = self._pid
        event.listen(engine, "engine_disposed", self._on_dispose)

    @contextmanager
    def begin(self) -> Iterator[Connection]:
        """A transaction, committed when the block ends, rolled back if it raises."""
        with self._write_turn():
            if threading.current_thread() is not threading.main_thread():
                with self.engine.begin() as pooled:
                    yield pooled
                return
            connection = self._connection()
            try:
                with connection.begin():
                    yield connection
            finally:
                self._used_at = time.monotonic()

    @contextmanager
    def _write_turn(self) -> Iterator[None]:
        """SQLite: wait for this process's other writers, for as long as SQLite would."""
        writers = self._writers
        if writers is None:
            yield
            return
        if self._writers_pid != os.getpid():  # forked: a parent's thread may have held it
            writers = self._writers = threading.RLock()
            self._writers_pid = os.getpid()
        if not writers.acquire(timeout=ledger_engine.SQLITE_BUSY_TIMEOUT_MS / 1000):
            raise OperationalError(
                "BEGIN IMMEDIATE", None, TimeoutError("database is locked (by this process)")
            )
        try:
            yield
        finally:
            writers.release()

    @contextmanager
    def statements(self) -> Iterator[Connection]:
        """PostgreSQL: statements each committed as it runs (autocommit), for work of one
        statement or of several that need not commit together: no BEGIN and no COMMIT, two
        round trips less. SQLite: a transaction, as :meth:`begin` (its BEGIN IMMEDIATE
        and COMMIT cost no round trip)."""
        if not self._pings:  # SQLite
            with self.begin() as connection:
                yield connection
            return
        if threading.current_thread() is not threading.main_thread():
            with self.engine.connect() as pooled, _autocommit(pooled):
                yield pooled
            return
        connection = self._connection()
        try:
            with _autocommit(connection):
                yield connection
        finally:
            self._used_at = time.monotonic()

    def _connection(self) -> Connection:
        if self._pid != os.getpid():  # forked: the kept connection is the parent's
            if self._kept is not None:
                self._inherited.append(self._kept)
            self._kept, self._pid = None, os.getpid()
        kept = self._kept
        if kept is not None and (kept.closed or kept.invalidated or not self._alive(kept)):
            self._kept = None
            kept.close()
            kept = None
        if kept is None:
            kept = self._kept = self.engine.connect()
        return kept

    def _alive(self, connection: Connection) -> bool:
        if not self._pings or time.monotonic() - self._used_at < ledger_engine.PING_IDLE_S:
            return True
        dialect, driver = self.engine.dialect, connection.connection.dbapi_connection
        if driver is None:
            return False
        try:
            dialect.do_ping(driver)
        except dialect.loaded_dbapi.Error:
            connection.invalidate()
            return False
        return True

    def _on_dispose(self, _: Engine) -> None:
        # The pool it came from is gone (dispose() replaced it): returned there, it would
        # stay open until the garbage collector found it. Closed here instead.
        kept, self._kept = self._kept, None
        if kept is not None and self._pid == os.getpid():
            kept.invalidate()
            kept.close()


@contextmanager
def _autocommit(connection: Connection) -> Iterator[Connection]:
    """``connection``'s driver in autocommit for the block, then back (unless the
    connection was lost meanwhile). A statement that went through SQLAlchemy's own path
    left it a transaction object to end; the statement itself committed as it ran."""
    driver = connection.connection.dbapi_connection
    if driver is None:
        raise RuntimeError("the ledger connection has no driver connection")
    driver.autocommit = True
    try:
        yield connection
    except BaseException:
        if connection.in_transaction():
            connection.rollback()
        raise
    else:
        if connection.in_transaction():
            connection.commit()
    finally:
        if not connection.invalidated and not connection.closed:
            driver.autocommit = False
