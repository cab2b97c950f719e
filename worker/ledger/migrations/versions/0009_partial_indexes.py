"""Four indexes of gbq_events hold only the rows that have their column set: the next
attempt's time, the lease's expiry, the enqueue time and the dead reason. A delivered row
has none of them, so it no longer enters those indexes when inserted or moves in them
when settled: a quarter fewer pages read and written per delivered event. The queries
they serve compare the column, which implies IS NOT NULL to SQLite and PostgreSQL.

Rebuilding an index reads the table once (seconds per million rows); on PostgreSQL it
holds off writes meanwhile, so run ``gbq migrate`` while the workers are stopped.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

# (index, columns, the column a row must have set)
_PARTIAL = [
    ("ix_gbq_events_state_next_attempt_at", ["state", "next_attempt_at"], "next_attempt_at"),
    ("ix_gbq_events_state_lease_expires_at", ["state", "lease_expires_at"], "lease_expires_at"),
    ("ix_gbq_events_state_enqueued_at", ["state", "enqueued_at"], "enqueued_at"),
    ("ix_gbq_events_dead_reason_updated_at", ["dead_reason", "updated_at"], "dead_reason"),
]


def upgrade() -> None:
    for name, columns, set_column in _PARTIAL:
        condition = sa.text(f"{set_column} IS NOT NULL")
        op.drop_index(name, table_name="gbq_events")
        op.create_index(
            name, "gbq_events", columns, sqlite_where=condition, postgresql_where=condition
        )


def downgrade() -> None:
    for name, columns, _ in _PARTIAL:
        op.drop_index(name, table_name="gbq_events")
        op.create_index(name, "gbq_events", columns)
