"""The dead-letter queue: dead events in the ledger, found by filters, retried or purged.

Retrying keeps the event's id, so Gameball sees the same transaction ids and an event
that was in fact applied comes back "already exists": a retry never rewards twice. A
retried event starts afresh (backoff and retry window), its attempts numbered after the
earlier ones. Retrying a dead *paid* event also releases the refunds and cancellations it
had blocked. Replacing is retrying with corrected content under the same id: the dead
letter's history stays, the new content is what is sent. A dead letter
``malformed`` is retried by reading its bytes again: if they hold a valid event (one
buried for a reason since lifted), that event takes its place under its own id;
otherwise it is skipped with the reason (fix it and ``gbq publish`` it instead).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import ColumnElement, Select, bindparam, delete, func, select, tuple_, update
from sqlalchemy.orm import Session

from producers.events import Event, InvalidEventError, parse_event
from worker.ledger.core import afresh, new_event
from worker.ledger.counters import event_counts
from worker.ledger.models import AttemptRow, EventRow, UtcDateTime
from worker.ledger.repository import Ledger
from worker.rules.intake import recover
from worker.rules.states import DeadReason, EventState

DEAD = EventState.DEAD


@dataclass(frozen=True)
class DeadFilter:
    """Which dead letters: every field given must match."""

    event_ids: tuple[str, ...] = ()
    order_id: str | None = None
    kind: str | None = None
    reason: str | None = None
    code: int | None = None
    since: datetime | None = None  # died at or after
    until: datetime | None = None  # died before

    def conditions(self) -> list[ColumnElement[bool]]:
        conditions: list[ColumnElement[bool]] = [EventRow.state == DEAD]
        if self.event_ids:
            conditions.append(EventRow.event_id.in_(self.event_ids))
        if self.order_id is not None:
            conditions.append(EventRow.order_id == self.order_id)
        if self.kind is not None:
            conditions.append(EventRow.kind == self.kind)
        if self.reason is not None:
            conditions.append(EventRow.dead_reason == self.reason)
        if self.code is not None:
            conditions.append(EventRow.last_code == self.code)
        if self.since is not None:
            conditions.append(EventRow.updated_at >= self.since)
        if self.until is not None:
            conditions.append(EventRow.updated_at < self.until)
        return conditions


@dataclass(frozen=True)
class RetryResult:
    requeued: list[str]  # the events asked for
    released: list[str]  # refunds and cancels a retried paid event had blocked
    skipped: list[tuple[str, str]]  # (event_id, why)
    recovered: list[tuple[str, str]] = field(default_factory=list)  # (malformed id, event id)

    @property
    def to_send(self) -> list[str]:
        return [*self.requeued, *self.released, *(event_id for _, event_id in self.recovered)]


# Newest first; ties by the greater id, so that the (state, updated_at, event_id) index
# gives the order.
NEWEST_FIRST = (EventRow.updated_at.desc(), EventRow.event_id.desc())


class DeadLetters:
    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger

    def _select(self, dead: DeadFilter) -> Select[EventRow]:
        return select(EventRow).where(*dead.conditions())

    def find(
        self,
        dead: DeadFilter,
        limit: int | None = None,
        after: tuple[datetime, str] | None = None,
    ) -> list[EventRow]:
        """Newest first (ties: the greater id first, so that the index gives the order);
        ``after`` (died at, event id) of the last row seen gives the next page by the
        index, as fast at the millionth row as at the first."""
        statement = self._select(dead).order_by(*NEWEST_FIRST)
        if after is not None:
            statement = statement.where(
                tuple_(EventRow.updated_at, EventRow.event_id)
                < tuple_(bindparam("after_at", after[0], type_=UtcDateTime()), after[1])
            )
        if limit is not None:
            statement = statement.limit(limit)
        with Session(self.ledger.engine) as session:
            rows = list(session.scalars(statement))
            session.expunge_all()
        return rows

    def ids(self, dead: DeadFilter) -> list[str]:
        """The ids only, newest first: a bulk retry of many dead letters loads no content."""
        statement = select(EventRow.event_id).where(*dead.conditions()).order_by(*NEWEST_FIRST)
        with self.ledger.engine.connect() as connection:
            return list(connection.execute(statement).scalars())

    def count(self, dead: DeadFilter) -> int:
        """By kind and reason alone, from the ledger's counters (flat at any size);
        with any other filter, by the rows it selects."""
        with self.ledger.engine.connect() as connection:
            if dead == DeadFilter(kind=dead.kind, reason=dead.reason):
                return sum(
                    count
                    for (kind, state, reason), count in event_counts(connection).items()
                    if state == DEAD and dead.kind in (None, kind) and dead.reason in (None, reason)
                )
            statement = select(func.count()).select_from(EventRow).where(*dead.conditions())
            return int(connection.execute(statement).scalar() or 0)

    def blocked_by(self, paid: EventRow) -> list[EventRow]:
        """The refunds and cancellations a dead paid event blocked."""
        if paid.kind != "paid" or paid.order_id is None:
            return []
        return self.find(DeadFilter(order_id=paid.order_id, reason=DeadReason.BLOCKED))

    def timeline(self, order_id: str) -> list[tuple[EventRow, list[AttemptRow]]]:
        """Every event of an order in occurrence order, each with its attempts."""
        with Session(self.ledger.engine) as session:
            events = list(
                session.scalars(
                    select(EventRow)
                    .where(EventRow.order_id == order_id)
                    .order_by(EventRow.occurred_at, EventRow.event_id)
                )
            )
            attempts = list(
                session.scalars(
                    select(AttemptRow)
                    .where(AttemptRow.event_id.in_([e.event_id for e in events]))
                    .order_by(AttemptRow.id)
                )
            )
            session.expunge_all()
        by_event: dict[str, list[AttemptRow]] = {}
        for attempt in attempts:
            by_event.setdefault(attempt.event_id, []).append(attempt)
        return [(event, by_event.get(event.event_id, [])) for event in events]

    def requeue(self, event_ids: Sequence[str], now: datetime) -> RetryResult:
        """Put dead events back to ``pending`` (fresh budget); the caller sends them."""
        rows = {row.event_id: row for row in self.find(DeadFilter(event_ids=tuple(event_ids)))}
        skipped = [
            (event_id, "not a dead letter") for event_id in event_ids if event_id not in rows
        ]
        malformed = [row for row in rows.values() if row.dead_reason == DeadReason.MALFORMED]
        recovered = self._recover(malformed, now, skipped)
        retryable = [
            event_id for event_id, row in rows.items() if row.dead_reason != DeadReason.MALFORMED
        ]
        paid_orders = sorted(
            {
                row.order_id
                for row in rows.values()
                if row.kind == "paid" and row.order_id is not None and row.event_id in retryable
            }
        )
        fresh = {**afresh(now), "last_outcome": "retried"}
        with self.ledger.engine.begin() as connection:
            if retryable:
                connection.execute(
                    update(EventRow)
                    .where(EventRow.event_id.in_(retryable), EventRow.state == DEAD)
                    .values(**fresh)
                )
            released: list[str] = []
            if paid_orders:
                released = list(
                    connection.execute(
                        update(EventRow)
                        .where(
                            EventRow.order_id.in_(paid_orders),
                            EventRow.state == DEAD,
                            EventRow.dead_reason == DeadReason.BLOCKED,
                            EventRow.event_id.notin_(retryable),
                        )
                        .values(**fresh)
                        .returning(EventRow.event_id)
                    ).scalars()
                )
        return RetryResult(sorted(retryable), sorted(released), skipped, recovered)

    def replace(self, events: Sequence[Event], now: datetime) -> RetryResult:
        """Corrected events in place of the dead letters with their ids, then retried as
        :meth:`requeue` does. An id that is not a dead letter is skipped, with its state."""
        refused = self.ledger.replace_dead([new_event(event, None) for event in events], now)
        skipped = [
            (
                event_id,
                "not in the ledger: publish it"
                if state == "unknown"
                else f"already known ({state}), not replaced: only dead letters can be",
            )
            for event_id, state in refused.items()
        ]
        replaced = [event.event_id for event in events if event.event_id not in refused]
        result = self.requeue(replaced, now) if replaced else RetryResult([], [], [])
        return dataclasses.replace(result, skipped=[*skipped, *result.skipped])

    def _recover(
        self, rows: list[EventRow], now: datetime, skipped: list[tuple[str, str]]
    ) -> list[tuple[str, str]]:
        """Read malformed dead letters again; those holding a valid event, not yet known,
        are replaced by it (pending). The others are added to ``skipped`` with why."""
        recovered = []
        for row in rows:
            raw = row.raw if row.raw is not None else row.payload.encode("utf-8", "surrogatepass")
            data = recover(raw)
            if data is None:
                skipped.append((row.event_id, "no event in its bytes: fix it, `gbq publish` it"))
                continue
            try:
                event = parse_event(data, accepted=True)
            except InvalidEventError as error:
                skipped.append((row.event_id, f"holds an invalid event ({error})"))
                continue
            if self.ledger.known([event.event_id]):
                skipped.append((row.event_id, f"holds {event.event_id}, already in the ledger"))
                continue
            self.ledger.ingest([new_event(event, None)], now)
            self._delete([row.event_id])
            recovered.append((row.event_id, event.event_id))
        return recovered

    def _delete(self, event_ids: list[str]) -> None:
        with self.ledger.engine.begin() as connection:
            connection.execute(delete(AttemptRow).where(AttemptRow.event_id.in_(event_ids)))
            connection.execute(delete(EventRow).where(EventRow.event_id.in_(event_ids)))

    def purge(self, dead: DeadFilter) -> int:
        """Delete dead letters (and their attempts) for good."""
        ids = select(EventRow.event_id).where(*dead.conditions()).scalar_subquery()
        with self.ledger.engine.begin() as connection:
            connection.execute(delete(AttemptRow).where(AttemptRow.event_id.in_(ids)))
            return connection.execute(delete(EventRow).where(*dead.conditions())).rowcount
