"""The operator's repair actions on dead letters, shared by ``gbq dlq`` and ``gbq web``:
retry (requeue in the ledger, then send) and replace with corrected events (purging is
``DeadLetters.purge``, which sends nothing). The ledger changes first; the send goes
through Redis. Should Redis fail after the ledger changed, nothing is lost: the
scheduler sends requeued events within ``GBQ_REDRIVE_AFTER_S``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

import redis

from producers.events import Event
from worker.coordination.queue import RedisQueue
from worker.ledger.deadletters import DeadLetters

BATCH = 200


@dataclass
class Repair:
    """What one action did."""

    retried: int = 0  # dead letters asked for and sent again
    released: int = 0  # refunds and cancels a retried paid event had blocked
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (event_id, why)
    recovered: list[tuple[str, str]] = field(default_factory=list)  # (malformed, event id)
    redis_error: str | None = None  # the ledger changed; the scheduler sends them later

    def summary(self) -> str:
        text = f"retried {self.retried} dead letter(s)"
        if self.released:
            text += f", released {self.released} blocked event(s)"
        if self.skipped:
            text += f", skipped {len(self.skipped)}"
        if self.redis_error:
            text += (
                f"; Redis failed ({self.redis_error}): the scheduler sends them within "
                "GBQ_REDRIVE_AFTER_S"
            )
        return text


def retry(
    letters: DeadLetters,
    queue: RedisQueue,
    event_ids: Sequence[str],
    progress: Callable[[int], None] = lambda _: None,
) -> Repair:
    """Requeue dead letters with their ids (a paid one releases what it blocked), in
    batches, and send them; ``progress`` is told each batch's size."""
    repair = Repair()
    for start in range(0, len(event_ids), BATCH):
        batch = event_ids[start : start + BATCH]
        result = letters.requeue(batch, datetime.now(UTC))
        _send(queue, result.to_send, repair)
        repair.retried += len(result.requeued) + len(result.recovered)
        repair.released += len(result.released)
        repair.skipped += result.skipped
        repair.recovered += result.recovered
        progress(len(batch))
    return repair


def replace(letters: DeadLetters, queue: RedisQueue, events: Sequence[Event]) -> Repair:
    """Corrected events in place of the dead letters with their ids, then sent."""
    result = letters.replace(events, datetime.now(UTC))
    repair = Repair(
        retried=len(result.requeued),
        released=len(result.released),
        skipped=list(result.skipped),
        recovered=list(result.recovered),
    )
    _send(queue, result.to_send, repair)
    return repair


def _send(queue: RedisQueue, event_ids: list[str], repair: Repair) -> None:
    if not event_ids or repair.redis_error:
        return
    try:
        queue.enqueue(event_ids)
    except redis.RedisError as error:
        repair.redis_error = str(error)
