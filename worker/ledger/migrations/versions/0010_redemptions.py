"""Redeemed points carried the documented way: gbq_events.redemption_state keeps where an
order's redemption stands across attempts (a hold gbq made, a checkout hold gone, a
redemption parked), and gbq_parked_redemptions lists those the operator settles
(worker.rules.redemption). Adds a nullable column and a table: cheap on either database.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from worker.ledger.models import UtcDateTime

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("gbq_events", sa.Column("redemption_state", sa.Text(), nullable=True))
    op.create_table(
        "gbq_parked_redemptions",
        sa.Column("event_id", sa.String(300), primary_key=True),
        sa.Column("order_id", sa.String(120), nullable=False),
        sa.Column("customer_id", sa.String(120), nullable=False),
        sa.Column("hold_reference", sa.String(120), nullable=True),
        sa.Column("amount", sa.String(40), nullable=True),
        sa.Column("reason", sa.String(16), nullable=False),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.Column("parked_at", UtcDateTime(), nullable=False),
        sa.Column("resolved_at", UtcDateTime(), nullable=True),
        sa.Column("resolution", sa.Text(), nullable=True),
    )
    op.create_index(
        "ix_gbq_parked_redemptions_resolved_at_parked_at",
        "gbq_parked_redemptions",
        ["resolved_at", "parked_at"],
    )


def downgrade() -> None:
    op.drop_index(
        "ix_gbq_parked_redemptions_resolved_at_parked_at", table_name="gbq_parked_redemptions"
    )
    op.drop_table("gbq_parked_redemptions")
    op.drop_column("gbq_events", "redemption_state")
