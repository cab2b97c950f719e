"""Keep the raw bytes of malformed input, exactly: a binary column with the first 64 KiB,
the whole input's length and its SHA-256 (PostgreSQL text cannot hold NUL bytes).

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("gbq_events") as batch:
        batch.add_column(sa.Column("raw", sa.LargeBinary()))
        batch.add_column(sa.Column("raw_length", sa.BigInteger()))
        batch.add_column(sa.Column("raw_sha256", sa.String(64)))


def downgrade() -> None:
    with op.batch_alter_table("gbq_events") as batch:
        batch.drop_column("raw_sha256")
        batch.drop_column("raw_length")
        batch.drop_column("raw")
