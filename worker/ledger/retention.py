"""Retention: the ledger stays the size of its window, not of its history.

Delivered events whose delivery is older than ``GBQ_RETENTION_DAYS`` are removed with
their attempts, in small batches (the scheduler runs one per tick; ``gbq prune`` runs them
by hand). Dead letters stay until purged. With ``GBQ_ARCHIVE_DIR`` set, each removed event
and its attempts are first appended, as one JSON line, to
``gbq-archive-<day delivered>.jsonl`` there.

Any number of pruners may run at once (the scheduler's sweep, operators' ``gbq prune``):

- each takes its events locked and skips others' locks (PostgreSQL; SQLite's writers
  queue), so no event is removed or archived by two of them;
- an order's memory is created if missing (an upsert) and then locked before it is read
  and rewritten, so two pruners removing events of one order add to it in turn, and
  neither fails nor loses the other's entries;
- the archive is written last, once the rows are this pruner's, under a lock on the
  archive folder held through the commit; a commit that fails takes its lines back out.
  Only a pruner killed in the instant between its flushed lines and its commit leaves
  lines that the next batch writes again (each line has its ``event_id``).

An order's removed events are remembered compactly in ``gbq_pruned_orders`` (ids, kinds,
times, the paid lines and the refunded quantities; ``order_memory``): ordering still
knows the paid event was delivered when a refund comes weeks later, and a cancellation
still names the lines not yet refunded. That memory is kept ``GBQ_ORDER_MEMORY_DAYS``; a
refund for an order forgotten by then waits and expires.
"""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, delete, func, select
from sqlalchemy.dialects import postgresql, sqlite

from producers.events import Event, parse_event
from worker.ledger.models import AttemptRow, EventRow, PrunedOrderRow
from worker.ledger.order_memory import OrderMemory
from worker.ledger.statements import PRUNED_ORDERS
from worker.rules.states import EventState

ARCHIVE_LOCK = ".gbq-archive.lock"
_EVENT_COLUMNS = (
    EventRow.event_id,
    EventRow.kind,
    EventRow.order_id,
    EventRow.customer_id,
    EventRow.payload,
    EventRow.occurred_at,
    EventRow.delivered_at,
    EventRow.updated_at,
    EventRow.transaction_time,
)
_ATTEMPT_COLUMNS = (
    AttemptRow.event_id,
    AttemptRow.attempt_no,
    AttemptRow.worker,
    AttemptRow.started_at,
    AttemptRow.duration_s,
    AttemptRow.outcome,
    AttemptRow.reason,
    AttemptRow.status,
    AttemptRow.code,
    AttemptRow.message,
)


@dataclass(frozen=True)
class PruneResult:
    events: int  # delivered events removed
    attempts: int  # their attempts removed
    archived: int  # lines written to the archive
    orders_forgotten: int  # order memories past GBQ_ORDER_MEMORY_DAYS removed


@dataclass(frozen=True)
class RemovedBatch:
    """What one batch removed (in its still open transaction), for the archive."""

    events: Sequence[Any]
    attempts: Sequence[Any]
    attempts_removed: int


def remove_batch(
    connection: Connection, *, cutoff: datetime, limit: int, now: datetime
) -> RemovedBatch:
    """Remove up to ``limit`` events delivered before ``cutoff`` with their attempts, and
    remember them in their orders' memories (in the caller's transaction)."""
    # Locked and skipping others' locks (PostgreSQL): no event changes state before it is
    # removed, and no two pruners take the same one. SQLite's writers run one at a time.
    events = connection.execute(
        select(*_EVENT_COLUMNS)
        .where(EventRow.state == EventState.DELIVERED, EventRow.delivered_at < cutoff)
        .order_by(EventRow.delivered_at)
        .limit(limit)
        .with_for_update(skip_locked=True)
    ).all()
    ids = [row.event_id for row in events]
    if not ids:
        return RemovedBatch((), (), 0)
    attempts = connection.execute(
        select(*_ATTEMPT_COLUMNS).where(AttemptRow.event_id.in_(ids)).order_by(AttemptRow.id)
    ).all()
    removed_attempts = connection.execute(
        delete(AttemptRow).where(AttemptRow.event_id.in_(ids))
    ).rowcount
    removed = set(
        connection.execute(
            delete(EventRow)
            .where(EventRow.event_id.in_(ids), EventRow.state == EventState.DELIVERED)
            .returning(EventRow.event_id)
        ).scalars()
    )
    kept = [row for row in events if row.event_id in removed]
    _remember(connection, kept, now)
    return RemovedBatch(
        kept,
        [attempt for attempt in attempts if attempt.event_id in removed],
        int(removed_attempts or 0),
    )


def forget_orders(connection: Connection, *, before: datetime, limit: int) -> int:
    """Drop order memories last touched before ``before``."""
    old = list(
        connection.execute(
            select(PrunedOrderRow.order_id).where(PrunedOrderRow.pruned_at < before).limit(limit)
        ).scalars()
    )
    if not old:
        return 0
    connection.execute(delete(PrunedOrderRow).where(PrunedOrderRow.order_id.in_(old)))
    return len(old)


def count_prunable(connection: Connection, cutoff: datetime) -> int:
    statement = (
        select(func.count())
        .select_from(EventRow)
        .where(EventRow.state == EventState.DELIVERED, EventRow.delivered_at < cutoff)
    )
    return int(connection.execute(statement).scalar() or 0)


def memories(connection: Connection, order_ids: Iterable[str]) -> dict[str, OrderMemory]:
    """What the ledger remembers of these orders' removed events (orders it holds none of
    are left out)."""
    ids = sorted(set(order_ids))
    if not ids:
        return {}
    rows = connection.execute(PRUNED_ORDERS, {"b_orders": ids})
    return {order_id: OrderMemory.decode(order_id, text) for order_id, text in rows}


def _remember(connection: Connection, events: Sequence[Any], now: datetime) -> None:
    """Add removed order events to their orders' memories. Another pruner may be adding
    other events of the same orders: each memory is created if missing, then locked, then
    read and rewritten, always in order id order (no deadlock between two pruners)."""
    by_order: dict[str, list[tuple[Event, datetime]]] = {}
    for row in events:
        if row.order_id is None:
            continue  # a cashback: nothing after it depends on it
        event = parse_event(row.payload, accepted=True)  # a delivered event: it was read
        by_order.setdefault(row.order_id, []).append((event, _aware(row.occurred_at)))
    if not by_order:
        return
    order_ids = sorted(by_order)
    empty = [
        {"order_id": order_id, "events": OrderMemory().encode(order_id), "pruned_at": now}
        for order_id in order_ids
    ]
    connection.execute(_insert_missing(connection, empty))
    locked = connection.execute(
        select(PrunedOrderRow.order_id, PrunedOrderRow.events)
        .where(PrunedOrderRow.order_id.in_(order_ids))
        .order_by(PrunedOrderRow.order_id)
        .with_for_update()
    )
    known = {order_id: OrderMemory.decode(order_id, text) for order_id, text in locked}
    for order_id in order_ids:
        memory = known.get(order_id, OrderMemory()).with_removed(by_order[order_id])
        # An upsert, not an update: a memory forgotten (forget_orders) between the insert
        # and the lock is written again, from nothing, rather than lost.
        row = {"order_id": order_id, "events": memory.encode(order_id), "pruned_at": now}
        statement = _insert(connection).values(row)
        connection.execute(
            statement.on_conflict_do_update(
                index_elements=["order_id"],
                set_={"events": statement.excluded.events, "pruned_at": now},
            )
        )


def _insert_missing(connection: Connection, rows: list[dict[str, Any]]) -> Any:
    """``INSERT … ON CONFLICT (order_id) DO NOTHING``: on PostgreSQL it waits for a
    concurrent insert of the same order to commit, then skips."""
    return _insert(connection).values(rows).on_conflict_do_nothing(index_elements=["order_id"])


def _insert(connection: Connection) -> Any:
    """An INSERT into the order memory in the connection's dialect (for ON CONFLICT)."""
    dialect = postgresql if connection.dialect.name == "postgresql" else sqlite
    return dialect.insert(PrunedOrderRow)


class ArchiveAppend:
    """Appends a batch's lines under an exclusive lock on the archive folder, held until
    the batch's transaction is over: ``taken_back()`` (its commit failed) truncates each
    file to where this batch began, which no other pruner can have written past."""

    def __init__(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self._lock = (folder / ARCHIVE_LOCK).open("a")
        fcntl.flock(self._lock, fcntl.LOCK_EX)
        self.folder = folder
        self._began: dict[Path, int] = {}

    def write(self, batch: RemovedBatch) -> int:
        """Append and flush to disk; returns how many lines."""
        lines = _archive_lines(self.folder, batch.events, batch.attempts)
        for path, chunk in lines.items():
            with path.open("a", encoding="utf-8") as out:
                self._began.setdefault(path, out.tell())
                out.write("\n".join(chunk) + "\n")
                out.flush()
                os.fsync(out.fileno())
        return len(batch.events)

    def taken_back(self) -> None:
        for path, size in self._began.items():
            with path.open("r+b") as out:
                out.truncate(size)
                os.fsync(out.fileno())
        self._began.clear()

    def close(self) -> None:
        fcntl.flock(self._lock, fcntl.LOCK_UN)
        self._lock.close()


def _archive_lines(
    folder: Path, events: Sequence[Any], attempts: Sequence[Any]
) -> dict[Path, list[str]]:
    """Each event with its attempts as a JSON line, by file (one per day delivered)."""
    by_event: dict[str, list[dict[str, Any]]] = {}
    for attempt in attempts:
        by_event.setdefault(attempt.event_id, []).append(
            {
                "attempt_no": attempt.attempt_no,
                "worker": attempt.worker,
                "started_at": _utc(attempt.started_at),
                "duration_s": attempt.duration_s,
                "outcome": attempt.outcome,
                "reason": attempt.reason,
                "status": attempt.status,
                "code": attempt.code,
                "message": attempt.message,
            }
        )
    lines: dict[Path, list[str]] = {}
    for row in events:
        day = (row.delivered_at or row.updated_at).date().isoformat()  # UTC either way
        record = {
            "event_id": row.event_id,
            "kind": row.kind,
            "order_id": row.order_id,
            "customer_id": row.customer_id,
            "event": json.loads(row.payload),
            "delivered_at": _utc(row.delivered_at),
            "transaction_time": _utc(row.transaction_time),
            "attempts": by_event.get(row.event_id, []),
        }
        lines.setdefault(folder / f"gbq-archive-{day}.jsonl", []).append(json.dumps(record))
    return lines


def _aware(moment: datetime) -> datetime:
    """SQLite hands back naive UTC through a plain column select."""
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _utc(moment: datetime | None) -> str | None:
    """ISO-8601 in UTC."""
    return None if moment is None else _aware(moment).isoformat()
