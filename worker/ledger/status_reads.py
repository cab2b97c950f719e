"""The figures ``gbq status``, the metrics and the console's overview read on every call:
in SQLAlchemy Core over table clauses of the few columns they need, so that the command
run most loads neither the ORM nor the models (``bench/results/cli.md``). Each is one
indexed aggregate; the per-state counts are ``counters`` (kept by triggers)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Integer, Select, String, bindparam, column, func, select, table

from worker.ledger.types import UtcDateTime

_EVENTS = table(
    "gbq_events",
    column("state", String()),
    column("created_at", UtcDateTime()),
    column("delivered_at", UtcDateTime()),
    column("conflicts", Integer()),
)
_PARKED = table("gbq_parked_redemptions", column("resolved_at", UtcDateTime()))


def oldest_created(states: Sequence[str]) -> Select[Any]:
    """The oldest ``created_at`` among ``states``. The states are written into the SQL,
    not bound: with bound values PostgreSQL's generic plan for a prepared statement
    walked the created_at index from the oldest delivered event (25 ms at 100,000 rows,
    1 s at 1,000,000) instead of the (state, created_at) index."""
    return select(func.min(_EVENTS.c.created_at)).where(
        _EVENTS.c.state.in_(
            bindparam("b_states", [str(s) for s in states], expanding=True, literal_execute=True)
        )
    )


def delivered_since(connection: Connection, since: datetime) -> int:
    """Events delivered after ``since`` (the delivered_at index)."""
    statement = select(func.count()).select_from(_EVENTS).where(_EVENTS.c.delivered_at >= since)
    return int(connection.execute(statement).scalar() or 0)


def conflicted(connection: Connection) -> int:
    """Events republished with other content (kept as first accepted; the conflicts
    index)."""
    statement = select(func.count()).select_from(_EVENTS).where(_EVENTS.c.conflicts > 0)
    return int(connection.execute(statement).scalar() or 0)


def unresolved_redemptions(connection: Connection) -> int:
    """How many parked redemptions wait for the operator."""
    statement = select(func.count()).select_from(_PARKED).where(_PARKED.c.resolved_at.is_(None))
    return int(connection.execute(statement).scalar() or 0)
