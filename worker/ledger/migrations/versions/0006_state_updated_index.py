"""`gbq dlq list` (the newest dead letters first) reads an index on (state, updated_at)
instead of sorting every dead letter: flat at any ledger size.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-03
"""

from __future__ import annotations

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_gbq_events_state_updated_at", "gbq_events", ["state", "updated_at"])


def downgrade() -> None:
    op.drop_index("ix_gbq_events_state_updated_at", table_name="gbq_events")
