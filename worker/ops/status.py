"""What ``gbq status`` reports: the ledger, the breaker, the rate limit, the scheduler."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import redis
from sqlalchemy import Engine

from producers.keys import BREAKER_KEY, INBOX_KEPT_KEY, QUARANTINE_KEY
from producers.spool import Spool
from producers.spool_report import reports as spool_reports
from worker.coordination.leader import LeaderLock
from worker.coordination.ratelimit import RateLimiter
from worker.ledger.counters import by_state, dead_by_reason, event_counts
from worker.ledger.status_reads import (
    conflicted,
    delivered_since,
    oldest_created,
    unresolved_redemptions,
)
from worker.rules.breaker import Breaker, State
from worker.rules.states import SENDABLE, EventState
from worker.rules.timespec import age_s

_HINTS = {
    "unauthorized": "Gameball refuses the keys or the API version: check "
    "GBQ_GAMEBALL_API_KEY and GBQ_GAMEBALL_SECRET_KEY (test vs live key?); if the account "
    "sets a minimum API version in Gameball's dashboard, set GBQ_GAMEBALL_API_VERSION=v4.1; "
    "then restart the workers",
    "account_disabled": "the Gameball account or its cashback program is disabled: "
    "re-enable it in Gameball's dashboard",
    "misconfigured_endpoint": "the URL does not answer like Gameball: check "
    "GBQ_GAMEBALL_BASE_URL and GBQ_GAMEBALL_API_VERSION",
}


def explain(breaker: Breaker) -> str:
    """A sentence an operator can act on."""
    if breaker.state is State.CLOSED:
        return "calls to Gameball flow normally"
    if breaker.state is State.PAUSED:
        cause = breaker.reason.split(":", 1)[0]
        hint = _HINTS.get(cause, "Gameball refuses every call")
        return f"delivery paused: {breaker.reason}. {hint}. Events keep their retry budget."
    return (
        f"Gameball is failing ({breaker.reason}); calls are held back and one probe "
        f"goes through every cool-down. Events keep their retry budget."
    )


@dataclass
class StatusReport:
    events: dict[str, int]
    oldest_sendable_age_s: float | None  # pending, in flight or retrying: can go now
    oldest_waiting_age_s: float | None  # waiting for an earlier event of its order
    dead_by_reason: dict[str, int]
    delivered_last_minute: int
    breaker: dict[str, Any]
    rate_limit_backlog_s: dict[str, float]
    scheduler_leader: str | None
    spooled_here: int
    # Every host's spool that holds events, as its relayer last reported it: host, path,
    # count, oldest_age_s (the oldest waiting event), seen_age_s (when it was reported).
    spools: list[dict[str, Any]] = field(default_factory=list)
    conflicts: int = 0  # events re-published with other content (the first is kept)
    quarantined: int = 0  # poison found, not yet a dead letter (the scheduler moves it)
    parked_redemptions: int = 0  # redeemed points the operator settles (gbq redemptions)
    inbox_kept: int = 0  # GBQ_LEDGER_STANDBYS: ingested, kept until the standbys have them

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def spool_readings(client: redis.Redis, now: datetime) -> list[dict[str, Any]]:
    """Each host's spool that holds events (``producers.spool_report``)."""
    epoch = now.timestamp()
    return [
        {
            "host": found.host,
            "path": found.path,
            "count": found.count,
            "oldest_age_s": found.oldest_age_s(epoch),
            "seen_age_s": max(0.0, epoch - found.seen_at),
        }
        for found in spool_reports(client)
    ]


def collect(
    engine: Engine,
    client: redis.Redis,
    limiter: RateLimiter,
    spool: Spool,
    now: datetime | None = None,
) -> StatusReport:
    """The whole report: the ledger's figures, then Redis's (RedisError if it fails)."""
    now = now or datetime.now(UTC)
    return with_redis(ledger_report(engine, spool, now), client, limiter, now)


def with_redis(
    report: StatusReport, client: redis.Redis, limiter: RateLimiter, now: datetime
) -> StatusReport:
    """``report`` with what Redis says: the breaker, the rate limit, the scheduler's lock,
    every host's spool, the quarantine, the kept inbox (RedisError if it does not answer)."""
    breaker = Breaker.from_json(client.get(BREAKER_KEY))
    return replace(
        report,
        breaker={
            "state": breaker.state.value,
            "reason": breaker.reason,
            "since": (
                datetime.fromtimestamp(breaker.since, UTC).isoformat() if breaker.since else None
            ),
            "explanation": explain(breaker),
        },
        rate_limit_backlog_s=limiter.usage(),
        scheduler_leader=LeaderLock(client, "status", 1).leader(),
        spools=spool_readings(client, now),
        quarantined=int(client.llen(QUARANTINE_KEY)),
        inbox_kept=int(client.zcard(INBOX_KEPT_KEY)),
    )


def ledger_report(engine: Engine, spool: Spool, now: datetime) -> StatusReport:
    """What the ledger (and this host's spool) say alone; the Redis figures left empty
    (``with_redis`` adds them)."""
    with engine.begin() as connection:
        oldest_sendable, oldest_waiting = (
            connection.execute(oldest_created(states)).scalar()
            for states in (SENDABLE, (EventState.WAITING,))
        )
        counts = event_counts(connection)
        recent = delivered_since(connection, now - timedelta(minutes=1))
        conflicts = conflicted(connection)
        parked = unresolved_redemptions(connection)
    return StatusReport(
        events=by_state(counts),
        oldest_sendable_age_s=None if oldest_sendable is None else age_s(oldest_sendable, now),
        oldest_waiting_age_s=None if oldest_waiting is None else age_s(oldest_waiting, now),
        dead_by_reason=dead_by_reason(counts),
        delivered_last_minute=int(recent or 0),
        breaker={"state": "unknown", "reason": "", "since": None, "explanation": ""},
        rate_limit_backlog_s={},
        scheduler_leader=None,
        spooled_here=spool.count(),
        conflicts=int(conflicts or 0),
        parked_redemptions=parked,
    )
