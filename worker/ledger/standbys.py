"""What the ledger's primary knows of its standbys: its WAL position and theirs
(``worker.rules.kept_inbox`` decides with it)."""

from __future__ import annotations

from sqlalchemy import Engine, text

from worker.rules.kept_inbox import StandbyPositions, lsn

_POSITIONS = text(
    "SELECT pg_current_wal_lsn()::text, "
    "(SELECT array_agg(flush_lsn::text) FROM pg_stat_replication WHERE state = 'streaming')"
)


def standby_positions(engine: Engine) -> StandbyPositions:
    """The primary's position and each streaming standby's flushed one. A ledger without
    standbys (SQLite, a lone PostgreSQL) has none."""
    if engine.dialect.name != "postgresql":
        return StandbyPositions(current=0, flushed=())
    with engine.connect() as connection:
        current, flushed = connection.execute(_POSITIONS).one()
    return StandbyPositions(
        current=lsn(current),
        flushed=tuple(None if value is None else lsn(value) for value in flushed or ()),
    )
