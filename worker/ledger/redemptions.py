"""Where each order's redeemed points stand, and the parked ones the operator settles.

``gbq_events.redemption_state`` holds a :class:`worker.rules.redemption.RedemptionState` per
order that redeems points; only the lease holder writes it. A redemption gbq cannot carry
to Gameball is parked in ``gbq_parked_redemptions`` (once per event) until an operator
resolves it (``gbq redemptions resolve``), after settling the points in Gameball's
dashboard.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import insert, select, update
from sqlalchemy.exc import IntegrityError

from worker.ledger.models import EventRow, ParkedRedemptionRow
from worker.ledger.repository import Ledger
from worker.ledger.status_reads import unresolved_redemptions


@dataclass(frozen=True)
class ParkedRedemption:
    event_id: str
    order_id: str
    customer_id: str
    hold_reference: str | None
    amount: str | None
    reason: str
    detail: str
    parked_at: datetime
    resolved_at: datetime | None = None
    resolution: str | None = None


class Redemptions:
    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger

    def state(self, event_id: str) -> str | None:
        with self.ledger.engine.connect() as connection:
            return connection.execute(
                select(EventRow.redemption_state).where(EventRow.event_id == event_id)
            ).scalar()

    def set_state(self, event_id: str, owner: str, state: str) -> bool:
        """Write the state if ``owner`` still holds the lease; whether it did."""
        with self.ledger.engine.begin() as connection:
            written = connection.execute(
                update(EventRow)
                .where(EventRow.event_id == event_id, EventRow.lease_owner == owner)
                .values(redemption_state=state)
            )
        return bool(written.rowcount)

    def park(self, parked: ParkedRedemption) -> bool:
        """Park a redemption (once per event); whether this call parked it."""
        try:
            with self.ledger.engine.begin() as connection:
                connection.execute(
                    insert(ParkedRedemptionRow).values(
                        event_id=parked.event_id,
                        order_id=parked.order_id,
                        customer_id=parked.customer_id,
                        hold_reference=parked.hold_reference,
                        amount=parked.amount,
                        reason=parked.reason,
                        detail=parked.detail,
                        parked_at=parked.parked_at,
                    )
                )
        except IntegrityError:
            return False  # parked by an earlier attempt
        return True

    def listed(self, *, include_resolved: bool = False, limit: int = 100) -> list[ParkedRedemption]:
        statement = select(ParkedRedemptionRow).order_by(
            ParkedRedemptionRow.parked_at, ParkedRedemptionRow.event_id
        )
        if not include_resolved:
            statement = statement.where(ParkedRedemptionRow.resolved_at.is_(None))
        with self.ledger.engine.connect() as connection:
            rows = connection.execute(statement.limit(limit)).mappings().all()
        return [
            ParkedRedemption(**{k: row[k] for k in ParkedRedemption.__dataclass_fields__})
            for row in rows
        ]

    def unresolved(self) -> int:
        with self.ledger.engine.connect() as connection:
            return unresolved_redemptions(connection)

    def resolve(self, order_id: str, resolution: str, now: datetime) -> int:
        """Mark the order's parked redemptions settled; how many were."""
        with self.ledger.engine.begin() as connection:
            done = connection.execute(
                update(ParkedRedemptionRow)
                .where(
                    ParkedRedemptionRow.order_id == order_id,
                    ParkedRedemptionRow.resolved_at.is_(None),
                )
                .values(resolved_at=now, resolution=resolution)
            )
        return int(done.rowcount)
