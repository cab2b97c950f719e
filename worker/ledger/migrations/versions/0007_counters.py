"""Flat operator queries: events per (kind, state, reason) and attempts per (outcome,
reason) kept by triggers in gbq_event_counts and gbq_attempt_counts, seeded from the rows
already there; indexes for the count of conflicting re-publishes, the oldest sendable
event, the newest dead letters with ties in time, and the console's last hour.

PostgreSQL shards the counters by backend pid (no two open transactions share a counter
row, so counting adds no lock waits); SQLite has one writer at a time and uses shard 0.

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


def _postgresql() -> list[str]:
    shard = "pg_backend_pid()"
    events, attempts = "EXECUTE FUNCTION gbq_count_events()", "gbq_count_attempts()"
    changed = _changed("IS DISTINCT FROM")
    return [
        f"""CREATE FUNCTION gbq_count_events() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
          IF TG_OP <> 'INSERT' THEN {_bump(shard, "OLD", "-")} END IF;
          IF TG_OP <> 'DELETE' THEN {_bump(shard, "NEW", "+")} END IF;
          RETURN NULL;
        END $$""",
        f"""CREATE FUNCTION {attempts} RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN {_attempt_bump(shard)} RETURN NULL; END $$""",
        (
            f"CREATE TRIGGER gbq_events_counted AFTER INSERT OR DELETE ON gbq_events "
            f"FOR EACH ROW {events}"
        ),
        (
            f"CREATE TRIGGER gbq_events_counted_update {UPDATED} FOR EACH ROW "
            f"WHEN ({changed}) {events}"
        ),
        (
            f"CREATE TRIGGER gbq_attempts_counted AFTER INSERT ON gbq_attempts "
            f"FOR EACH ROW EXECUTE FUNCTION {attempts}"
        ),
    ]


def _sqlite() -> list[str]:
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
        op.execute("DROP TRIGGER gbq_events_counted ON gbq_events")
        op.execute("DROP TRIGGER gbq_events_counted_update ON gbq_events")
        op.execute("DROP TRIGGER gbq_attempts_counted ON gbq_attempts")
        op.execute("DROP FUNCTION gbq_count_events()")
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
