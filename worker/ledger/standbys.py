"""What the ledger's primary knows of its standbys: its WAL position and theirs
(``worker.rules.kept_inbox`` decides with it)."""

from __future__ import annotations

from sqlalchemy import Connection, Engine, text

from worker.rules.kept_inbox import StandbyPositions, lsn

_POSITIONS = text(
    "SELECT pg_current_wal_lsn()::text, "
    "(SELECT array_agg(flush_lsn::text) FROM pg_stat_replication WHERE state = 'streaming')"
)


def standby_positions(bind: Engine | Connection) -> StandbyPositions:
    """The primary's position and each streaming standby's flushed one (read on a
    connection of its own, or on the one given). A ledger without standbys (SQLite, a
    lone PostgreSQL) has none."""
    if bind.dialect.name != "postgresql":
        return StandbyPositions(current=0, flushed=())
    if isinstance(bind, Engine):
        with bind.connect() as connection:
            return standby_positions(connection)
    current, flushed = bind.execute(_POSITIONS).one()
    return StandbyPositions(
        current=lsn(current),
        flushed=tuple(None if value is None else lsn(value) for value in flushed or ()),
    )
