"""The delivery path's SQL, built once with bound parameters.

Building a SQLAlchemy statement (coercing each clause, generating its cache key) cost more
CPU than SQLite spent running it: a claim built per call took 1.4 ms of CPU, the same
statement built once 0.5 ms (``bench/README.md``). These are the statements every event
runs; the rarer ones stay where they are used. Parameter names start with ``b_`` (an
UPDATE may not reuse a column's name for a parameter).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

from sqlalchemy import (
    and_,
    bindparam,
    func,
    insert,
    literal_column,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.dialects import postgresql

from worker.ledger.models import AttemptRow, EventRow, PrunedOrderRow
from worker.rules.states import EventState

_COLUMNS = EventRow.__table__.c
NOW = bindparam("b_now", type_=_COLUMNS.updated_at.type)

CLAIMABLE = or_(
    and_(
        # equalities, not IN: an IN list is expanded per execution, which the driver path
        # (worker.ledger.prepared) leaves to SQLAlchemy
        or_(
            *(
                EventRow.state == state
                for state in (EventState.PENDING, EventState.SCHEDULED, EventState.WAITING)
            )
        ),
        or_(EventRow.next_attempt_at.is_(None), EventRow.next_attempt_at <= NOW),
    ),
    and_(EventRow.state == EventState.IN_FLIGHT, EventRow.lease_expires_at < NOW),
)

# b_id, b_now, b_owner, b_until
CLAIM: Final = (
    update(EventRow)
    .where(EventRow.event_id == bindparam("b_id"), CLAIMABLE)
    .values(
        state=EventState.IN_FLIGHT,
        lease_owner=bindparam("b_owner"),
        lease_expires_at=bindparam("b_until", type_=_COLUMNS.lease_expires_at.type),
        updated_at=NOW,
    )
    .returning(
        EventRow.event_id,
        EventRow.kind,
        EventRow.order_id,
        EventRow.payload,
        EventRow.occurred_at,
        EventRow.attempts,
        EventRow.first_attempt_at,
        EventRow.window_credit_s,
        EventRow.transaction_time,
        EventRow.reversal_lines,
        EventRow.retried_at_attempt,
    )
)

# b_customers (a list), b_low, b_high
TIMES_TAKEN: Final = select(
    EventRow.customer_id, EventRow.transaction_time, EventRow.event_id
).where(
    EventRow.customer_id.in_(bindparam("b_customers", expanding=True)),
    EventRow.transaction_time >= bindparam("b_low", type_=_COLUMNS.transaction_time.type),
    EventRow.transaction_time <= bindparam("b_high", type_=_COLUMNS.transaction_time.type),
)

# b_customer, b_low, b_high: one event's customer (no list to expand per execution)
TIMES_TAKEN_ONE: Final = select(
    EventRow.customer_id, EventRow.transaction_time, EventRow.event_id
).where(
    EventRow.customer_id == bindparam("b_customer"),
    EventRow.transaction_time >= bindparam("b_low", type_=_COLUMNS.transaction_time.type),
    EventRow.transaction_time <= bindparam("b_high", type_=_COLUMNS.transaction_time.type),
)

# b_id, b_owner: a held event's customer and times (moving its transaction time)
HELD_TIMES: Final = select(
    EventRow.customer_id, EventRow.transaction_time, EventRow.occurred_at
).where(EventRow.event_id == bindparam("b_id"), EventRow.lease_owner == bindparam("b_owner"))

# b_customer, b_low, b_id: the instants from b_low on that the customer's other events hold
TIMES_FROM: Final = select(EventRow.transaction_time).where(
    EventRow.customer_id == bindparam("b_customer"),
    EventRow.transaction_time >= bindparam("b_low", type_=_COLUMNS.transaction_time.type),
    EventRow.event_id != bindparam("b_id"),
)

# b_id, b_owner, b_lines: a full reversal's lines, fixed once by its holder
FIX_LINES: Final = (
    update(EventRow)
    .where(
        EventRow.event_id == bindparam("b_id"),
        EventRow.lease_owner == bindparam("b_owner"),
        EventRow.reversal_lines.is_(None),
    )
    .values(reversal_lines=bindparam("b_lines"))
)
# b_id
LINES_OF: Final = select(EventRow.reversal_lines).where(EventRow.event_id == bindparam("b_id"))

# b_id, b_time
SET_TIME: Final = (
    update(EventRow)
    .where(EventRow.event_id == bindparam("b_id"))
    .values(transaction_time=bindparam("b_time", type_=_COLUMNS.transaction_time.type))
)

# b_id, b_sha, b_payload, b_now: a known id seen again with other content is recorded once
_PAYLOAD = bindparam("b_payload", type_=_COLUMNS.payload.type)
RECORD_CONFLICT: Final = (
    update(EventRow)
    .where(
        EventRow.event_id == bindparam("b_id"),
        or_(
            and_(
                EventRow.content_sha256.is_not(None),
                EventRow.content_sha256 != bindparam("b_sha"),
            ),
            and_(EventRow.content_sha256.is_(None), EventRow.payload != _PAYLOAD),
        ),
        or_(EventRow.conflict_payload.is_(None), EventRow.conflict_payload != _PAYLOAD),
    )
    .values(conflicts=EventRow.conflicts + 1, conflict_payload=_PAYLOAD, conflict_at=NOW)
)

# the attempt's columns, by name
INSERT_ATTEMPT: Final = insert(AttemptRow)

# b_id, b_owner: the event is in flight under b_owner's lease (only its holder settles it)
HELD: Final = and_(
    EventRow.event_id == bindparam("b_id"),
    EventRow.lease_owner == bindparam("b_owner"),
    EventRow.state == EventState.IN_FLIGHT,
)

# b_id, b_owner, then the new values: b_state, b_next, b_dead_reason, b_counts, b_credit,
# b_started, b_outcome, b_status, b_code, b_message, b_body, b_now, b_delivered
APPLY_ATTEMPT: Final = (
    update(EventRow)
    .where(HELD)
    .values(
        state=bindparam("b_state"),
        next_attempt_at=bindparam("b_next", type_=_COLUMNS.next_attempt_at.type),
        dead_reason=bindparam("b_dead_reason"),
        attempts=EventRow.attempts + bindparam("b_counts"),
        window_credit_s=EventRow.window_credit_s + bindparam("b_credit"),
        first_attempt_at=func.coalesce(
            EventRow.first_attempt_at,
            bindparam("b_started", type_=_COLUMNS.first_attempt_at.type),
        ),
        last_attempt_at=bindparam("b_started", type_=_COLUMNS.last_attempt_at.type),
        last_outcome=bindparam("b_outcome"),
        last_status=bindparam("b_status"),
        last_code=bindparam("b_code"),
        last_message=bindparam("b_message"),
        last_body=bindparam("b_body"),
        lease_owner=None,
        lease_expires_at=None,
        enqueued_at=None,
        updated_at=NOW,
        delivered_at=func.coalesce(
            bindparam("b_delivered", type_=_COLUMNS.delivered_at.type), EventRow.delivered_at
        ),
    )
)

# b_id, b_owner, b_now, b_until: the lease holder parks its event (waiting, no attempt
# spent) until b_until, when the scheduler re-checks it
PARK: Final = (
    update(EventRow)
    .where(HELD)
    .values(
        state=EventState.WAITING,
        next_attempt_at=bindparam("b_until", type_=_COLUMNS.next_attempt_at.type),
        lease_owner=None,
        lease_expires_at=None,
        enqueued_at=None,
        updated_at=NOW,
    )
)

# b_order, b_now
RELEASE_WAITING: Final = (
    update(EventRow)
    .where(EventRow.order_id == bindparam("b_order"), EventRow.state == EventState.WAITING)
    .values(state=EventState.PENDING, next_attempt_at=None, enqueued_at=NOW, updated_at=NOW)
    .returning(EventRow.event_id, EventRow.occurred_at)
)

# b_key. PostgreSQL only: a transaction-scoped lock on one order (or one order-less
# event), taken first, in key order, by every transaction that ingests, parks or settles
# its events, so that none of them runs inside another:
# - two ingests of one event (its own message, and a refund's read of its order's inbox)
#   each insert the row; PostgreSQL's speculative insertion then deadlocks the second
#   insert's wait on the (customer, transaction time) index against the first one's claim;
# - READ COMMITTED would let a settle's release of waiting events miss a concurrent park,
#   while the parker's re-check misses the settle: a lost wakeup until the scheduler's
#   re-check.
# The first key is gbq's own class ("gbq" in ASCII), the second the order's (blake2b).
LOCK_CLASS: Final = 6775409
LOCK_ORDER: Final = text(f"SELECT pg_advisory_xact_lock({LOCK_CLASS}, :b_key)")

ATTEMPT_FIELDS: Final = (
    "event_id",
    "attempt_no",
    "worker",
    "started_at",
    "duration_s",
    "outcome",
    "reason",
    "status",
    "code",
    "message",
    "body",
)


def _order_lock() -> Any:
    """LOCK_ORDER as a WITH query (``b_key``), for a statement to read its row from."""
    return select(
        func.pg_advisory_xact_lock(literal_column(str(LOCK_CLASS)), bindparam("b_key"))
    ).cte("order_lock")


def _record_attempt(*, locked: bool) -> Any:
    """PostgreSQL: INSERT_ATTEMPT and APPLY_ATTEMPT in one statement, one round trip
    instead of two (or three, with the order's lock). The attempt's columns are bound
    as ``a_<column>``, the update's as in APPLY_ATTEMPT.

    ``locked`` takes the order's lock (LOCK_ORDER's, ``b_key``) first: the insert reads
    its row from the lock's, and the update joins the insert's row, so the lock is held
    before the event's row is locked. Whatever reads the order after it (the release of
    waiting events) runs as a later statement, whose snapshot sees the lock's previous
    holder's commit. A data-modifying WITH always runs to completion, so the attempt is
    recorded even when the lease was lost, as with the two statements."""
    columns = AttemptRow.__table__.c
    values = select(*(bindparam(f"a_{name}", type_=columns[name].type) for name in ATTEMPT_FIELDS))
    if locked:
        values = values.select_from(_order_lock())
    attempt = (
        insert(AttemptRow)
        .from_select(list(ATTEMPT_FIELDS), values)
        .returning(AttemptRow.event_id)
        .cte("attempt")
    )
    return APPLY_ATTEMPT.where(EventRow.event_id == attempt.c.event_id)


RECORD_ATTEMPT_PG: Final = _record_attempt(locked=False)
RECORD_ATTEMPT_LOCKED_PG: Final = _record_attempt(locked=True)


def insert_locked(columns: Sequence[str]) -> Any:
    """PostgreSQL: insert one event unless its id is known, returning its id if inserted,
    with its order's lock (LOCK_ORDER's, ``b_key``) taken first in the same statement:
    the insert reads its row from the lock's, so the lock is held before the row is
    inserted or found. One round trip instead of two. The values are bound as
    ``n_<column>``. The insert's conflict check sees the latest committed rows, whatever
    the statement's snapshot, and the statements after it see what the lock's previous
    holder committed."""
    values = select(
        *(bindparam(f"n_{name}", type_=_COLUMNS[name].type) for name in columns)
    ).select_from(_order_lock())
    return (
        postgresql.insert(EventRow)
        .from_select(list(columns), values)
        .on_conflict_do_nothing(index_elements=["event_id"])
        .returning(EventRow.event_id)
    )


# b_orders (a list)
ORDER_FACTS: Final = select(
    EventRow.order_id, EventRow.event_id, EventRow.kind, EventRow.occurred_at, EventRow.state
).where(EventRow.order_id.in_(bindparam("b_orders", expanding=True)))
# b_order: one order's (no list to expand per execution)
ORDER_FACTS_ONE: Final = select(
    EventRow.order_id, EventRow.event_id, EventRow.kind, EventRow.occurred_at, EventRow.state
).where(EventRow.order_id == bindparam("b_order"))
# An order's rows as a refund or cancellation reads them with its claim: the facts, the
# history (``OrderHistory``) and the paid event's time for GBQ_GAMEBALL_REFUND_TIME=original
ORDER_ROWS_ONE: Final = select(
    EventRow.order_id,
    EventRow.event_id,
    EventRow.kind,
    EventRow.occurred_at,
    EventRow.state,
    EventRow.payload,
    EventRow.last_code,
    EventRow.transaction_time,
).where(EventRow.order_id == bindparam("b_order"))
PRUNED_ONE: Final = select(PrunedOrderRow.events).where(
    PrunedOrderRow.order_id == bindparam("b_order")
)
PRUNED_ORDERS: Final = select(PrunedOrderRow.order_id, PrunedOrderRow.events).where(
    PrunedOrderRow.order_id.in_(bindparam("b_orders", expanding=True))
)

# b_order
HAS_ORDER: Final = (
    select(EventRow.event_id).where(EventRow.order_id == bindparam("b_order")).limit(1)
)
