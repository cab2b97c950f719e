"""What happens to an event after an attempt: pure decisions over values.

Backoff is exponential with *full* jitter (AWS's "exponential backoff and jitter"):
``delay = uniform(0, min(cap, base × 2^(attempt−1)))``. A server-chosen delay (Retry-After)
is a floor with that jitter added on top, never below it (stacks#2298). Retries are
bounded by a time window measured from the first attempt; time spent paused (a bad key,
a disabled account) is credited back, so pauses do not spend the window.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime, timedelta

from worker.rules.outcomes import Outcome, OutcomeKind
from worker.rules.states import DeadReason, EventState


@dataclass(frozen=True)
class RetryPolicy:
    """The schedule's parameters (their defaults are the settings': ``GBQ_RETRY_*``)."""

    base_s: float
    cap_s: float
    window_s: float
    pause_delay_s: float


@dataclass(frozen=True)
class Transition:
    """The event's next state after an attempt, and the bookkeeping that goes with it."""

    state: EventState
    next_attempt_at: datetime | None = None
    dead_reason: DeadReason | None = None
    counts_as_attempt: bool = True
    window_credit_s: float = 0.0  # added to the event's credit (paused time)


def backoff_delay_s(
    attempt: int, policy: RetryPolicy, rng: random.Random, retry_after_s: float | None = None
) -> float:
    """Seconds until attempt ``attempt + 1``; ``attempt`` counts from 1."""
    ceiling = min(policy.cap_s, policy.base_s * 2 ** min(max(attempt - 1, 0), 62))
    jitter = rng.uniform(0, ceiling)
    return jitter if retry_after_s is None else retry_after_s + jitter


def window_end(first_attempt_at: datetime, credit_s: float, policy: RetryPolicy) -> datetime:
    return first_attempt_at + timedelta(seconds=policy.window_s + credit_s)


def after_attempt(
    outcome: Outcome,
    *,
    attempt: int,
    first_attempt_at: datetime,
    window_credit_s: float,
    now: datetime,
    policy: RetryPolicy,
    rng: random.Random,
) -> Transition:
    """Decide the event's next state from the outcome of attempt number ``attempt``."""
    if outcome.kind is OutcomeKind.DELIVERED:
        return Transition(EventState.DELIVERED)
    if outcome.kind is OutcomeKind.DEAD:
        return Transition(EventState.DEAD, dead_reason=DeadReason.REJECTED)
    if outcome.kind is OutcomeKind.PAUSED:
        # Gameball refuses everyone (bad key, disabled account): keep the budget.
        return Transition(
            EventState.SCHEDULED,
            next_attempt_at=now + timedelta(seconds=policy.pause_delay_s),
            counts_as_attempt=False,
            window_credit_s=policy.pause_delay_s,
        )
    # RETRY, or WAITING (Gameball does not know the order yet): back off, within the window.
    end = window_end(first_attempt_at, window_credit_s, policy)
    if now >= end:
        return Transition(EventState.DEAD, dead_reason=DeadReason.EXPIRED)
    delay = backoff_delay_s(attempt, policy, rng, outcome.retry_after_s)
    return Transition(
        EventState.SCHEDULED, next_attempt_at=min(now + timedelta(seconds=delay), end)
    )
