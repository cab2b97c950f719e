"""Index deliveries by time, for the latency metric and "delivered in the last minute".

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22
"""

from __future__ import annotations

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_gbq_events_delivered_at", "gbq_events", ["delivered_at"])


def downgrade() -> None:
    op.drop_index("ix_gbq_events_delivered_at", table_name="gbq_events")
