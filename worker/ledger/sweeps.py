"""What the scheduler's sweeps ask of the ledger (``worker.flows.scheduler``): batch
takes of due, expired and stale events (``FOR UPDATE SKIP LOCKED``), waiting events,
dead hosts' leases, retention and re-drives."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import and_, func, select, update
from sqlalchemy.sql.elements import ColumnElement

from worker.ledger.core import (
    S,
    afresh,
)
from worker.ledger.ingest import Ingestion
from worker.ledger.models import EventRow
from worker.ledger.retention import (
    ArchiveAppend,
    PruneResult,
    count_prunable,
    forget_orders,
    remove_batch,
)
from worker.rules.states import DeadReason


class Sweeps(Ingestion):
    """The scheduler's sweeps."""

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
