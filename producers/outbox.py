"""The transactional outbox: events staged inside the caller's own database transaction.

``Publisher.stage(session, event)`` adds a row to ``gbq_outbox`` through the caller's
SQLAlchemy session, so the event exists if and only if the caller's transaction commits.
The scheduler relays rows to the ledger and deletes them (a crash in between relays a row
twice, which is harmless). The ledger's migrations create the table in the ledger's
database; for another database, add :data:`outbox_table` to its migrations or call
:func:`create_outbox_table`.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Engine,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    insert,
)
from sqlalchemy.orm import Session

from producers.events import Event, event_to_json

OUTBOX_TABLE = "gbq_outbox"
metadata = MetaData()
outbox_table = Table(
    OUTBOX_TABLE,
    metadata,
    # Not keyed by event_id: staging an event twice must never fail the caller's commit.
    Column(
        "id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    ),
    Column("event_id", String(300), nullable=False),
    Column("event_json", Text, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
)


def stage(session: Session, event: Event) -> None:
    """Add ``event`` to the outbox within ``session``'s transaction."""
    session.execute(
        insert(outbox_table).values(
            event_id=event.event_id, event_json=event_to_json(event), created_at=datetime.now(UTC)
        )
    )


def create_outbox_table(engine: Engine) -> None:
    """Create ``gbq_outbox`` in a database other than the ledger's (no-op if present)."""
    metadata.create_all(engine, tables=[outbox_table])
