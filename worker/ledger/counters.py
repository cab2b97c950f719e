"""The ledger's counters: events per (kind, state, reason) and attempts per (outcome,
reason), kept by the triggers of migration 0007, so that ``gbq status``, ``gbq dlq list``
and the metrics scrape read a few rows whatever the size of the ledger.

PostgreSQL keeps one shard of counters per database backend (``pg_backend_pid()``): two
open transactions never update the same counter row, so counting adds no lock waits and
no deadlocks to the delivery path. :func:`fold_gone_shards` (a scheduler sweep) adds the
shards of backends that have gone into shard 0, skipping any row a live transaction
holds, and drops zeros; the number of rows stays about (live backends × kinds in use).
SQLite has a single writer and counts in shard 0.
"""

from __future__ import annotations

from collections import defaultdict

from sqlalchemy import Connection, Engine, text

FOLD_EVENTS = text(
    "WITH gone AS (DELETE FROM gbq_event_counts WHERE (shard, kind, state, reason) IN "
    "(SELECT shard, kind, state, reason FROM gbq_event_counts WHERE shard <> 0 AND shard NOT "
    "IN (SELECT pid FROM pg_stat_activity) FOR UPDATE SKIP LOCKED) "
    "RETURNING kind, state, reason, n) "
    "INSERT INTO gbq_event_counts AS c (shard, kind, state, reason, n) "
    "SELECT 0, kind, state, reason, sum(n) FROM gone GROUP BY kind, state, reason "
    "ON CONFLICT (shard, kind, state, reason) DO UPDATE SET n = c.n + excluded.n"
)
FOLD_ATTEMPTS = text(
    "WITH gone AS (DELETE FROM gbq_attempt_counts WHERE (shard, outcome, reason) IN "
    "(SELECT shard, outcome, reason FROM gbq_attempt_counts WHERE shard <> 0 AND shard NOT "
    "IN (SELECT pid FROM pg_stat_activity) FOR UPDATE SKIP LOCKED) "
    "RETURNING outcome, reason, n) "
    "INSERT INTO gbq_attempt_counts AS c (shard, outcome, reason, n) "
    "SELECT 0, outcome, reason, sum(n) FROM gone GROUP BY outcome, reason "
    "ON CONFLICT (shard, outcome, reason) DO UPDATE SET n = c.n + excluded.n"
)
DROP_ZEROS = text("DELETE FROM gbq_event_counts WHERE shard = 0 AND n = 0")


def event_counts(connection: Connection) -> dict[tuple[str, str, str | None], int]:
    """Events per (kind, state, dead reason or None); combinations at zero are left out."""
    rows = connection.execute(
        text(
            "SELECT kind, state, reason, sum(n) FROM gbq_event_counts GROUP BY kind, state, reason"
        )
    )
    return {
        (str(kind), str(state), str(reason) or None): int(total)
        for kind, state, reason, total in rows
        if total
    }


def attempt_counts(connection: Connection) -> dict[tuple[str, str], int]:
    """Attempts ever recorded per (outcome, reason), including those retention removed."""
    rows = connection.execute(
        text("SELECT outcome, reason, sum(n) FROM gbq_attempt_counts GROUP BY outcome, reason")
    )
    return {(str(outcome), str(reason)): int(total) for outcome, reason, total in rows}


def by_state(counts: dict[tuple[str, str, str | None], int]) -> dict[str, int]:
    totals: dict[str, int] = defaultdict(int)
    for (_, state, _), count in counts.items():
        totals[state] += count
    return dict(totals)


def dead_by_reason(counts: dict[tuple[str, str, str | None], int]) -> dict[str, int]:
    totals: dict[str, int] = defaultdict(int)
    for (_, state, reason), count in counts.items():
        if state == "dead":
            totals[reason or ""] += count
    return dict(totals)


def fold_gone_shards(engine: Engine) -> int:
    """Fold the counters of backends that have gone into shard 0; returns how many of
    shard 0's counters that changed (PostgreSQL; SQLite has nothing to fold)."""
    if engine.dialect.name != "postgresql":
        return 0
    with engine.begin() as connection:
        folded = (
            connection.execute(FOLD_EVENTS).rowcount + connection.execute(FOLD_ATTEMPTS).rowcount
        )
        connection.execute(DROP_ZEROS)
    return int(folded)
