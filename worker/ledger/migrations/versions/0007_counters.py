"""Flat operator queries: events per (kind, state, reason) and attempts per (outcome,
reason) kept by triggers in gbq_event_counts and gbq_attempt_counts, seeded from the rows
already there; indexes for the count of conflicting re-publishes, the oldest sendable
event, the newest dead letters with ties in time, and the console's last hour.

PostgreSQL counts per statement (transition tables) and shards the counters by backend
pid (no two open transactions share a counter row, so counting adds no lock waits);
SQLite counts per row (it updates in place) and, with one writer at a time, in shard 0.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

EVENT_KEY = "kind, state, reason"
ATTEMPT_KEY = "outcome, reason"


def _bump(shard: str, row: str, sign: str) -> str:
    """One upsert of an event counter for ``row`` (OLD or NEW); names only, no input."""
    return (
        f"INSERT INTO gbq_event_counts (shard, {EVENT_KEY}, n) VALUES ({shard}, {row}.kind, "  # noqa: S608
        f"{row}.state, coalesce({row}.dead_reason, ''), {sign}1) "
        f"ON CONFLICT (shard, {EVENT_KEY}) DO UPDATE SET n = gbq_event_counts.n {sign} 1;"
    )


def _attempt_bump(shard: str) -> str:
    return (
        f"INSERT INTO gbq_attempt_counts (shard, {ATTEMPT_KEY}, n) VALUES ({shard}, "  # noqa: S608
        f"NEW.outcome, NEW.reason, 1) ON CONFLICT (shard, {ATTEMPT_KEY}) "
        "DO UPDATE SET n = gbq_attempt_counts.n + 1;"
    )


def _changed(differs: str) -> str:
    """Whether an update moved the row to another counter (null-safe comparisons)."""
    return " OR ".join(f"OLD.{c} {differs} NEW.{c}" for c in ("state", "kind", "dead_reason"))


UPDATED = "AFTER UPDATE OF state, kind, dead_reason ON gbq_events"


def _fold(rows: str) -> str:
    """Upsert this backend's event counters by the sum of ``rows`` (kind, state, reason,
    delta): one write per counter a statement changed, whatever the rows it touched."""
    return (
        f"INSERT INTO gbq_event_counts AS c (shard, {EVENT_KEY}, n) "  # noqa: S608
        f"SELECT pg_backend_pid(), {EVENT_KEY}, sum(delta) FROM ({rows}) AS d "
        f"GROUP BY {EVENT_KEY} HAVING sum(delta) <> 0 "
        f"ON CONFLICT (shard, {EVENT_KEY}) DO UPDATE SET n = c.n + excluded.n;"
    )


def _rows(table: str, delta: str) -> str:
    return f"SELECT kind, state, coalesce(dead_reason, '') AS reason, {delta} AS delta FROM {table}"  # noqa: S608


def _postgresql() -> list[str]:
    # Statement triggers over transition tables, not row triggers: a row trigger updates
    # the same counter row once per event, and PostgreSQL walks every earlier version of
    # a row updated in the same transaction, so a bulk change of n rows (a purge, a sweep,
    # retention) would cost n². Column lists are not allowed with transition tables: the
    # update trigger sees every update, and unchanged counters cancel out in the sum.
    changes = {
        "insert": _fold(_rows("new_rows", "1")),
        "delete": _fold(_rows("old_rows", "-1")),
        "update": _fold(f"{_rows('old_rows', '-1')} UNION ALL {_rows('new_rows', '1')}"),
    }
    statements = []
    for operation, change in changes.items():
        statements.append(
            f"""CREATE FUNCTION gbq_count_events_{operation}() RETURNS trigger
            LANGUAGE plpgsql AS $$ BEGIN {change} RETURN NULL; END $$"""
        )
        tables = {
            "insert": "NEW TABLE AS new_rows",
            "delete": "OLD TABLE AS old_rows",
            "update": "OLD TABLE AS old_rows NEW TABLE AS new_rows",
        }[operation]
        statements.append(
            f"CREATE TRIGGER gbq_events_counted_{operation} AFTER {operation.upper()} ON "
            f"gbq_events REFERENCING {tables} FOR EACH STATEMENT "
            f"EXECUTE FUNCTION gbq_count_events_{operation}()"
        )
    statements += [
        """CREATE FUNCTION gbq_count_attempts() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
          INSERT INTO gbq_attempt_counts AS c (shard, outcome, reason, n)
          SELECT pg_backend_pid(), outcome, reason, count(*) FROM new_rows
          GROUP BY outcome, reason
          ON CONFLICT (shard, outcome, reason) DO UPDATE SET n = c.n + excluded.n;
          RETURN NULL;
        END $$""",
        (
            "CREATE TRIGGER gbq_attempts_counted AFTER INSERT ON gbq_attempts "
            "REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT "
            "EXECUTE FUNCTION gbq_count_attempts()"
        ),
    ]
    return statements


def _sqlite() -> list[str]:
    # Row triggers: SQLite updates rows in place, so many changes in one transaction cost
    # no more each than one.
    inserted, deleted = _bump("0", "NEW", "+"), _bump("0", "OLD", "-")
    return [
        (
            f"CREATE TRIGGER gbq_events_counted_insert AFTER INSERT ON gbq_events "
            f"BEGIN {inserted} END"
        ),
        (
            f"CREATE TRIGGER gbq_events_counted_delete AFTER DELETE ON gbq_events "
            f"BEGIN {deleted} END"
        ),
        (
            f"CREATE TRIGGER gbq_events_counted_update {UPDATED} WHEN {_changed('IS NOT')} "
            f"BEGIN {deleted} {inserted} END"
        ),
        (
            f"CREATE TRIGGER gbq_attempts_counted AFTER INSERT ON gbq_attempts "
            f"BEGIN {_attempt_bump('0')} END"
        ),
    ]


def upgrade() -> None:
    op.create_table(
        "gbq_event_counts",
        sa.Column("shard", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("reason", sa.String(16), nullable=False),
        sa.Column("n", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("shard", "kind", "state", "reason", name="pk_gbq_event_counts"),
    )
    op.create_table(
        "gbq_attempt_counts",
        sa.Column("shard", sa.Integer(), nullable=False),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("reason", sa.String(32), nullable=False),
        sa.Column("n", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("shard", "outcome", "reason", name="pk_gbq_attempt_counts"),
    )
    op.create_index("ix_gbq_events_conflicts", "gbq_events", ["conflicts"])
    op.create_index("ix_gbq_events_state_created_at", "gbq_events", ["state", "created_at"])
    op.create_index("ix_gbq_events_created_at", "gbq_events", ["created_at"])
    # Ties in time (a cascade settles several at once) must not make the list sort them all.
    op.drop_index("ix_gbq_events_state_updated_at", table_name="gbq_events")
    op.create_index(
        "ix_gbq_events_state_updated_at_event_id", "gbq_events", ["state", "updated_at", "event_id"]
    )
    postgresql = op.get_bind().dialect.name == "postgresql"
    if postgresql:
        # Writers wait until the seed and the triggers are in place together.
        op.execute("LOCK TABLE gbq_events, gbq_attempts IN SHARE ROW EXCLUSIVE MODE")
    for statement in _postgresql() if postgresql else _sqlite():
        op.execute(statement)
    op.execute(
        f"INSERT INTO gbq_event_counts (shard, {EVENT_KEY}, n) SELECT 0, kind, state, "  # noqa: S608
        "coalesce(dead_reason, ''), count(*) FROM gbq_events "
        "GROUP BY kind, state, coalesce(dead_reason, '')"
    )
    op.execute(
        f"INSERT INTO gbq_attempt_counts (shard, {ATTEMPT_KEY}, n) SELECT 0, outcome, "  # noqa: S608
        "reason, count(*) FROM gbq_attempts GROUP BY outcome, reason"
    )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for operation in ("insert", "delete", "update"):
            op.execute(f"DROP TRIGGER gbq_events_counted_{operation} ON gbq_events")
            op.execute(f"DROP FUNCTION gbq_count_events_{operation}()")
        op.execute("DROP TRIGGER gbq_attempts_counted ON gbq_attempts")
        op.execute("DROP FUNCTION gbq_count_attempts()")
    else:
        for name in ("insert", "delete", "update"):
            op.execute(f"DROP TRIGGER gbq_events_counted_{name}")
        op.execute("DROP TRIGGER gbq_attempts_counted")
    op.drop_index("ix_gbq_events_conflicts", table_name="gbq_events")
    op.drop_index("ix_gbq_events_state_created_at", table_name="gbq_events")
    op.drop_index("ix_gbq_events_created_at", table_name="gbq_events")
    op.drop_index("ix_gbq_events_state_updated_at_event_id", table_name="gbq_events")
    op.create_index("ix_gbq_events_state_updated_at", "gbq_events", ["state", "updated_at"])
    op.drop_table("gbq_attempt_counts")
    op.drop_table("gbq_event_counts")
