"""The ledger's tables: one row per event (its state and Gameball's last answer) and one
row per HTTP attempt. The ledger, not Redis, is the source of truth for every event.

The states and dead reasons are ``worker.rules.states``.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    BigInteger,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from worker.ledger.types import UtcDateTime

__all__ = [
    "AttemptCountRow",
    "AttemptRow",
    "Base",
    "EventCountRow",
    "EventRow",
    "ParkedRedemptionRow",
    "PrunedOrderRow",
    "UtcDateTime",  # the column type (worker.ledger.types), for the migrations
]


class Base(DeclarativeBase):
    metadata = MetaData(
        naming_convention={
            "ix": "ix_%(table_name)s_%(column_0_N_name)s",
            "uq": "uq_%(table_name)s_%(column_0_N_name)s",
            "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
            "pk": "pk_%(table_name)s",
        }
    )


def _only_set(*columns: str, set_column: str | None = None) -> Index:
    """An index on ``columns`` of the rows whose ``set_column`` (the last column if not
    given) is not NULL."""
    condition = text(f"{set_column or columns[-1]} IS NOT NULL")
    return Index(None, *columns, sqlite_where=condition, postgresql_where=condition)


class EventRow(Base):
    __tablename__ = "gbq_events"

    event_id: Mapped[str] = mapped_column(String(300), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))
    order_id: Mapped[str | None] = mapped_column(String(120))
    customer_id: Mapped[str] = mapped_column(String(120))
    payload: Mapped[str] = mapped_column(Text)
    occurred_at: Mapped[datetime] = mapped_column(UtcDateTime)
    published_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    state: Mapped[str] = mapped_column(String(16))
    attempts: Mapped[int] = mapped_column(Integer, default=0)  # all of them, ever
    # Attempts made before the last manual retry: numbering continues after them, the
    # backoff and the retry window start afresh.
    retried_at_attempt: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    next_attempt_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    enqueued_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    lease_owner: Mapped[str | None] = mapped_column(String(200))
    lease_expires_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    first_attempt_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    last_attempt_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    window_credit_s: Mapped[float] = mapped_column(Float, default=0.0)
    last_outcome: Mapped[str | None] = mapped_column(String(32))
    last_status: Mapped[int | None] = mapped_column(Integer)
    last_code: Mapped[int | None] = mapped_column(Integer)
    last_message: Mapped[str | None] = mapped_column(Text)
    last_body: Mapped[str | None] = mapped_column(Text)
    dead_reason: Mapped[str | None] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime)
    delivered_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    # Malformed input only: its first bytes exactly, with the whole input's size and hash.
    raw: Mapped[bytes | None] = mapped_column(LargeBinary)
    raw_length: Mapped[int | None] = mapped_column(BigInteger)
    raw_sha256: Mapped[str | None] = mapped_column(String(64))
    # The event's content, and re-publishes of its id with other content (the first
    # accepted content is kept and sent; the latest other one is kept here to look at).
    content_sha256: Mapped[str | None] = mapped_column(String(64))
    conflicts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    conflict_payload: Mapped[str | None] = mapped_column(Text)
    conflict_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    # What the Gameball request is fixed to (every attempt sends the same bytes).
    transaction_time: Mapped[datetime | None] = mapped_column(UtcDateTime)
    reversal_lines: Mapped[str | None] = mapped_column(Text)  # JSON: lines a full reversal names
    # JSON (worker.rules.redemption.RedemptionState): where an order's redeemed points stand
    redemption_state: Mapped[str | None] = mapped_column(Text)

    __table_args__ = (
        # Partial: a delivered row has none of these four columns set, so it never enters
        # these indexes (fewer pages to read and write per event). Every query they serve
        # compares the column, which implies IS NOT NULL to SQLite and PostgreSQL alike.
        _only_set("state", "next_attempt_at"),
        _only_set("state", "lease_expires_at"),
        _only_set("state", "enqueued_at"),
        Index(None, "order_id"),
        _only_set("dead_reason", "updated_at", set_column="dead_reason"),
        # gbq dlq list: the newest dead letters first, ties included, read off the index
        Index(None, "state", "updated_at", "event_id"),
        Index(None, "state", "created_at"),  # gbq status: the oldest sendable, waiting
        Index(None, "created_at"),  # gbq web: what was published, minute by minute
        Index(None, "delivered_at"),
        Index(None, "customer_id", "transaction_time", unique=True),
        Index(None, "conflicts"),  # gbq status: the few re-published with other content
    )


class AttemptRow(Base):
    __tablename__ = "gbq_attempts"

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    event_id: Mapped[str] = mapped_column(ForeignKey("gbq_events.event_id"))
    attempt_no: Mapped[int] = mapped_column(Integer)
    worker: Mapped[str] = mapped_column(String(200))
    started_at: Mapped[datetime] = mapped_column(UtcDateTime)
    duration_s: Mapped[float] = mapped_column(Float)
    outcome: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str] = mapped_column(String(32))
    status: Mapped[int | None] = mapped_column(Integer)
    code: Mapped[int | None] = mapped_column(Integer)
    message: Mapped[str | None] = mapped_column(Text)
    body: Mapped[str | None] = mapped_column(Text)

    __table_args__ = (Index(None, "event_id", "attempt_no"),)


class PrunedOrderRow(Base):
    """What the ledger keeps of an order whose delivered events retention removed: each
    such event's id, kind, time and content, in one JSON list. Ordering needs to know the
    paid event was delivered (a refund may come months later), and a cancellation or full
    refund names the lines not yet refunded. Kept ``GBQ_ORDER_MEMORY_DAYS``."""

    __tablename__ = "gbq_pruned_orders"

    order_id: Mapped[str] = mapped_column(String(120), primary_key=True)
    events: Mapped[str] = mapped_column(Text)  # JSON: [{event_id, kind, occurred_at, payload}]
    pruned_at: Mapped[datetime] = mapped_column(UtcDateTime)

    __table_args__ = (Index(None, "pruned_at"),)


class ParkedRedemptionRow(Base):
    """An order's redeemed points that gbq could not carry to Gameball (its hold gone with
    no value to hold again, or the customer short of points): the order went without them
    and the operator settles them (``gbq redemptions``). Kept until resolved."""

    __tablename__ = "gbq_parked_redemptions"

    event_id: Mapped[str] = mapped_column(String(300), primary_key=True)
    order_id: Mapped[str] = mapped_column(String(120))
    customer_id: Mapped[str] = mapped_column(String(120))
    hold_reference: Mapped[str | None] = mapped_column(String(120))
    amount: Mapped[str | None] = mapped_column(String(40))  # the value, when known
    reason: Mapped[str] = mapped_column(String(16))
    detail: Mapped[str] = mapped_column(Text)
    parked_at: Mapped[datetime] = mapped_column(UtcDateTime)
    resolved_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    resolution: Mapped[str | None] = mapped_column(Text)

    __table_args__ = (Index(None, "resolved_at", "parked_at"),)


class EventCountRow(Base):
    """Events per (kind, state, reason), kept by triggers on ``gbq_events`` so that
    ``gbq status`` and the metrics scrape read a few rows instead of counting the table
    (``worker/ledger/counters.py``). PostgreSQL: one shard per database backend (its pid),
    so concurrent transactions never wait for each other's counter rows; shard 0 holds
    what the scheduler folded in from backends that have gone. SQLite: shard 0 only."""

    __tablename__ = "gbq_event_counts"

    shard: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(16), primary_key=True)
    state: Mapped[str] = mapped_column(String(16), primary_key=True)
    reason: Mapped[str] = mapped_column(String(16), primary_key=True)  # '' for none
    n: Mapped[int] = mapped_column(BigInteger)


class AttemptCountRow(Base):
    """Attempts per (outcome, reason), counted on insert only: a Prometheus counter, which
    retention's removal of old attempts must not lower. Sharded as ``gbq_event_counts``."""

    __tablename__ = "gbq_attempt_counts"

    shard: Mapped[int] = mapped_column(Integer, primary_key=True)
    outcome: Mapped[str] = mapped_column(String(16), primary_key=True)
    reason: Mapped[str] = mapped_column(String(32), primary_key=True)
    n: Mapped[int] = mapped_column(BigInteger)
