"""The outbox's rows in the caller's own database (``producers.outbox`` stages them in the
caller's transaction): read a batch in staging order, and forget the rows relayed."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Engine, delete, select

from producers.outbox import outbox_table


def staged(engine: Engine, limit: int) -> list[tuple[Any, Any, Any]]:
    """Up to ``limit`` rows as (id, event_id, event_json), oldest first; anything may be in
    them (the caller's code wrote them): the scheduler screens each."""
    with engine.begin() as connection:
        rows = connection.execute(
            select(outbox_table.c.id, outbox_table.c.event_id, outbox_table.c.event_json)
            .order_by(outbox_table.c.id)
            .limit(limit)
        ).all()
    return [(row[0], row[1], row[2]) for row in rows]


def forget(engine: Engine, row_ids: Sequence[Any]) -> None:
    """The rows are in the ledger (or buried): delete them."""
    with engine.begin() as connection:
        connection.execute(delete(outbox_table).where(outbox_table.c.id.in_(list(row_ids))))
