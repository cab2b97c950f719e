"""Retention: delivered events older than GBQ_RETENTION_DAYS are removed; what ordering
and full reversals still need of their orders is kept compactly in gbq_pruned_orders.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from worker.ledger.models import UtcDateTime

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "gbq_pruned_orders",
        sa.Column("order_id", sa.String(120), nullable=False),
        sa.Column("events", sa.Text(), nullable=False),
        sa.Column("pruned_at", UtcDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("order_id", name="pk_gbq_pruned_orders"),
    )
    op.create_index("ix_gbq_pruned_orders_pruned_at", "gbq_pruned_orders", ["pruned_at"])


def downgrade() -> None:
    op.drop_index("ix_gbq_pruned_orders_pruned_at", table_name="gbq_pruned_orders")
    op.drop_table("gbq_pruned_orders")
