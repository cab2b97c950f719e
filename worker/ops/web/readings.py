"""What the console's pages show, read from the ledger (counters and indexes only, so a
page costs the same at a million rows) and Redis."""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from datetime import datetime

import redis

from producers.keys import INBOX_KEY, QUEUE
from producers.spool import Spool
from producers.untrusted import UnreadableError, load_json, printable
from worker.coordination.liveness import alive
from worker.coordination.ratelimit import RateLimiter
from worker.ledger import reads
from worker.ledger.deadletters import DeadLetters
from worker.ledger.models import AttemptRow, EventRow
from worker.ops.status import StatusReport, ledger_report, with_redis
from worker.rules.states import SENDABLE, EventState

BACKLOG_STATES = (*SENDABLE, EventState.WAITING)


@dataclass(frozen=True)
class Overview:
    status: StatusReport
    hour: reads.LastHour
    workers: list[tuple[str, float]]  # (process, seconds left on its heartbeat)
    in_redis: tuple[int, int] | None  # (published, not in the ledger yet; messages queued)
    redis_down: str = ""  # why the Redis figures are missing (the page is read-only then)


def overview(
    letters: DeadLetters, client: redis.Redis, limiter: RateLimiter, spool: Spool, now: datetime
) -> Overview:
    """The overview; with Redis down, the ledger's part and why the rest is missing."""
    ledger_only = ledger_report(letters.ledger.engine, spool, now)
    backlog_now = sum(ledger_only.events.get(state, 0) for state in BACKLOG_STATES)
    with letters.ledger.engine.connect() as connection:
        hour = reads.last_hour(connection, now, backlog_now)
    try:
        status = with_redis(ledger_only, client, limiter, now)
        pipe = client.pipeline(transaction=False)
        pipe.hlen(INBOX_KEY)
        pipe.llen(QUEUE)
        inbox, queued = pipe.execute()
        workers = alive(client)
    except (redis.RedisError, OSError) as error:
        why = f"Redis does not answer ({type(error).__name__})"
        breaker = {**ledger_only.breaker, "explanation": why}
        return Overview(replace(ledger_only, breaker=breaker), hour, [], None, why)
    return Overview(status, hour, workers, (int(inbox), int(queued)))


@dataclass(frozen=True)
class EventView:
    """One event as the console shows it: never parsed from raw bytes, always escaped by
    the page's templates."""

    row: EventRow
    content: str  # the event as indented JSON, or the raw bytes escaped (malformed)
    attempts: list[AttemptRow]
    blocked: list[str] = field(default_factory=list)  # what a dead paid event holds back


def event_view(letters: DeadLetters, event_id: str) -> EventView | None:
    event = letters.ledger.get(event_id)
    if event is None:
        return None
    blocked = [b.event_id for b in letters.blocked_by(event)] if event.state == "dead" else []
    return EventView(event, content_of(event), letters.ledger.attempts_of(event_id), blocked)


def content_of(row: EventRow) -> str:
    if row.kind == "malformed":
        raw = row.raw if row.raw is not None else row.payload.encode("utf-8", "surrogatepass")
        return printable(raw, 20_000)
    try:
        return json.dumps(load_json(row.payload), indent=2, ensure_ascii=False)
    except UnreadableError:
        return printable(row.payload, 20_000)


def customer_events(letters: DeadLetters, customer_id: str, limit: int = 200) -> list[EventRow]:
    """A customer's events, newest first."""
    return reads.customer_events(letters.ledger.engine, customer_id, limit)
