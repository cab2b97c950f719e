"""What operators and reconciliation ask of the ledger: one event, its attempts, the
states of many, counts, the records reconciliation matches, and replacing a dead
event's content (``gbq dlq retry --replace``)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from producers.wire import content_sha256
from worker.ledger.core import (
    NewEvent,
    S,
    scope,
    to_millisecond,
)
from worker.ledger.counters import by_state, event_counts
from worker.ledger.ingest import Ingestion
from worker.ledger.models import AttemptRow, EventRow


class OperatorReads(Ingestion):
    """Operator reads and reconciliation's matching."""

    def replace_dead(self, events: Sequence[NewEvent], now: datetime) -> dict[str, str]:
        """Put corrected content in place of dead letters with the same ids; returns, for
        each event *not* replaced, its state ("unknown" if the ledger has no such id).

        The row keeps its id and history (attempts, Gameball's answers); its payload,
        customer and time change, and its transaction time is fixed again if those moved
        (unique per customer, as at ingest). Nothing is sent here: retry it next."""
        refused: dict[str, str] = {}
        with self.engine.begin() as connection:
            for event in events:
                row = connection.execute(
                    select(EventRow.state, EventRow.customer_id, EventRow.transaction_time).where(
                        EventRow.event_id == event.event_id
                    )
                ).one_or_none()
                if row is None or row.state != S.DEAD:
                    refused[event.event_id] = "unknown" if row is None else row.state
                    continue
                values: dict[str, Any] = {
                    "payload": event.payload,
                    "content_sha256": content_sha256(event.payload),
                    "customer_id": event.customer_id,
                    "occurred_at": event.occurred_at,
                    "reversal_lines": None,
                    "updated_at": now,
                }
                moved = (event.customer_id, to_millisecond(event.occurred_at)) != (
                    row.customer_id,
                    row.transaction_time,
                )
                if moved:  # free its old instant first: it may be the one it wants
                    connection.execute(
                        update(EventRow)
                        .where(EventRow.event_id == event.event_id)
                        .values(transaction_time=None)
                    )
                    values["transaction_time"] = self._free_times(connection, [event])[
                        event.event_id
                    ]
                connection.execute(
                    update(EventRow).where(EventRow.event_id == event.event_id).values(**values)
                )
        return refused

    def cashbacks_matching(
        self,
        *,
        customer_id: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int = 1000,
    ) -> list[tuple[str, str, str, str, int | None]]:
        """(event_id, kind, state, payload, last_code) of cashbacks of ``customer_id``
        and/or that happened in [since, until), oldest first."""
        conditions = [EventRow.kind == "cashback", *scope(customer_id, since, until)]
        statement = (
            select(
                EventRow.event_id,
                EventRow.kind,
                EventRow.state,
                EventRow.payload,
                EventRow.last_code,
            )
            .where(*conditions)
            .order_by(EventRow.occurred_at)
            .limit(limit)
        )
        with self._reading() as connection:
            return [(r[0], r[1], r[2], r[3], r[4]) for r in connection.execute(statement)]

    def orders_matching(
        self,
        *,
        customer_id: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int = 1000,
    ) -> list[str]:
        """Order ids with events of ``customer_id`` and/or that happened in [since, until)."""
        conditions = [EventRow.order_id.is_not(None), *scope(customer_id, since, until)]
        statement = (
            select(EventRow.order_id).where(*conditions).distinct().order_by(EventRow.order_id)
        ).limit(limit)
        with self._reading() as connection:
            return [str(order_id) for order_id in connection.execute(statement).scalars()]

    def states_of(self, event_ids: Iterable[str]) -> dict[str, str]:
        """The state of each of ``event_ids`` the ledger has."""
        ids = list(set(event_ids))
        states: dict[str, str] = {}
        with self._reading() as connection:
            for start in range(0, len(ids), 500):
                statement = select(EventRow.event_id, EventRow.state).where(
                    EventRow.event_id.in_(ids[start : start + 500])
                )
                states.update({row.event_id: row.state for row in connection.execute(statement)})
        return states

    def known(self, event_ids: Iterable[str]) -> set[str]:
        ids = list(event_ids)
        if not ids:
            return set()
        with self._reading() as connection:
            found = connection.execute(select(EventRow.event_id).where(EventRow.event_id.in_(ids)))
            return set(found.scalars())

    def get(self, event_id: str) -> EventRow | None:
        with Session(self.engine) as session:
            row = session.get(EventRow, event_id)
            if row is not None:
                session.expunge(row)
            return row

    def counts_by_state(self) -> dict[str, int]:
        """From the counters the triggers keep (``ledger/counters.py``): a few rows read."""
        with self._reading() as connection:
            return by_state(event_counts(connection))

    def attempts_of(self, event_id: str) -> list[AttemptRow]:
        with Session(self.engine) as session:
            rows = list(
                session.scalars(
                    select(AttemptRow)
                    .where(AttemptRow.event_id == event_id)
                    .order_by(AttemptRow.id)
                )
            )
            session.expunge_all()
            return rows
