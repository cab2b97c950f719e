"""Engines for the ledger: SQLite tuned for several worker processes, or PostgreSQL."""

from __future__ import annotations

import sqlite3
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.exc import OperationalError

SQLITE_BUSY_TIMEOUT_MS = 30_000
SQLITE_POOL_SIZE = 8
READ_ONLY = "gbq_read_only"  # execution option marking a transaction that only reads


def create_ledger_engine(url: str) -> Engine:
    """An engine for ``url``; SQLite gets WAL, a busy timeout and write-ahead locking."""
    if url.startswith("sqlite"):
        return _sqlite_engine(url)
    return create_engine(url, pool_pre_ping=True, pool_size=5, max_overflow=5)


def _sqlite_engine(url: str) -> Engine:
    # A pool per process: opening a connection (and its PRAGMAs) and closing it (which
    # may checkpoint the WAL) cost more than the work of a delivery. worker.runtime builds
    # one engine per process id and never closes one inherited across a fork. Overflow is
    # unbounded so a threads pool never waits for a connection; extra ones close on return.
    engine = create_engine(
        url,
        pool_size=SQLITE_POOL_SIZE,
        max_overflow=-1,
        connect_args={"timeout": 30, "check_same_thread": False},
    )

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _: Any) -> None:
        dbapi_connection.isolation_level = None  # let "begin" below issue BEGIN itself
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        # Writers take the write lock up front: a deferred transaction that reads and then
        # writes fails at once with "database is locked" instead of waiting its turn.
        # Read-only transactions (READ_ONLY) stay deferred: in WAL mode they never block.
        # Straight to the driver: SQLAlchemy's execution path (events, result set-up) cost
        # more than SQLite's own BEGIN, for every transaction.
        begin = "BEGIN" if connection.get_execution_options().get(READ_ONLY) else "BEGIN IMMEDIATE"
        try:
            connection.connection.driver_connection.execute(begin)
        except sqlite3.Error as error:  # as SQLAlchemy raises it: callers catch that class
            raise OperationalError(begin, None, error) from error

    return engine
