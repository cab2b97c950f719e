"""Attempt numbers continue across manual retries: ``retried_at_attempt`` keeps how many
attempts an event had when it was last retried (or replaced, or re-driven), so the next
attempt is numbered after them while the backoff and the retry window start afresh.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("gbq_events") as batch:
        batch.add_column(
            sa.Column("retried_at_attempt", sa.Integer(), nullable=False, server_default="0")
        )


def downgrade() -> None:
    with op.batch_alter_table("gbq_events") as batch:
        batch.drop_column("retried_at_attempt")
