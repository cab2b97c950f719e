"""The ledger's shared parts: the rows gbq passes around (new events, claims, attempts),
and the base every part of :class:`worker.ledger.repository.Ledger` builds on: its engine,
clock, read-only transactions, order locks and the conditional lease release.

Concurrency rests on conditional single-statement updates: a claim succeeds only for a
claimable row (``UPDATE … WHERE state … RETURNING``), an attempt's result is applied only
by the lease holder, and the scheduler's batch takes use ``FOR UPDATE SKIP LOCKED`` on
PostgreSQL (SQLite serialises writers with ``BEGIN IMMEDIATE`` instead).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Engine, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import InterfaceError, OperationalError, StatementError
from sqlalchemy.sql.elements import ColumnElement

from producers.events import Event
from producers.untrusted import printable
from producers.wire import content_sha256
from worker.ledger import statements as st
from worker.ledger.clock import LedgerClock
from worker.ledger.engine import READ_ONLY
from worker.ledger.kept import KeptConnection
from worker.ledger.models import EventRow
from worker.ledger.order_memory import OrderMemory, OrderRow
from worker.ledger.prepared import Runner
from worker.rules.ordering import OrderFact
from worker.rules.outcomes import Outcome
from worker.rules.states import EventState

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


def first_line(error: BaseException) -> str:
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
    order_history: OrderHistory | None = None  # read with the facts (``steps``)
    order_times: OrderTimes | None = None  # likewise
    id_held_by_order: tuple[str, bool] | None = None  # (an id, whether some order has it)
    parked: bool = False  # waiting already: parked in the claim's transaction (``park``)
    at_order_time: bool = False  # moved to its order's time in the claim's transaction


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


def scope(
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


def new_rows(events: Sequence[NewEvent], now: datetime) -> list[dict[str, Any]]:
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


def claimed_as_inserted(row: dict[str, Any]) -> Claimed:
    """The claim of an event inserted claimed (``new_rows``' row, transaction time set)."""
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


def add_pruned(facts: dict[str, list[OrderFact]], memory: dict[str, OrderMemory]) -> None:
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


def unit_of(event: NewEvent) -> str:
    """What serializes an event's transactions: its order, else itself."""
    return event.order_id or event.event_id


def has_paid(facts: list[OrderFact]) -> bool:
    return any(fact.kind == "paid" for fact in facts)


@dataclass(frozen=True)
class OrderHistory:
    """An order's events in the ledger and what it remembers of those retention removed."""

    live: list[OrderRow]
    memory: OrderMemory


REVERSALS = frozenset({"refunded", "cancelled"})


@dataclass(frozen=True)
class OrderTimes:
    """An order's paid event's transaction time and its reversals' times in the ledger:
    where a refund or cancellation goes at its order's time
    (GBQ_GAMEBALL_REFUND_TIME=original)."""

    paid: datetime | None  # None: the paid event is not in the ledger
    reversals: tuple[tuple[str, datetime], ...]  # (event id, occurred_at)

    @classmethod
    def of(cls, order_id: str, rows: Iterable[Any]) -> OrderTimes:
        """From the order's rows (event_id, kind, occurred_at, transaction_time)."""
        paid, reversals = None, []
        for row in rows:
            if row.event_id == f"paid:{order_id}":
                paid = row.transaction_time or to_millisecond(row.occurred_at)
            elif row.kind in REVERSALS:
                reversals.append((row.event_id, row.occurred_at))
        return cls(paid, tuple(reversals))

    def reversal_time(self, event_id: str, history: OrderHistory | None) -> datetime | None:
        """The paid event's time plus one millisecond per reversal of the order that
        happened before ``event_id``, the removed ones included (their times are no longer
        in the ledger to be avoided: ``history``'s memory). None: no paid event known."""
        memory = history.memory if history is not None else OrderMemory()
        base = self.paid
        if base is None:
            paid_events = [e.occurred_at for e in memory.events if e.kind == "paid"]
            if not paid_events:
                return None
            base = paid_events[0]
        times = dict(self.reversals)
        for removed in memory.events:
            if removed.kind in REVERSALS and removed.event_id not in times:
                times[removed.event_id] = removed.occurred_at
        mine = times.get(event_id)
        if mine is None:
            return base
        earlier = sum(1 for other, at in times.items() if (at, other) < (mine, event_id))
        return base + earlier * MILLISECOND


FEW_ROWS = 8  # inserted one prepared statement each; more take SQLAlchemy's batched insert


class LedgerCore:
    """The engine, clock and helpers every part of the ledger shares; one instance per
    process (engines do not cross forks)."""

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

    def _insert_locked(self, columns: tuple[str, ...]) -> Any:
        """``statements.insert_locked`` for these columns, built once."""
        statement = self._locked_inserts.get(columns)
        if statement is None:
            statement = self._locked_inserts[columns] = st.insert_locked(columns)
        return statement

    def _insert(self) -> Any:
        dialect = postgresql if self.engine.dialect.name == "postgresql" else sqlite
        return dialect.insert(EventRow)

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
