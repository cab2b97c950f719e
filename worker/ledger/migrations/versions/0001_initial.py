"""The ledger's events and attempts, and the transactional outbox.

Revision ID: 0001
Revises:
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from worker.ledger.models import UtcDateTime

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "gbq_events",
        sa.Column("event_id", sa.String(300), primary_key=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("order_id", sa.String(120)),
        sa.Column("customer_id", sa.String(120), nullable=False),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.Column("occurred_at", UtcDateTime(), nullable=False),
        sa.Column("published_at", UtcDateTime()),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", UtcDateTime()),
        sa.Column("enqueued_at", UtcDateTime()),
        sa.Column("lease_owner", sa.String(200)),
        sa.Column("lease_expires_at", UtcDateTime()),
        sa.Column("first_attempt_at", UtcDateTime()),
        sa.Column("last_attempt_at", UtcDateTime()),
        sa.Column("window_credit_s", sa.Float(), nullable=False),
        sa.Column("last_outcome", sa.String(32)),
        sa.Column("last_status", sa.Integer()),
        sa.Column("last_code", sa.Integer()),
        sa.Column("last_message", sa.Text()),
        sa.Column("last_body", sa.Text()),
        sa.Column("dead_reason", sa.String(16)),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.Column("updated_at", UtcDateTime(), nullable=False),
        sa.Column("delivered_at", UtcDateTime()),
        sa.PrimaryKeyConstraint("event_id", name="pk_gbq_events"),
    )
    op.create_index(
        "ix_gbq_events_state_next_attempt_at", "gbq_events", ["state", "next_attempt_at"]
    )
    op.create_index(
        "ix_gbq_events_state_lease_expires_at", "gbq_events", ["state", "lease_expires_at"]
    )
    op.create_index("ix_gbq_events_state_enqueued_at", "gbq_events", ["state", "enqueued_at"])
    op.create_index("ix_gbq_events_order_id", "gbq_events", ["order_id"])
    op.create_index(
        "ix_gbq_events_dead_reason_updated_at", "gbq_events", ["dead_reason", "updated_at"]
    )
    op.create_table(
        "gbq_attempts",
        sa.Column("id", BIG_ID, autoincrement=True),
        sa.Column("event_id", sa.String(300), nullable=False),
        sa.Column("attempt_no", sa.Integer(), nullable=False),
        sa.Column("worker", sa.String(200), nullable=False),
        sa.Column("started_at", UtcDateTime(), nullable=False),
        sa.Column("duration_s", sa.Float(), nullable=False),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("reason", sa.String(32), nullable=False),
        sa.Column("status", sa.Integer()),
        sa.Column("code", sa.Integer()),
        sa.Column("message", sa.Text()),
        sa.Column("body", sa.Text()),
        sa.PrimaryKeyConstraint("id", name="pk_gbq_attempts"),
        sa.ForeignKeyConstraint(
            ["event_id"], ["gbq_events.event_id"], name="fk_gbq_attempts_event_id_gbq_events"
        ),
    )
    op.create_index(
        "ix_gbq_attempts_event_id_attempt_no", "gbq_attempts", ["event_id", "attempt_no"]
    )
    op.create_table(
        "gbq_outbox",
        sa.Column("id", BIG_ID, autoincrement=True),
        sa.Column("event_id", sa.String(300), nullable=False),
        sa.Column("event_json", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_gbq_outbox"),
    )


def downgrade() -> None:
    op.drop_table("gbq_outbox")
    op.drop_table("gbq_attempts")
    op.drop_table("gbq_events")
