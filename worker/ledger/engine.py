"""Engines for the ledger: SQLite tuned for several worker processes, or PostgreSQL."""

from __future__ import annotations

import sqlite3
import time
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.exc import DisconnectionError, OperationalError

SQLITE_BUSY_TIMEOUT_MS = 30_000
SQLITE_POOL_SIZE = 8
# SQLite's own checkpoint runs in the commit that takes the WAL past 1,000 pages: every
# hundredth delivery or so paid for copying the WAL into the database (several ms, the
# whole p99 of the latency benchmark). The scheduler checkpoints every tick instead
# (``checkpoint_wal``); a commit checkpoints only past this many pages (64 MiB of 4 KiB
# pages), should no scheduler run.
SQLITE_WAL_BACKSTOP_PAGES = 16_000
READ_ONLY = "gbq_read_only"  # execution option marking a transaction that only reads
PING_IDLE_S = 1.0  # a PostgreSQL connection idle longer than this is pinged before use
_RETURNED = "gbq_returned_at"  # when a pooled connection was last returned (monotonic)


def create_ledger_engine(url: str) -> Engine:
    """An engine for ``url``; SQLite gets WAL, a busy timeout and write-ahead locking."""
    if url.startswith("sqlite"):
        return _sqlite_engine(url)
    return _postgres_engine(url)


def _postgres_engine(url: str) -> Engine:
    # SQLAlchemy's pool_pre_ping costs a round trip per transaction, two per event: a
    # connection returned less than PING_IDLE_S ago was working then and is used as is.
    # One that died in that window (a server restart) fails its statement; SQLAlchemy then
    # invalidates it and every older connection of the pool, and the delivery is left to
    # the scheduler's sweeps, as in any ledger outage.
    engine = create_engine(url, pool_size=5, max_overflow=5)

    @event.listens_for(engine, "checkin")
    def _on_checkin(_: Any, record: Any) -> None:
        record.info[_RETURNED] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _on_checkout(dbapi_connection: Any, record: Any, _: Any) -> None:
        if time.monotonic() - record.info.get(_RETURNED, float("-inf")) < PING_IDLE_S:
            return
        try:
            engine.dialect.do_ping(dbapi_connection)
        except engine.dialect.loaded_dbapi.Error as error:  # the pool replaces it, and retries
            raise DisconnectionError(f"the ledger's connection was lost: {error}") from error

    return engine


def _sqlite_engine(url: str) -> Engine:
    # A pool per process: opening a connection (and its PRAGMAs) and closing it (which
    # may checkpoint the WAL) cost more than the work of a delivery. worker.process.runtime builds
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
        cursor.execute(f"PRAGMA wal_autocheckpoint={SQLITE_WAL_BACKSTOP_PAGES}")
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


def checkpoint_wal(engine: Engine) -> int:
    """Copy the SQLite ledger's write-ahead log into the database without waiting for
    (or holding up) any reader or writer (a PASSIVE checkpoint), so that no delivery's
    commit has to; the frames copied. Nothing to do on PostgreSQL (0)."""
    if engine.dialect.name != "sqlite":
        return 0
    pooled = engine.raw_connection()  # outside any transaction, which a checkpoint needs
    try:
        cursor = pooled.cursor()
        cursor.execute("PRAGMA wal_checkpoint(PASSIVE)")
        row = cursor.fetchone()
        cursor.close()
    finally:
        pooled.close()
    # busy, frames in the log, frames checkpointed (-1: not in WAL mode)
    return 0 if row is None else max(0, int(row[2]))
