"""What operators read (the console, ``gbq status``, the metrics, the demo's summary) that
the ledger's other modules do not already give: counts over a window of time and a
customer's events. Each is one indexed query; the callers only arrange the figures."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from itertools import pairwise
from typing import Any

from sqlalchemy import Connection, Engine, func, select
from sqlalchemy.orm import Session

from worker.ledger.models import AttemptRow, EventRow
from worker.rules.outcomes import Reason

MINUTES = 60


@dataclass(frozen=True)
class LastHour:
    """Per minute, oldest first: deliveries, dead letters, and the backlog at its end."""

    delivered: list[int]
    died: list[int]
    backlog: list[int]


def last_hour(connection: Connection, now: datetime, backlog_now: int) -> LastHour:
    """Range counts per minute on the created_at, delivered_at and (state, updated_at)
    indexes; the backlog is walked back from now: at the end of each earlier minute it
    was the backlog after it, less what was published since, plus what settled since."""
    edges = [now - timedelta(minutes=k) for k in range(MINUTES, -1, -1)]
    created, delivered, died = [], [], []
    for start, end in pairwise(edges):
        created.append(_count(connection, EventRow.created_at, start, end))
        delivered.append(_count(connection, EventRow.delivered_at, start, end))
        died.append(_count(connection, EventRow.updated_at, start, end, EventRow.state == "dead"))
    backlog = [backlog_now]
    for minute in range(MINUTES - 1, 0, -1):
        backlog.append(backlog[-1] - created[minute] + delivered[minute] + died[minute])
    backlog.reverse()
    return LastHour(delivered, died, [max(0, value) for value in backlog])


def _count(connection: Connection, column: Any, start: datetime, end: datetime, *more: Any) -> int:
    statement = select(func.count()).where(column > start, column <= end, *more)
    return int(connection.execute(statement).scalar() or 0)


def delivery_times_after(
    connection: Connection, watermark: datetime
) -> list[tuple[datetime, datetime | None]]:
    """(delivered_at, published_at) of the events delivered after ``watermark``."""
    statement = select(EventRow.delivered_at, EventRow.published_at).where(
        EventRow.delivered_at > watermark
    )
    return [(row[0], row[1]) for row in connection.execute(statement) if row[0] is not None]


def answered_already_applied(engine: Engine) -> int:
    """Attempts Gameball answered "already applied" (a duplicate it kept from counting twice)."""
    statement = select(func.count()).where(AttemptRow.reason == Reason.ALREADY_APPLIED.value)
    with engine.connect() as connection:
        return int(connection.execute(statement).scalar() or 0)


def customer_events(engine: Engine, customer_id: str, limit: int = 200) -> list[EventRow]:
    """A customer's events, newest first (the (customer_id, transaction_time) index)."""
    statement = (
        select(EventRow)
        .where(EventRow.customer_id == customer_id)
        .order_by(EventRow.transaction_time.desc())
        .limit(limit)
    )
    with Session(engine) as session:
        rows = list(session.scalars(statement))
        session.expunge_all()
    return rows
