"""Order memory without content: gbq_pruned_orders keeps each removed event's id, kind,
time and transaction id, the paid lines and the refunded quantities (worker.ledger.
order_memory), not the events' JSON: about a tenth of the size, so that the ledger is
bounded by its windows rather than by its history. Rewrites the rows 0005 wrote, in
batches.

Downgrade keeps the compact rows (the content is gone; the archive, when
GBQ_ARCHIVE_DIR was set, still has it): a worker older than this revision cannot read
them, so it refuses unless the table is empty.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from worker.ledger.order_memory import OrderMemory

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

BATCH = 1000
_TABLE = sa.table(
    "gbq_pruned_orders", sa.column("order_id", sa.String), sa.column("events", sa.Text)
)


def upgrade() -> None:
    connection = op.get_bind()
    after = ""
    while True:
        rows = connection.execute(
            sa.select(_TABLE.c.order_id, _TABLE.c.events)
            .where(_TABLE.c.order_id > after)
            .order_by(_TABLE.c.order_id)
            .limit(BATCH)
        ).all()
        if not rows:
            return
        for order_id, events in rows:
            if events.startswith("["):  # 0005's list with content
                compact = OrderMemory.decode(order_id, events).encode(order_id)
                connection.execute(
                    sa.update(_TABLE).where(_TABLE.c.order_id == order_id).values(events=compact)
                )
        after = rows[-1][0]


def downgrade() -> None:
    held = op.get_bind().execute(sa.select(sa.func.count()).select_from(_TABLE)).scalar()
    if held:
        raise RuntimeError(
            f"gbq_pruned_orders holds {held} compact order memories, which revision 0007's "
            "workers cannot read: the removed events' content is gone. Stay at 0008, or "
            "empty the table knowing refunds of those orders will wait and expire."
        )
