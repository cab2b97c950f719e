"""Ingesting events: insert what is not known yet, idempotently, each transaction time
unique per customer to the millisecond; the delivery path and the scheduler's relays
(inbox, spool, outbox) both ingest."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection
from sqlalchemy.exc import IntegrityError, StatementError

from producers.quarantine import Poison
from producers.untrusted import printable
from producers.wire import content_sha256
from worker.ledger import statements as st
from worker.ledger.core import (
    FEW_ROWS,
    MALFORMED_PREVIEW_CHARS,
    MILLISECOND,
    TIME_CLASH_RETRIES,
    LedgerCore,
    NewEvent,
    S,
    first_line,
    log,
    new_rows,
    order_lock_key,
    refuses_data,
    to_millisecond,
    unit_of,
)
from worker.rules.states import DeadReason


class Ingestion(LedgerCore):
    """Ingest events (the delivery path and the relays)."""

    def ingest(self, events: Sequence[NewEvent], now: datetime) -> int:
        """Insert events not yet known (idempotent); returns how many were new.

        Each new event gets its Gameball transaction time here, once: its ``occurred_at``
        at millisecond precision, moved on by a millisecond while another event of the same
        customer holds that instant (Gameball refuses the second, 304/9003). A process that
        took the same instant at the same moment makes the unique index refuse the insert:
        it is tried again with the instants now taken."""
        for _ in range(TIME_CLASH_RETRIES - 1):
            try:
                return self._ingest(events, now)
            except IntegrityError:
                continue
        return self._ingest(events, now)  # the last try lets the clash raise

    def _ingest(self, events: Sequence[NewEvent], now: datetime) -> int:
        if not events:
            return 0
        events = sorted(events, key=lambda e: e.event_id)  # rows locked in one order
        rows = new_rows(events, now)
        with self.engine.begin() as connection:
            self._serialize(connection, map(unit_of, events))
            return len(self._ingest_in(connection, events, rows, now))

    def _ingest_in(
        self,
        connection: Connection,
        events: Sequence[NewEvent],
        rows: list[dict[str, Any]],
        now: datetime,
        *,
        optimistic: bool = False,
        lock: str | None = None,
    ) -> set[str]:
        """Insert the rows of ``events`` not known yet; returns the ids inserted.

        ``optimistic`` (one event only): take the event's own instant as its transaction
        time without reading which instants its customer holds; if another event holds it,
        the unique index refuses the insert and the caller tries again, not optimistic.
        One read less per event: two events of one customer in one millisecond are rare.

        ``lock`` (PostgreSQL, optimistic, one event): the insert itself takes that order's
        lock first (``statements.insert_locked``), not a statement before it."""
        times = (
            {e.event_id: to_millisecond(e.occurred_at) for e in events}
            if optimistic and len(events) == 1
            else self._free_times(connection, events)
        )
        for row, event in zip(rows, events, strict=True):
            row["transaction_time"] = times[event.event_id]
        if lock is not None:
            (row,) = rows
            params = {f"n_{name}": value for name, value in row.items()}
            params["b_key"] = order_lock_key(lock)
            new = set(self._run(connection, self._insert_locked(tuple(row)), params).scalars())
        elif len(rows) <= FEW_ROWS:
            # A prepared statement per row: SQLAlchemy's several-row insert with RETURNING
            # builds its SQL anew each time, more work than an order's few rows.
            new = {
                event_id
                for row in rows
                for event_id in self._run(connection, self._insert_new, row).scalars()
            }
        else:  # a sweep's batch: one statement, one round trip
            new = set(connection.execute(self._insert_new, rows).scalars())
        for event in events:
            if event.event_id not in new:
                self._compare(connection, event, now)
        return new

    def _free_times(
        self, connection: Connection, events: Sequence[NewEvent]
    ) -> dict[str, datetime]:
        """A transaction time per event that no other event of its customer holds.

        The instants taken are read over a window past the latest wanted one; if a run of
        taken instants pushes an allocation beyond it, the window widens and the read is
        done again, so a customer with many events at one instant never clashes."""
        wanted = {e.event_id: to_millisecond(e.occurred_at) for e in events}
        customers = {e.customer_id for e in events}
        low, span = min(wanted.values()), len(events)
        while True:
            high = max(wanted.values()) + span * MILLISECOND
            bounds = {"b_low": low, "b_high": high}
            held: Sequence[Any]
            if len(customers) == 1:
                one = {"b_customer": next(iter(customers)), **bounds}
                held = self._run(connection, st.TIMES_TAKEN_ONE, one).all()
            else:
                many = {"b_customers": sorted(customers), **bounds}
                held = connection.execute(st.TIMES_TAKEN, many).all()
            taken = {(row.customer_id, row.transaction_time) for row in held}
            # An event of the batch the ledger has already (a sweep's batch, an order's
            # inbox) keeps its instant: it must not take another one that its insert, a
            # no-op, would leave unused between the others.
            times = {row.event_id: row.transaction_time for row in held if row.event_id in wanted}
            for event in sorted(events, key=lambda e: (wanted[e.event_id], e.event_id)):
                if event.event_id in times:
                    continue
                moment = wanted[event.event_id]
                while (event.customer_id, moment) in taken:
                    moment += MILLISECOND
                taken.add((event.customer_id, moment))
                times[event.event_id] = moment
            if max(times.values()) <= high:
                return times
            span = 2 * span + len(held)  # unseen instants lie beyond: read further

    def _compare(self, connection: Connection, event: NewEvent, now: datetime) -> None:
        """``event`` is known already: if its content differs, the first content stays (it
        may have been sent) and the conflict is recorded on the event, never dropped
        silently; the same other content seen again counts once."""
        params = {
            "b_id": event.event_id,
            "b_sha": content_sha256(event.payload),
            "b_payload": event.payload,
            "b_now": now,
        }
        recorded = self._run(connection, st.RECORD_CONFLICT, params)
        if recorded.rowcount:
            log.warning(
                "event %s was published again with other content: the first content is kept "
                "and the other recorded (gbq events %s)",
                event.event_id,
                event.order_id or event.event_id,
            )

    def ingest_isolated(
        self, events: Sequence[NewEvent], now: datetime
    ) -> list[tuple[NewEvent, str]]:
        """Ingest ``events``; if the database refuses the batch for its data (not for being
        unreachable), ingest them one by one. Returns the refused events with the reason,
        so that one bad row never holds back the others."""
        try:
            self.ingest(events, now)
        except StatementError as error:
            if not refuses_data(error):
                raise
        else:
            return []
        refused = []
        for event in events:
            try:
                self.ingest([event], now)
            except StatementError as error:
                if not refuses_data(error):
                    raise
                refused.append((event, f"the ledger refused it: {first_line(error)}"))
        return refused

    def dead_letter_poison(self, poison: Poison, now: datetime) -> str:
        """Keep unreadable input as a dead letter ``malformed`` (its raw bytes exactly, a
        printable preview as payload); idempotent per content. Returns its id."""
        row = {
            "event_id": poison.dead_letter_id,
            "kind": "malformed",
            "order_id": None,
            "customer_id": "",
            "payload": printable(poison.raw, MALFORMED_PREVIEW_CHARS),
            "occurred_at": now,
            "published_at": None,
            "state": S.DEAD,
            "attempts": 0,
            "window_credit_s": 0.0,
            "dead_reason": DeadReason.MALFORMED,
            "last_outcome": "malformed",
            "last_message": printable(f"{poison.source}: {poison.problem}", 2000),
            "raw": poison.raw,
            "raw_length": poison.length,
            "raw_sha256": poison.sha256,
            "created_at": now,
            "updated_at": now,
        }
        statement = self._insert().on_conflict_do_nothing(index_elements=["event_id"])
        with self.engine.begin() as connection:
            connection.execute(statement, [row])
        return poison.dead_letter_id
