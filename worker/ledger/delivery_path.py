"""What the delivery path asks of the ledger (``worker.flows.delivery``): claim with a
lease, the order's facts for the ordering gate, park, defer, hand back, and record an
attempt and settle the order's other events in one transaction."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, select, update
from sqlalchemy.exc import IntegrityError

from worker.ledger import statements as st
from worker.ledger.core import (
    MILLISECOND,
    TIME_CLASH_RETRIES,
    AttemptRecord,
    Claimed,
    NewEvent,
    OrderHistory,
    OrderTimes,
    Recorded,
    S,
    add_pruned,
    claimed_as_inserted,
    has_paid,
    new_rows,
    order_lock_key,
    to_millisecond,
    unit_of,
)
from worker.ledger.ingest import Ingestion
from worker.ledger.models import EventRow
from worker.ledger.order_memory import OrderMemory
from worker.ledger.retention import memories
from worker.rules.ordering import OrderFact
from worker.rules.retry import Transition
from worker.rules.states import DeadReason


@dataclass(frozen=True)
class OrderSteps:
    """What the claim's transaction also does for a refund or cancellation that may go
    (``DeliveryPath.ingest_and_claim``): move it to its order's time (at its first
    attempt, GBQ_GAMEBALL_REFUND_TIME=original), and fix the lines ``lines`` gives for it
    (a full reversal; None: no lines to name) unless some are fixed already."""

    at_order_time: bool = False
    lines: Callable[[Claimed], str | None] | None = None


@dataclass(frozen=True)
class _Reads:
    order: bool
    order_with_id: str | None
    park: Callable[[Claimed], datetime | None] | None
    steps: OrderSteps | None
    lock_order: str | None = None  # an order whose lock is taken first (a released event)


class DeliveryPath(Ingestion):
    """The delivery path's operations."""

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
        steps: OrderSteps | None = None,
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
        see it, or wholly after, and its release sees the parked event. No re-check.

        ``steps`` (with ``read_order``, for a refund or cancellation) reads the order's whole
        history with its facts (``Claimed.order_history``) and, when the event may go, does
        there what its call needs first: its order's time (``at_order_time``) and a full
        reversal's lines (``lines``), so that they cost no transaction of their own."""
        events = sorted({e.event_id: e for e in (*also, event)}.values(), key=lambda e: e.event_id)
        lease = (event.event_id, owner, now, lease_until)
        reads = _Reads(read_order, order_with_id, park, steps)
        for attempt in range(TIME_CLASH_RETRIES - 1):
            try:
                return self._ingest_and_claim(events, lease, reads, optimistic=attempt == 0)
            except IntegrityError:
                continue  # the instant was taken (unread by the optimistic first try, or
                # by a process that took it at the same moment): choose again
        return self._ingest_and_claim(events, lease, reads, optimistic=False)

    def claim_in_order(
        self,
        event_id: str,
        order_id: str,
        owner: str,
        now: datetime,
        lease_until: datetime,
        *,
        also: Sequence[NewEvent] = (),
        park: Callable[[Claimed], datetime | None],
        steps: OrderSteps,
    ) -> Claimed | None:
        """:meth:`claim` of a known event of ``order_id`` (one a settle released) with what
        :meth:`ingest_and_claim` does for a refund or cancellation, in one transaction: its
        order's other published events (``also``) ingested, the order read, the event
        parked if it must wait, its order's time and lines fixed if it may go."""
        events = sorted({e.event_id: e for e in also}.values(), key=lambda e: e.event_id)
        lease = (event_id, owner, now, lease_until)
        reads = _Reads(True, None, park, steps, order_id)
        for _ in range(TIME_CLASH_RETRIES - 1):
            try:
                return self._ingest_and_claim(events, lease, reads, optimistic=False)
            except IntegrityError:
                continue  # a time taken meanwhile by another event of the customer
        return self._ingest_and_claim(events, lease, reads, optimistic=False)

    def _ingest_and_claim(
        self,
        events: Sequence[NewEvent],
        lease: tuple[str, str, datetime, datetime],
        reads: _Reads,
        *,
        optimistic: bool,
    ) -> Claimed | None:
        event_id, owner, now, until = lease
        rows = new_rows(events, now)
        mine = next((row for row in rows if row["event_id"] == event_id), None)
        if mine is not None:  # a new event is claimable at once: it is inserted claimed
            mine.update(state=S.IN_FLIGHT, lease_owner=owner, lease_expires_at=until)
        # PostgreSQL, one event at its own instant: its insert takes the order's lock
        lock = (
            unit_of(events[0])
            if optimistic and len(events) == 1 and self.engine.dialect.name == "postgresql"
            else None
        )
        if mine is not None and lock is not None and not reads.order:
            return self._insert_alone(
                events, rows, mine, lease, order_with_id=reads.order_with_id, lock=lock
            )
        with self._kept.begin() as connection:
            if lock is None:
                self._serialize(connection, [reads.lock_order, *map(unit_of, events)])
            new = (
                self._ingest_in(connection, events, rows, now, optimistic=optimistic, lock=lock)
                if events
                else set()
            )
            claimed = (
                claimed_as_inserted(mine)
                if mine is not None and event_id in new
                else self._claim_in(connection, *lease)
            )
            if claimed is None:
                return None
            if reads.order and claimed.order_id is not None:
                claimed = self._read_order_in(connection, claimed, reads.steps is not None)
                recheck_at = None if reads.park is None else reads.park(claimed)
                if recheck_at is not None:
                    self._park_in(connection, event_id, owner, now, recheck_at)
                    return dataclasses.replace(claimed, parked=True)
                if reads.steps is not None:
                    claimed = self._order_steps_in(connection, claimed, owner, reads.steps)
            if reads.order_with_id is not None:
                held = self._has_order_in(connection, reads.order_with_id)
                claimed = dataclasses.replace(claimed, id_held_by_order=(reads.order_with_id, held))
            return claimed

    def _insert_alone(
        self,
        events: Sequence[NewEvent],
        rows: list[dict[str, Any]],
        mine: dict[str, Any],
        lease: tuple[str, str, datetime, datetime],
        *,
        order_with_id: str | None,
        lock: str,
    ) -> Claimed | None:
        """PostgreSQL, an event that reads nothing of its order (a paid event, a
        cashback): its insert, already claimed and taking its order's lock, is the whole
        transaction, committed as it runs (no BEGIN, no COMMIT); a cashback's question
        (is its id an order's?) is a statement after it. An event the ledger knows already
        (its message again) is claimed in a transaction of its own."""
        event_id, _, now, _ = lease
        with self._kept.statements() as connection:
            new = self._ingest_in(connection, events, rows, now, optimistic=True, lock=lock)
            if event_id not in new:
                claimed = None
            else:
                claimed = claimed_as_inserted(mine)
                if order_with_id is not None:
                    held = self._has_order_in(connection, order_with_id)
                    claimed = dataclasses.replace(claimed, id_held_by_order=(order_with_id, held))
        if claimed is not None:
            return claimed
        with self._kept.begin() as connection:
            claimed = self._claim_in(connection, *lease)
            if claimed is not None and order_with_id is not None:
                held = self._has_order_in(connection, order_with_id)
                claimed = dataclasses.replace(claimed, id_held_by_order=(order_with_id, held))
            return claimed

    def _read_order_in(self, connection: Connection, claimed: Claimed, whole: bool) -> Claimed:
        """``claimed`` with its order's facts, and with ``whole`` its history too."""
        order_id = claimed.order_id
        assert order_id is not None  # noqa: S101 - the caller checked
        if not whole:
            read = self._order_facts_in(connection, [order_id])[order_id]
            return dataclasses.replace(claimed, order_facts=tuple(read))
        rows = self._run(connection, st.ORDER_ROWS_ONE, {"b_order": order_id}).all()
        text = self._run(connection, st.PRUNED_ONE, {"b_order": order_id}).scalar()
        memory = OrderMemory() if text is None else OrderMemory.decode(order_id, text)
        known = [OrderFact(r.event_id, r.kind, r.occurred_at, r.state) for r in rows]
        facts = {order_id: known}
        if text is not None and not has_paid(known):  # as ``_order_facts_in``
            add_pruned(facts, {order_id: memory})
        live = [(r.event_id, r.kind, r.state, r.payload, r.last_code) for r in rows]
        return dataclasses.replace(
            claimed,
            order_facts=tuple(facts[order_id]),
            order_history=OrderHistory(live, memory),
            order_times=OrderTimes.of(order_id, rows),
        )

    def _order_steps_in(
        self, connection: Connection, claimed: Claimed, owner: str, steps: OrderSteps
    ) -> Claimed:
        """What a refund or cancellation that may go needs before its first call, in the
        claim's transaction: its order's time and its lines (see ``ingest_and_claim``)."""
        if steps.at_order_time and not claimed.attempts and claimed.order_times is not None:
            after = claimed.order_times.reversal_time(claimed.event_id, claimed.order_history)
            if after is not None:
                moved = self._move_time_in(connection, claimed.event_id, owner, after)
                if moved is not None:
                    claimed = dataclasses.replace(claimed, transaction_time=moved)
            claimed = dataclasses.replace(claimed, at_order_time=True)
        if steps.lines is not None and claimed.reversal_lines is None:
            lines = steps.lines(claimed)
            if lines is not None:
                fixed = self._fix_lines_in(connection, claimed.event_id, owner, lines)
                claimed = dataclasses.replace(claimed, reversal_lines=fixed)
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
            return self._fix_lines_in(connection, event_id, owner, lines)

    def _fix_lines_in(self, connection: Connection, event_id: str, owner: str, lines: str) -> str:
        self._run(connection, st.FIX_LINES, {"b_id": event_id, "b_owner": owner, "b_lines": lines})
        fixed = self._run(connection, st.LINES_OF, {"b_id": event_id}).scalar()
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
                    return self._move_time_in(connection, event_id, owner, after)
            except IntegrityError:
                continue
        return None

    def _move_time_in(
        self, connection: Connection, event_id: str, owner: str, after: datetime | None
    ) -> datetime | None:
        held = {"b_id": event_id, "b_owner": owner}
        row = self._run(connection, st.HELD_TIMES, held).one_or_none()
        if row is None:
            return None
        base = after or row.transaction_time or row.occurred_at
        moment = to_millisecond(base) + MILLISECOND
        # its own instant is free to it
        taken_from = {"b_customer": row.customer_id, "b_low": moment, "b_id": event_id}
        taken = set(self._run(connection, st.TIMES_FROM, taken_from).scalars())
        while moment in taken:
            moment += MILLISECOND
        self._run(connection, st.SET_TIME, {"b_id": event_id, "b_time": moment})
        return moment

    def reversal_time(self, order_id: str, event_id: str) -> datetime | None:
        """Where a refund or cancellation of the order goes when it takes its order's time
        (``GBQ_GAMEBALL_REFUND_TIME=original``): the paid event's transaction time plus one
        millisecond per reversal of the order that happened before it, the removed ones
        included (their times are no longer in the ledger to be avoided). None: no paid
        event known."""
        with self._reading() as connection:
            rows = self._run(connection, st.ORDER_ROWS_ONE, {"b_order": order_id}).all()
            memory = memories(connection, [order_id]).get(order_id, OrderMemory())
        return OrderTimes.of(order_id, rows).reversal_time(event_id, OrderHistory([], memory))

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

    def has_order(self, order_id: str) -> bool:
        """Whether any event of an order with this id is known (by the order_id index)."""
        with self._reading() as connection:
            return self._has_order_in(connection, order_id)

    def _has_order_in(self, connection: Connection, order_id: str) -> bool:
        return self._run(connection, st.HAS_ORDER, {"b_order": order_id}).first() is not None

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
        unpaid = [order_id for order_id, known in facts.items() if not has_paid(known)]
        add_pruned(facts, memories(connection, unpaid))
        return facts

    def order_facts(self, order_id: str) -> list[OrderFact]:
        """What ordering knows of an order's events, those retention removed included."""
        return self.order_facts_many([order_id])[order_id]

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
        # PostgreSQL records in one statement; a settle then releases the order's waiting
        # events in a second, under the order's lock the first took: a transaction. The
        # rest is that one statement, committed as it runs (``statements``).
        with self._kept.begin() if settles else self._kept.statements() as connection:
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
