"""Every read and write of the ledger, as short transactions over an Engine.

Concurrency rests on conditional single-statement updates: a claim succeeds only for a
claimable row (``UPDATE … WHERE state … RETURNING``), an attempt's result is applied only
by the lease holder, and the scheduler's batch takes use ``FOR UPDATE SKIP LOCKED`` on
PostgreSQL (SQLite serialises writers with ``BEGIN IMMEDIATE`` instead).
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, and_, func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError, InterfaceError, OperationalError, StatementError
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from producers.events import Event
from producers.quarantine import Poison
from producers.untrusted import printable
from producers.wire import content_sha256
from worker.ledger import statements as st
from worker.ledger.clock import LedgerClock
from worker.ledger.counters import by_state, event_counts
from worker.ledger.engine import READ_ONLY
from worker.ledger.kept import KeptConnection
from worker.ledger.models import AttemptRow, EventRow
from worker.ledger.order_memory import OrderMemory, OrderRow
from worker.ledger.prepared import Runner
from worker.ledger.retention import (
    ArchiveAppend,
    PruneResult,
    count_prunable,
    forget_orders,
    memories,
    remove_batch,
)
from worker.rules.ordering import OrderFact
from worker.rules.outcomes import Outcome
from worker.rules.retry import Transition
from worker.rules.states import DeadReason, EventState

S = EventState
MALFORMED_PREVIEW_CHARS = 2000
MILLISECOND = timedelta(milliseconds=1)  # Gameball's precision for transaction times
TIME_CLASH_RETRIES = 5
log = logging.getLogger(__name__)


def refuses_data(error: StatementError) -> bool:
    """Whether the database refused a statement for its data (a value it cannot store),
    rather than for being unreachable or busy: only the former is the row's fault."""
    if isinstance(error, OperationalError | InterfaceError):
        return False
    return not getattr(error, "connection_invalidated", False)


def to_millisecond(moment: datetime) -> datetime:
    return moment.replace(microsecond=moment.microsecond // 1000 * 1000)


def _first_line(error: BaseException) -> str:
    text = str(getattr(error, "orig", None) or error)
    return printable(text.splitlines()[0] if text else type(error).__name__, 300)


@dataclass(frozen=True)
class NewEvent:
    event_id: str
    kind: str
    order_id: str | None
    customer_id: str
    payload: str
    occurred_at: datetime
    published_at: datetime | None


def new_event(event: Event, published_at: float | None) -> NewEvent:
    """The ledger row of an accepted event (``published_at`` in epoch seconds)."""
    return NewEvent(
        event_id=event.event_id,
        kind=event.kind,
        order_id=getattr(event, "order_id", None),
        customer_id=event.customer_id,
        payload=event.model_dump_json(),
        occurred_at=event.occurred_at,
        published_at=None if published_at is None else datetime.fromtimestamp(published_at, UTC),
    )


@dataclass(frozen=True)
class Claimed:
    """An event this worker now holds the lease on."""

    event_id: str
    kind: str
    order_id: str | None
    payload: str
    occurred_at: datetime
    attempts: int  # made so far, ever: the next one is numbered attempts + 1
    first_attempt_at: datetime | None
    window_credit_s: float
    transaction_time: datetime | None = None  # fixed at ingest (None: an older row)
    retried_at_attempt: int = 0  # attempts before the last manual retry

    @property
    def attempts_since_retry(self) -> int:
        """What the backoff counts: attempts since the event was last retried by hand."""
        return self.attempts - self.retried_at_attempt

    reversal_lines: str | None = None  # JSON, fixed at the first attempt of a full reversal
    # Read in the claim's own transaction when the caller asked (see ``ingest_and_claim``):
    order_facts: tuple[OrderFact, ...] | None = None  # the order's events, this one included
    id_held_by_order: tuple[str, bool] | None = None  # (an id, whether some order has it)
    parked: bool = False  # waiting already: parked in the claim's transaction (``park``)


@dataclass(frozen=True)
class Recorded:
    """What recording an attempt did: applied (the lease was still ours), and, when the
    event settled its order's next steps, the events released and those blocked."""

    applied: bool
    released: list[str] = field(default_factory=list)
    blocked: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class AttemptRecord:
    attempt_no: int
    worker: str
    started_at: datetime
    duration_s: float
    outcome: Outcome


def _window(
    customer_id: str | None, since: datetime | None, until: datetime | None
) -> list[ColumnElement[bool]]:
    """Events of ``customer_id`` and/or that happened in [since, until) (reconcile's scope)."""
    conditions: list[ColumnElement[bool]] = []
    if customer_id is not None:
        conditions.append(EventRow.customer_id == customer_id)
    if since is not None:
        conditions.append(EventRow.occurred_at >= since)
    if until is not None:
        conditions.append(EventRow.occurred_at < until)
    return conditions


def afresh(now: datetime) -> dict[str, Any]:
    """The columns of an event sent again by hand (retried, replaced, re-driven): pending,
    a new retry window and backoff, attempt numbers continuing."""
    return {
        "state": S.PENDING,
        "dead_reason": None,
        "retried_at_attempt": EventRow.attempts,
        "first_attempt_at": None,
        "window_credit_s": 0.0,
        "next_attempt_at": None,
        "lease_owner": None,
        "lease_expires_at": None,
        "enqueued_at": now,
        "updated_at": now,
    }


def _new_rows(events: Sequence[NewEvent], now: datetime) -> list[dict[str, Any]]:
    """The rows of newly ingested events (transaction times are added by the caller)."""
    return [
        {
            "event_id": e.event_id,
            "kind": e.kind,
            "order_id": e.order_id,
            "customer_id": e.customer_id,
            "payload": e.payload,
            "occurred_at": e.occurred_at,
            "published_at": e.published_at,
            "state": S.PENDING,
            "attempts": 0,
            "window_credit_s": 0.0,
            "enqueued_at": now,
            "created_at": now,
            "updated_at": now,
            "content_sha256": content_sha256(e.payload),
            "lease_owner": None,
            "lease_expires_at": None,
        }
        for e in events
    ]


def _claimed_as_inserted(row: dict[str, Any]) -> Claimed:
    """The claim of an event inserted claimed (``_new_rows``' row, transaction time set)."""
    return Claimed(
        event_id=row["event_id"],
        kind=row["kind"],
        order_id=row["order_id"],
        payload=row["payload"],
        occurred_at=row["occurred_at"],
        attempts=0,
        first_attempt_at=None,
        window_credit_s=0.0,
        transaction_time=row["transaction_time"],
    )


def _add_pruned(facts: dict[str, list[OrderFact]], memory: dict[str, OrderMemory]) -> None:
    """Removed events are delivered ones: add them where the live rows do not have them
    (their time is kept to the second: a delivered event is never what ordering waits on)."""
    for order_id, remembered in memory.items():
        known = {fact.event_id for fact in facts.get(order_id, [])}
        facts.setdefault(order_id, []).extend(
            OrderFact(event.event_id, event.kind, event.occurred_at, S.DELIVERED)
            for event in remembered.events
            if event.event_id not in known
        )


def order_lock_key(key: str) -> int:
    """The second key of an order's PostgreSQL lock (``statements.LOCK_ORDER``)."""
    digest = hashlib.blake2b(key.encode(), digest_size=4).digest()
    return int.from_bytes(digest, "big", signed=True)


def _unit(event: NewEvent) -> str:
    """What serializes an event's transactions: its order, else itself."""
    return event.order_id or event.event_id


def _has_paid(facts: list[OrderFact]) -> bool:
    return any(fact.kind == "paid" for fact in facts)


@dataclass(frozen=True)
class OrderHistory:
    """An order's events in the ledger and what it remembers of those retention removed."""

    live: list[OrderRow]
    memory: OrderMemory


FEW_ROWS = 8  # inserted one prepared statement each; more take SQLAlchemy's batched insert


class Ledger:
    """The ledger's operations; one instance per process (engines do not cross forks)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.clock = LedgerClock.of(engine)  # the time every lease and due date is in
        # Built once (see worker.ledger.statements): insert what is not known yet.
        self._insert_new = (
            self._insert()
            .on_conflict_do_nothing(index_elements=["event_id"])
            .returning(EventRow.event_id)
        )
        self._run = Runner().execute  # the delivery path's statements, on the driver
        self._kept = KeptConnection(engine)  # the delivery path's two transactions
        self._locked_inserts: dict[tuple[str, ...], Any] = {}

    def _serialize(self, connection: Connection, keys: Iterable[str | None]) -> None:
        """Hold the locks of these orders (or order-less events) to commit, in key order so
        that two transactions never wait on each other (PostgreSQL; SQLite runs one writer
        at a time)."""
        if connection.dialect.name != "postgresql":
            return
        for key in sorted({order_lock_key(key) for key in keys if key is not None}):
            self._run(connection, st.LOCK_ORDER, {"b_key": key})

    @contextmanager
    def _reading(self) -> Iterator[Connection]:
        """A read-only transaction (on SQLite it takes no write lock)."""
        with self.engine.connect() as plain:
            connection = plain.execution_options(**{READ_ONLY: True})
            with connection.begin():
                yield connection

    # --- ingest -------------------------------------------------------------------------------

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
        rows = _new_rows(events, now)
        with self.engine.begin() as connection:
            self._serialize(connection, map(_unit, events))
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
                refused.append((event, f"the ledger refused it: {_first_line(error)}"))
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

    def _insert_locked(self, columns: tuple[str, ...]) -> Any:
        """``statements.insert_locked`` for these columns, built once."""
        statement = self._locked_inserts.get(columns)
        if statement is None:
            statement = self._locked_inserts[columns] = st.insert_locked(columns)
        return statement

    def _insert(self) -> Any:
        dialect = postgresql if self.engine.dialect.name == "postgresql" else sqlite
        return dialect.insert(EventRow)

    # --- the worker's path ------------------------------------------------------------------

    def claim(
        self, event_id: str, owner: str, now: datetime, lease_until: datetime
    ) -> Claimed | None:
        """Take the lease on ``event_id`` if it is claimable now."""
        with self.engine.begin() as connection:
            return self._claim_in(connection, event_id, owner, now, lease_until)

    def ingest_and_claim(
        self,
        event: NewEvent,
        owner: str,
        now: datetime,
        lease_until: datetime,
        *,
        also: Sequence[NewEvent] = (),
        read_order: bool = False,
        order_with_id: str | None = None,
        park: Callable[[Claimed], datetime | None] | None = None,
    ) -> Claimed | None:
        """:meth:`ingest` then :meth:`claim`, in one transaction (a worker's first step).

        What the delivery needs next is done in the same transaction, so that an event
        costs one transaction before its call, not three: ``also`` (its order's other
        published events) is ingested with it, ``read_order`` reads its order's facts into
        ``Claimed.order_facts``, and ``order_with_id`` asks whether an order has that id
        (``Claimed.id_held_by_order``).

        ``park`` (with ``read_order``) is given the claim and its order's facts; when it
        returns a time, the event is parked until then (``Claimed.parked``) in the same
        transaction. The read and the park then hold the order's lock (PostgreSQL; SQLite
        runs one writer) to commit: a settle of the order runs wholly before them, and they
        see it, or wholly after, and its release sees the parked event. No re-check."""
        events = sorted({e.event_id: e for e in (*also, event)}.values(), key=lambda e: e.event_id)
        lease = (event.event_id, owner, now, lease_until)
        reads = (read_order, order_with_id, park)
        for attempt in range(TIME_CLASH_RETRIES - 1):
            try:
                return self._ingest_and_claim(events, lease, reads, optimistic=attempt == 0)
            except IntegrityError:
                continue  # the instant was taken (unread by the optimistic first try, or
                # by a process that took it at the same moment): choose again
        return self._ingest_and_claim(events, lease, reads, optimistic=False)

    def _ingest_and_claim(
        self,
        events: Sequence[NewEvent],
        lease: tuple[str, str, datetime, datetime],
        reads: tuple[bool, str | None, Callable[[Claimed], datetime | None] | None],
        *,
        optimistic: bool,
    ) -> Claimed | None:
        event_id, owner, now, until = lease
        read_order, order_with_id, park = reads
        rows = _new_rows(events, now)
        mine = next(row for row in rows if row["event_id"] == event_id)
        # A new event is claimable at once: it is inserted claimed (no CLAIM statement).
        mine.update(state=S.IN_FLIGHT, lease_owner=owner, lease_expires_at=until)
        # PostgreSQL, one event at its own instant: its insert takes the order's lock
        lock = (
            _unit(events[0])
            if optimistic and len(events) == 1 and self.engine.dialect.name == "postgresql"
            else None
        )
        with self._kept.begin() as connection:
            if lock is None:
                self._serialize(connection, map(_unit, events))
            new = self._ingest_in(connection, events, rows, now, optimistic=optimistic, lock=lock)
            claimed = (
                _claimed_as_inserted(mine)
                if event_id in new
                else self._claim_in(connection, *lease)
            )
            if claimed is None:
                return None
            if read_order and claimed.order_id is not None:
                facts = self._order_facts_in(connection, [claimed.order_id])
                claimed = dataclasses.replace(claimed, order_facts=tuple(facts[claimed.order_id]))
                recheck_at = None if park is None else park(claimed)
                if recheck_at is not None:
                    self._park_in(connection, event_id, owner, now, recheck_at)
                    return dataclasses.replace(claimed, parked=True)
            if order_with_id is not None:
                held = self._has_order_in(connection, order_with_id)
                claimed = dataclasses.replace(claimed, id_held_by_order=(order_with_id, held))
            return claimed

    def _claim_in(
        self,
        connection: Connection,
        event_id: str,
        owner: str,
        now: datetime,
        lease_until: datetime,
    ) -> Claimed | None:
        params = {"b_id": event_id, "b_now": now, "b_owner": owner, "b_until": lease_until}
        row = self._run(connection, st.CLAIM, params).one_or_none()
        if row is None:
            return None
        return Claimed(
            event_id=row.event_id,
            kind=row.kind,
            order_id=row.order_id,
            payload=row.payload,
            occurred_at=row.occurred_at,
            attempts=row.attempts,
            first_attempt_at=row.first_attempt_at,
            window_credit_s=row.window_credit_s,
            transaction_time=row.transaction_time,
            reversal_lines=row.reversal_lines,
            retried_at_attempt=row.retried_at_attempt,
        )

    def fix_reversal_lines(self, event_id: str, owner: str, lines: str) -> str:
        """Fix (once) the line items a cancellation or full refund names; returns the ones
        fixed, which are an earlier holder's if it got there first."""
        with self.engine.begin() as connection:
            connection.execute(
                update(EventRow)
                .where(
                    EventRow.event_id == event_id,
                    EventRow.lease_owner == owner,
                    EventRow.reversal_lines.is_(None),
                )
                .values(reversal_lines=lines)
            )
            fixed = connection.execute(
                select(EventRow.reversal_lines).where(EventRow.event_id == event_id)
            ).scalar()
        return fixed or lines

    def move_transaction_time(
        self, event_id: str, owner: str, *, after: datetime | None = None
    ) -> datetime | None:
        """Move a claimed event's transaction time on to the next instant its customer has
        free: after its own (Gameball answered 304 to one that a transaction gbq never sent
        holds), or after ``after`` (a refund sent at its order's time)."""
        for _ in range(TIME_CLASH_RETRIES):
            try:
                with self.engine.begin() as connection:
                    row = connection.execute(
                        select(
                            EventRow.customer_id, EventRow.transaction_time, EventRow.occurred_at
                        ).where(EventRow.event_id == event_id, EventRow.lease_owner == owner)
                    ).one_or_none()
                    if row is None:
                        return None
                    base = after or row.transaction_time or row.occurred_at
                    moment = to_millisecond(base) + MILLISECOND
                    taken = set(
                        connection.execute(
                            select(EventRow.transaction_time).where(
                                EventRow.customer_id == row.customer_id,
                                EventRow.transaction_time >= moment,
                                EventRow.event_id != event_id,  # its own is free to it
                            )
                        ).scalars()
                    )
                    while moment in taken:
                        moment += MILLISECOND
                    connection.execute(
                        update(EventRow)
                        .where(EventRow.event_id == event_id)
                        .values(transaction_time=moment)
                    )
                    return moment
            except IntegrityError:
                continue
        return None

    def reversal_time(self, order_id: str, event_id: str) -> datetime | None:
        """Where a refund or cancellation of the order goes when it takes its order's time
        (``GBQ_GAMEBALL_REFUND_TIME=original``): the paid event's transaction time plus one
        millisecond per reversal of the order that happened before it, the removed ones
        included (their times are no longer in the ledger to be avoided). None: no paid
        event known."""
        with self._reading() as connection:
            paid = connection.execute(
                select(EventRow.transaction_time, EventRow.occurred_at).where(
                    EventRow.event_id == f"paid:{order_id}"
                )
            ).one_or_none()
            live = connection.execute(
                select(EventRow.event_id, EventRow.occurred_at).where(
                    EventRow.order_id == order_id, EventRow.kind.in_(("refunded", "cancelled"))
                )
            ).all()
            memory = memories(connection, [order_id]).get(order_id, OrderMemory())
        removed = [e for e in memory.events if e.kind in ("refunded", "cancelled")]
        if paid is not None:
            base = paid.transaction_time or to_millisecond(paid.occurred_at)
        else:
            paid_events = [e.occurred_at for e in memory.events if e.kind == "paid"]
            if not paid_events:
                return None
            base = paid_events[0]
        times = {row.event_id: row.occurred_at for row in live}
        times.update({e.event_id: e.occurred_at for e in removed if e.event_id not in times})
        mine = times.get(event_id)
        if mine is None:
            return base
        earlier = sum(1 for other, at in times.items() if (at, other) < (mine, event_id))
        return base + earlier * MILLISECOND

    def order_history(self, order_id: str) -> OrderHistory:
        """Every event of an order: (event_id, kind, state, payload, last_code) of the rows
        in the ledger, and the memory of those retention removed."""
        statement = select(
            EventRow.event_id, EventRow.kind, EventRow.state, EventRow.payload, EventRow.last_code
        ).where(EventRow.order_id == order_id)
        with self._reading() as connection:
            live = [(r[0], r[1], r[2], r[3], r[4]) for r in connection.execute(statement)]
            memory = memories(connection, [order_id]).get(order_id, OrderMemory())
        return OrderHistory(live, memory)

    def prune(
        self,
        *,
        cutoff: datetime,
        limit: int,
        archive_dir: Path | None = None,
        forget_before: datetime | None = None,
    ) -> PruneResult:
        """One batch of retention (``worker.ledger.retention``): delivered events before
        ``cutoff`` removed (archived first when ``archive_dir``), order memories older than
        ``forget_before`` dropped."""
        now = self.clock.now()
        with self.engine.connect() as connection:
            transaction = connection.begin()
            archive: ArchiveAppend | None = None
            try:
                batch = remove_batch(connection, cutoff=cutoff, limit=limit, now=now)
                forgotten = (
                    forget_orders(connection, before=forget_before, limit=limit)
                    if forget_before is not None
                    else 0
                )
                archived = 0
                if archive_dir is not None and batch.events:
                    # Last, once the rows are ours; the lock is held through the commit.
                    archive = ArchiveAppend(archive_dir)
                    archived = archive.write(batch)
                transaction.commit()
            except BaseException:
                if archive is not None:
                    archive.taken_back()
                transaction.rollback()
                raise
            finally:
                if archive is not None:
                    archive.close()
        return PruneResult(len(batch.events), batch.attempts_removed, archived, forgotten)

    def count_prunable(self, cutoff: datetime) -> int:
        with self._reading() as connection:
            return count_prunable(connection, cutoff)

    def has_order(self, order_id: str) -> bool:
        """Whether any event of an order with this id is known (by the order_id index)."""
        with self._reading() as connection:
            return self._has_order_in(connection, order_id)

    def _has_order_in(self, connection: Connection, order_id: str) -> bool:
        return self._run(connection, st.HAS_ORDER, {"b_order": order_id}).first() is not None

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
        conditions = [EventRow.kind == "cashback", *_window(customer_id, since, until)]
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
        conditions = [EventRow.order_id.is_not(None), *_window(customer_id, since, until)]
        statement = (
            select(EventRow.order_id).where(*conditions).distinct().order_by(EventRow.order_id)
        ).limit(limit)
        with self._reading() as connection:
            return [str(order_id) for order_id in connection.execute(statement).scalars()]

    def redrive(self, event_ids: Sequence[str], now: datetime) -> list[str]:
        """Delivered events Gameball has no record of: back to ``pending`` to be sent again
        (same ids: if Gameball does have them after all, it answers "already exists")."""
        if not event_ids:
            return []
        statement = (
            update(EventRow)
            .where(EventRow.event_id.in_(list(event_ids)), EventRow.state == S.DELIVERED)
            .values(**afresh(now), last_outcome="redriven")
            .returning(EventRow.event_id)
        )
        with self.engine.begin() as connection:
            return list(connection.execute(statement).scalars())

    def order_facts_many(self, order_ids: Iterable[str]) -> dict[str, list[OrderFact]]:
        """The facts of several orders in one query."""
        ids = sorted(set(order_ids))
        if not ids:
            return {}
        with self._reading() as connection:
            return self._order_facts_in(connection, ids)

    def _order_facts_in(self, connection: Connection, ids: list[str]) -> dict[str, list[OrderFact]]:
        facts: dict[str, list[OrderFact]] = {order_id: [] for order_id in ids}
        rows: Sequence[Any]
        if len(ids) == 1:
            rows = self._run(connection, st.ORDER_FACTS_ONE, {"b_order": ids[0]}).all()
        else:
            rows = connection.execute(st.ORDER_FACTS, {"b_orders": ids}).all()
        for row in rows:
            fact = OrderFact(row.event_id, row.kind, row.occurred_at, row.state)
            facts[row.order_id].append(fact)
        # Removed events are delivered, and a delivered event other than the paid one
        # holds nothing back: the memory matters only where the paid event is gone.
        unpaid = [order_id for order_id, known in facts.items() if not _has_paid(known)]
        _add_pruned(facts, memories(connection, unpaid))
        return facts

    def order_facts(self, order_id: str) -> list[OrderFact]:
        """What ordering knows of an order's events, those retention removed included."""
        return self.order_facts_many([order_id])[order_id]

    def _release_lease(
        self,
        event_id: str,
        owner: str,
        now: datetime,
        *,
        order_id: str | None = None,
        **values: object,
    ) -> bool:
        statement = (
            update(EventRow)
            .where(
                EventRow.event_id == event_id,
                EventRow.lease_owner == owner,
                EventRow.state == S.IN_FLIGHT,
            )
            .values(lease_owner=None, lease_expires_at=None, updated_at=now, **values)
        )
        with self.engine.begin() as connection:
            if order_id is not None:
                self._serialize(connection, [order_id])
            return connection.execute(statement).rowcount == 1

    def hand_back(self, event_id: str, owner: str, now: datetime) -> bool:
        """Give a claimed event back (``pending``, no attempt spent) before its lease
        expires: this process could not finish with it."""
        return self._release_lease(event_id, owner, now, state=S.PENDING, enqueued_at=now)

    def park(
        self, event_id: str, owner: str, now: datetime, recheck_at: datetime, *, order_id: str
    ) -> bool:
        """Put a claimed event of ``order_id`` in ``waiting`` (no attempt spent) until
        re-checked; never inside a transaction that settles an event of the same order
        (the caller re-checks the order once this returns)."""
        with self.engine.begin() as connection:
            self._serialize(connection, [order_id])
            return self._park_in(connection, event_id, owner, now, recheck_at)

    def _park_in(
        self, connection: Connection, event_id: str, owner: str, now: datetime, until: datetime
    ) -> bool:
        params = {"b_id": event_id, "b_owner": owner, "b_now": now, "b_until": until}
        return self._run(connection, st.PARK, params).rowcount == 1

    def defer(
        self,
        event_id: str,
        owner: str,
        *,
        until: datetime,
        reason: str,
        message: str,
        now: datetime,
    ) -> bool:
        """Back to ``scheduled`` without an attempt; the wait is credited to the window."""
        credit = max(0.0, (until - now).total_seconds())
        return self._release_lease(
            event_id,
            owner,
            now,
            state=S.SCHEDULED,
            next_attempt_at=until,
            window_credit_s=EventRow.window_credit_s + credit,
            last_outcome=reason,
            last_message=message,
            enqueued_at=None,
        )

    def lease_owners(self) -> list[str]:
        """The owners of in-flight events (few: one per busy worker process)."""
        statement = (
            select(EventRow.lease_owner)
            .where(EventRow.state == S.IN_FLIGHT, EventRow.lease_owner.is_not(None))
            .distinct()
        )
        with self._reading() as connection:
            return [str(owner) for owner in connection.execute(statement).scalars()]

    def release_leases_of(self, owner_prefix: str, now: datetime) -> list[str]:
        """Hand back the in-flight events of a process known to be dead (its owner ids
        start with ``owner_prefix``), instead of waiting for their leases to expire."""
        statement = (
            update(EventRow)
            .where(
                EventRow.state == S.IN_FLIGHT,
                EventRow.lease_owner.startswith(owner_prefix, autoescape=True),
            )
            .values(
                state=S.PENDING,
                lease_owner=None,
                lease_expires_at=None,
                enqueued_at=now,
                updated_at=now,
            )
            .returning(EventRow.event_id)
        )
        with self.engine.begin() as connection:
            return list(connection.execute(statement).scalars())

    def wake_deferred(self, reason: str, now: datetime) -> int:
        """Make every event deferred for ``reason`` due now (the breaker closed early),
        those already due included: all then share one due time, so they are taken in
        publish order rather than by the cool-down each was deferred in."""
        statement = (
            update(EventRow)
            .where(EventRow.state == S.SCHEDULED, EventRow.last_outcome == reason)
            .values(next_attempt_at=now, updated_at=now)
        )
        with self.engine.begin() as connection:
            return connection.execute(statement).rowcount

    def bury(
        self, event_id: str, owner: str, reason: DeadReason, message: str, now: datetime
    ) -> bool:
        """A claimed event dies without an attempt (e.g. ``blocked``)."""
        return self._release_lease(
            event_id,
            owner,
            now,
            state=S.DEAD,
            dead_reason=reason,
            last_outcome=reason.value,
            last_message=message,
            next_attempt_at=None,
            enqueued_at=None,
        )

    def record_attempt(
        self,
        event_id: str,
        owner: str,
        attempt: AttemptRecord,
        transition: Transition,
        now: datetime,
    ) -> bool:
        """Store the attempt and apply ``transition`` if ``owner`` still holds the lease."""
        with self.engine.begin() as connection:
            return self._record_in(
                connection, event_id, owner=owner, attempt=attempt, transition=transition, now=now
            )

    def record_and_settle(
        self,
        event_id: str,
        owner: str,
        attempt: AttemptRecord,
        transition: Transition,
        now: datetime,
        *,
        order_id: str | None,
        paid: bool,
    ) -> Recorded:
        """:meth:`record_attempt`, and in the same transaction, when the event settled
        (delivered or dead) and belongs to ``order_id``: a dead paid event's refunds die
        ``blocked``, and the order's waiting events are released (returned, to be sent)."""
        settles = order_id is not None and transition.state in (S.DELIVERED, S.DEAD)
        with self._kept.begin() as connection:
            applied = self._record_in(
                connection,
                event_id,
                owner=owner,
                attempt=attempt,
                transition=transition,
                now=now,
                lock=order_id if settles else None,
            )
            if not (applied and settles and order_id is not None):
                return Recorded(applied)
            blocked = (
                self._block_in(connection, order_id, now)
                if paid and transition.state is S.DEAD
                else []
            )
            return Recorded(True, self._release_in(connection, order_id, now), blocked)

    def _record_in(
        self,
        connection: Connection,
        event_id: str,
        *,
        owner: str,
        attempt: AttemptRecord,
        transition: Transition,
        now: datetime,
        lock: str | None = None,
    ) -> bool:
        """Store the attempt and apply ``transition`` if ``owner`` still holds the lease,
        holding ``lock``'s order lock first (PostgreSQL; see LOCK_ORDER)."""
        outcome = attempt.outcome
        dead_reason = transition.dead_reason
        message = outcome.message[:2000]
        recorded = {
            "event_id": event_id,
            "attempt_no": attempt.attempt_no,
            "worker": attempt.worker,
            "started_at": attempt.started_at,
            "duration_s": attempt.duration_s,
            "outcome": outcome.kind.value,
            "reason": outcome.reason.value,
            "status": outcome.status,
            "code": outcome.code,
            "message": message,
            "body": outcome.body_excerpt,
        }
        applied = {
            "b_id": event_id,
            "b_owner": owner,
            "b_state": transition.state.value,
            "b_next": transition.next_attempt_at,
            "b_dead_reason": None if dead_reason is None else dead_reason.value,
            "b_counts": 1 if transition.counts_as_attempt else 0,
            "b_credit": transition.window_credit_s,
            "b_started": attempt.started_at,
            "b_outcome": outcome.reason.value,
            "b_status": outcome.status,
            "b_code": outcome.code,
            "b_message": message,
            "b_body": outcome.body_excerpt,
            "b_now": now,
            "b_delivered": now if transition.state is S.DELIVERED else None,
        }
        if connection.dialect.name == "postgresql":  # one statement, the lock included
            params = {**applied, **{f"a_{name}": value for name, value in recorded.items()}}
            statement = st.RECORD_ATTEMPT_PG
            if lock is not None:
                statement, params["b_key"] = st.RECORD_ATTEMPT_LOCKED_PG, order_lock_key(lock)
            return self._run(connection, statement, params).rowcount == 1
        self._run(connection, st.INSERT_ATTEMPT, recorded)  # SQLite: one writer, no lock
        return self._run(connection, st.APPLY_ATTEMPT, applied).rowcount == 1

    # --- waking and blocking an order's events ---------------------------------------------

    def release_waiting(self, order_id: str, now: datetime) -> list[str]:
        """Send an order's waiting events back to ``pending`` (they re-check on claim)."""
        with self.engine.begin() as connection:
            return self._release_in(connection, order_id, now)

    def _release_in(self, connection: Connection, order_id: str, now: datetime) -> list[str]:
        """The order's waiting events, now pending, oldest first (the order they may go)."""
        params = {"b_order": order_id, "b_now": now}
        rows = self._run(connection, st.RELEASE_WAITING, params).all()
        return [row.event_id for row in sorted(rows, key=lambda r: (r.occurred_at, r.event_id))]

    def block_order(self, order_id: str, now: datetime) -> list[str]:
        """The order's paid event is dead: its unsent refunds and cancellations die too."""
        with self.engine.begin() as connection:
            return self._block_in(connection, order_id, now)

    def _block_in(self, connection: Connection, order_id: str, now: datetime) -> list[str]:
        statement = (
            update(EventRow)
            .where(
                EventRow.order_id == order_id,
                EventRow.kind != "paid",
                EventRow.state.in_([S.PENDING, S.SCHEDULED, S.WAITING]),
            )
            .values(
                state=S.DEAD,
                dead_reason=DeadReason.BLOCKED,
                last_outcome="blocked",
                last_message="the order's paid event is dead",
                next_attempt_at=None,
                enqueued_at=None,
                updated_at=now,
            )
            .returning(EventRow.event_id)
        )
        return list(connection.execute(statement).scalars())

    # --- the scheduler's sweeps (each bounded by ``limit``) ----------------------------------

    def _take(
        self,
        condition: ColumnElement[bool],
        order_by: Any,
        limit: int,
        now: datetime,
        **values: object,
    ) -> list[str]:
        """Pick up to ``limit`` rows in ``order_by`` order (skipping rows locked by another
        taker on PostgreSQL), update them, and return their ids in that order."""
        chosen = (
            select(EventRow.event_id)
            .where(condition)
            .order_by(*(order_by if isinstance(order_by, tuple) else (order_by,)))
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        with self.engine.begin() as connection:
            ids = list(connection.execute(chosen).scalars())
            if ids:
                connection.execute(
                    update(EventRow)
                    .where(EventRow.event_id.in_(ids))
                    .values(enqueued_at=now, updated_at=now, **values)
                )
        return ids

    def take_due(self, now: datetime, limit: int) -> list[str]:
        """Scheduled retries that are due, oldest first, now ``pending`` to be sent."""
        return self._take(
            and_(EventRow.state == S.SCHEDULED, EventRow.next_attempt_at <= now),
            # ties (deferrals woken at once): the oldest published first (ingest order is
            # not publish order when the scheduler ingests a backlog from the inbox hash)
            (
                EventRow.next_attempt_at,
                func.coalesce(EventRow.published_at, EventRow.created_at),
                EventRow.created_at,
            ),
            limit,
            now,
            state=S.PENDING,
            next_attempt_at=None,
        )

    def take_expired_leases(self, now: datetime, limit: int) -> list[str]:
        """Events whose worker died mid-delivery: back to ``pending`` to be sent again."""
        return self._take(
            and_(EventRow.state == S.IN_FLIGHT, EventRow.lease_expires_at < now),
            EventRow.lease_expires_at,
            limit,
            now,
            state=S.PENDING,
            lease_owner=None,
            lease_expires_at=None,
        )

    def take_stale_pending(self, sent_before: datetime, now: datetime, limit: int) -> list[str]:
        """Pending events whose message nobody took in time (lost): to be sent again."""
        return self._take(
            and_(EventRow.state == S.PENDING, EventRow.enqueued_at < sent_before),
            EventRow.enqueued_at,
            limit,
            now,
        )

    def waiting_due(self, now: datetime, limit: int) -> list[tuple[str, str | None, datetime]]:
        """Waiting events due for a re-check: (event_id, order_id, created_at)."""
        statement = (
            select(EventRow.event_id, EventRow.order_id, EventRow.created_at)
            .where(EventRow.state == S.WAITING, EventRow.next_attempt_at <= now)
            .order_by(EventRow.next_attempt_at)
            .limit(limit)
        )
        with self._reading() as connection:
            return [(row[0], row[1], row[2]) for row in connection.execute(statement)]

    def recheck_later(self, event_ids: Iterable[str], at: datetime, now: datetime) -> None:
        ids = list(event_ids)
        if ids:
            with self.engine.begin() as connection:
                connection.execute(
                    update(EventRow)
                    .where(EventRow.event_id.in_(ids), EventRow.state == S.WAITING)
                    .values(next_attempt_at=at, updated_at=now)
                )

    def expire_waiting(self, event_id: str, now: datetime) -> bool:
        with self.engine.begin() as connection:
            return (
                connection.execute(
                    update(EventRow)
                    .where(EventRow.event_id == event_id, EventRow.state == S.WAITING)
                    .values(
                        state=S.DEAD,
                        dead_reason=DeadReason.EXPIRED,
                        last_outcome="expired",
                        last_message="its order's paid event never arrived",
                        updated_at=now,
                        next_attempt_at=None,
                    )
                ).rowcount
                == 1
            )

    # --- reads ------------------------------------------------------------------------------

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
