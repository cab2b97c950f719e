"""Retention: the ledger stays the size of its window, not of its history.

Delivered events whose delivery is older than ``GBQ_RETENTION_DAYS`` are removed with
their attempts, in small batches (the scheduler runs one per tick; ``gbq prune`` runs them
by hand). Dead letters stay until purged. With ``GBQ_ARCHIVE_DIR`` set, each removed event
and its attempts are first appended, as one JSON line, to
``gbq-archive-<day delivered>.jsonl`` there (written and flushed to disk before anything
is deleted; two pruners racing may both archive a line).

An order's removed events are remembered compactly in ``gbq_pruned_orders`` (ids, kinds,
times, the paid lines and the refunded quantities; ``order_memory``): ordering still
knows the paid event was delivered when a refund comes weeks later, and a cancellation
still names the lines not yet refunded. That memory is kept ``GBQ_ORDER_MEMORY_DAYS``; a
refund for an order forgotten by then waits and expires.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, delete, func, insert, select, update

from producers.events import Event, parse_event
from worker.ledger.models import AttemptRow, EventRow, EventState, PrunedOrderRow
from worker.ledger.order_memory import OrderMemory
from worker.ledger.statements import PRUNED_ORDERS

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


def prune_batch(
    connection: Connection,
    *,
    cutoff: datetime,
    limit: int,
    now: datetime,
    archive_dir: Path | None = None,
) -> PruneResult:
    """Remove up to ``limit`` events delivered before ``cutoff`` (one transaction: the
    caller's ``connection`` is in one)."""
    # Locked (PostgreSQL) so that none changes state before it is removed with its
    # attempts; on SQLite a concurrent write fails this transaction instead, retried later.
    events = connection.execute(
        select(*_EVENT_COLUMNS)
        .where(EventRow.state == EventState.DELIVERED, EventRow.delivered_at < cutoff)
        .order_by(EventRow.delivered_at)
        .limit(limit)
        .with_for_update(skip_locked=True)
    ).all()
    ids = [row.event_id for row in events]
    if not ids:
        return PruneResult(0, 0, 0, 0)
    attempts = connection.execute(
        select(*_ATTEMPT_COLUMNS).where(AttemptRow.event_id.in_(ids)).order_by(AttemptRow.id)
    ).all()
    archived = _archive(archive_dir, events, attempts) if archive_dir is not None else 0
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
    _remember(connection, [row for row in events if row.event_id in removed], now)
    return PruneResult(len(removed), int(removed_attempts or 0), archived, 0)


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
    """Add removed order events to their orders' memories (read, then write: the caller's
    transaction holds the rows it removed, so no other pruner adds the same ones)."""
    by_order: dict[str, list[tuple[Event, datetime]]] = {}
    for row in events:
        if row.order_id is None:
            continue  # a cashback: nothing after it depends on it
        event = parse_event(row.payload, accepted=True)  # a delivered event: it was read
        by_order.setdefault(row.order_id, []).append((event, _aware(row.occurred_at)))
    if not by_order:
        return
    known = memories(connection, by_order)
    for order_id, removed in by_order.items():
        memory = known.get(order_id, OrderMemory()).with_removed(removed)
        values = {"events": memory.encode(order_id), "pruned_at": now}
        if order_id in known:
            connection.execute(
                update(PrunedOrderRow).where(PrunedOrderRow.order_id == order_id).values(**values)
            )
        else:
            connection.execute(insert(PrunedOrderRow).values(order_id=order_id, **values))


def _archive(folder: Path, events: Sequence[Any], attempts: Sequence[Any]) -> int:
    """Append each event with its attempts as a JSON line, one file per day delivered;
    flushed to disk before returning."""
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
    folder.mkdir(parents=True, exist_ok=True)
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
    for path, chunk in lines.items():
        with path.open("a", encoding="utf-8") as out:
            out.write("\n".join(chunk) + "\n")
            out.flush()
            os.fsync(out.fileno())
    return len(events)


def _aware(moment: datetime) -> datetime:
    """SQLite hands back naive UTC through a plain column select."""
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _utc(moment: datetime | None) -> str | None:
    """ISO-8601 in UTC."""
    return None if moment is None else _aware(moment).isoformat()
