"""SQLite: the write-ahead log is copied into the database by the scheduler's tick, not by
the commit of a delivery that happens to take it past SQLite's 1,000 pages (that commit
paid several milliseconds: the latency benchmark's whole p99). Real SQLite files."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import Engine

from worker.ledger.engine import SQLITE_WAL_BACKSTOP_PAGES, checkpoint_wal, create_ledger_engine

pytestmark = pytest.mark.integration
PAGE = 4096


def wal_frames(path: Path) -> int:
    """Frames in the WAL file (its 32-byte header, then a 24-byte header per frame)."""
    wal = path.with_name(path.name + "-wal")
    return max(0, (wal.stat().st_size - 32) // (24 + PAGE)) if wal.exists() else 0


def write_pages(engine: Engine, transactions: int) -> None:
    """A transaction per page or so, as deliveries commit."""
    for _ in range(transactions):
        with engine.begin() as connection:
            connection.exec_driver_sql("INSERT INTO t VALUES (randomblob(3000))")


def test_commits_leave_the_wal_to_the_checkpoint_and_it_takes_all_of_it(tmp_path: Path) -> None:
    path = tmp_path / "ledger.db"
    engine = create_ledger_engine(f"sqlite:///{path}")
    try:
        with engine.begin() as connection:
            connection.exec_driver_sql("CREATE TABLE t (x BLOB)")
            setting = connection.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar()
        assert setting == SQLITE_WAL_BACKSTOP_PAGES
        write_pages(engine, 1500)
        # SQLite's default would have checkpointed (and reused the log) at 1,000 pages
        assert wal_frames(path) > 1500
        copied = checkpoint_wal(engine)
        assert copied >= 1500
        write_pages(engine, 10)  # the next writer starts the log over, from its start
        assert wal_frames(path) > 1500  # the file keeps its size...
        assert 10 <= checkpoint_wal(engine) < 40  # ...but holds only the new frames
    finally:
        engine.dispose()


def test_the_checkpoint_is_sqlites_alone(database_url: str) -> None:
    """On PostgreSQL it does nothing (the server checkpoints by itself)."""
    engine = create_ledger_engine(database_url)
    try:
        copied = checkpoint_wal(engine)
        assert copied == 0 if engine.dialect.name == "postgresql" else copied >= 0
    finally:
        engine.dispose()
