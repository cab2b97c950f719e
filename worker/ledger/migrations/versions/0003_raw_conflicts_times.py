"""Keep the raw bytes of malformed input, exactly: a binary column with the first 64 KiB,
the whole input's length and its SHA-256 (PostgreSQL text cannot hold NUL bytes). A
content hash per event, with the conflicts seen: re-publishes of its id with other content.
And what each event's Gameball request is fixed to, so every attempt sends the same bytes:
its transaction time (unique per customer: Gameball refuses two at one instant, 304/9003)
and, for cancellations and full refunds, the order's line items it reverses.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from worker.ledger.models import UtcDateTime

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("gbq_events") as batch:
        batch.add_column(sa.Column("raw", sa.LargeBinary()))
        batch.add_column(sa.Column("raw_length", sa.BigInteger()))
        batch.add_column(sa.Column("raw_sha256", sa.String(64)))
        batch.add_column(sa.Column("content_sha256", sa.String(64)))
        batch.add_column(sa.Column("conflicts", sa.Integer(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("conflict_payload", sa.Text()))
        batch.add_column(sa.Column("conflict_at", UtcDateTime()))
        batch.add_column(sa.Column("transaction_time", UtcDateTime()))
        batch.add_column(sa.Column("reversal_lines", sa.Text()))
        batch.create_index(
            "ix_gbq_events_customer_id_transaction_time",
            ["customer_id", "transaction_time"],
            unique=True,
        )


def downgrade() -> None:
    with op.batch_alter_table("gbq_events") as batch:
        batch.drop_index("ix_gbq_events_customer_id_transaction_time")
        batch.drop_column("reversal_lines")
        batch.drop_column("transaction_time")
        batch.drop_column("conflict_at")
        batch.drop_column("conflict_payload")
        batch.drop_column("conflicts")
        batch.drop_column("content_sha256")
        batch.drop_column("raw_sha256")
        batch.drop_column("raw_length")
        batch.drop_column("raw")
