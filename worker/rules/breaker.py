"""The circuit breaker's state machine: pure, with the clock passed in.

    closed ──(N transient failures in a row, or ≥ min requests with ≥ rate failing
    │          within the window)──► open ──(cool-down)──► half-open: one probe
    │                                  ▲                      │ fails → open again
    │                                  └──────────────────────┘ succeeds → closed
    └──(401/403, account disabled, wrong URL: any state)──► paused: a probe every
                                                             cool-down; closes only on success

While open, half-open (except for the probe) or paused, no worker calls Gameball: events
are deferred to when the next probe may go, spending neither attempts nor retry window.
``worker.coordination.shared_breaker`` keeps one :class:`Breaker` in Redis for every worker
and host.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Final

from worker.rules.outcomes import Outcome, OutcomeKind, Reason


class State(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"
    PAUSED = "paused"


class Signal(StrEnum):
    SUCCESS = "success"  # Gameball answered as Gameball (accepted, or a business error)
    FAILURE = "failure"  # transient: 5xx, timeout, connection trouble
    PAUSE = "pause"  # Gameball refuses everyone
    NEUTRAL = "neutral"  # 429: the rate limiter's business, not the breaker's


_FAILURES = frozenset(
    {
        Reason.SERVER_ERROR,
        Reason.TIMEOUT,
        Reason.CONNECTION_ERROR,
        Reason.RESPONSE_LOST,
        Reason.UNEXPECTED_BODY,
        Reason.UNEXPECTED_ERROR,
        Reason.TRANSIENT_REJECTION,
    }
)


def signal_of(outcome: Outcome) -> Signal:
    if outcome.kind is OutcomeKind.PAUSED:
        return Signal.PAUSE
    if outcome.reason is Reason.RATE_LIMITED:
        return Signal.NEUTRAL
    if outcome.kind is OutcomeKind.RETRY and outcome.reason in _FAILURES:
        return Signal.FAILURE
    return Signal.SUCCESS


@dataclass(frozen=True)
class BreakerConfig:
    """The breaker's parameters (their defaults are the settings': ``GBQ_BREAKER_*``)."""

    min_requests: int
    failure_rate: float
    window_s: float
    consecutive_failures: int
    cooldown_s: float
    pause_cooldown_s: float
    probe_timeout_s: float  # a probe that never reports back frees the slot after this


@dataclass(frozen=True)
class Breaker:
    """The shared state. ``buckets`` holds (second, successes, failures) for the window."""

    state: State = State.CLOSED
    since: float = 0.0
    reason: str = ""
    consecutive: int = 0
    buckets: tuple[tuple[int, int, int], ...] = ()
    probe_until: float = 0.0

    def to_json(self) -> str:
        return json.dumps(
            {
                "state": self.state.value,
                "since": self.since,
                "reason": self.reason,
                "consecutive": self.consecutive,
                "buckets": self.buckets,
                "probe_until": self.probe_until,
            }
        )

    @classmethod
    def from_json(cls, raw: str | bytes | None) -> Breaker:
        if not raw:
            return cls()
        data = json.loads(raw)
        return cls(
            State(data["state"]),
            float(data["since"]),
            str(data["reason"]),
            int(data["consecutive"]),
            tuple(tuple(b) for b in data["buckets"]),
            float(data["probe_until"]),
        )


@dataclass(frozen=True)
class Admission:
    allowed: bool
    probe: bool = False
    retry_at: float = 0.0  # when to come back if not allowed (epoch seconds, breaker's clock)
    wait_s: float = 0.0  # the same as a wait: what other clocks can use


@dataclass(frozen=True)
class Change:
    """The new state and, when it changed, a line saying how and why (logged once)."""

    breaker: Breaker
    transition: str | None = field(default=None)


PROBE_BATCH: Final = 10  # due events sent per scheduler tick while the breaker holds calls back
WAKE_GRACE_S: Final = 3.0  # after closing, the probe that closed it sends the backlog


def due_batch(breaker: Breaker, batch: int, now: float) -> int:
    """How many due events the scheduler sends to the workers at once (``now`` on the
    breaker's clock).

    Closed: a whole batch. Otherwise only a few, enough for the next probe: the rest would
    only be deferred again. Sent round each cool-down, they went back into the queue batch
    by batch, each at the front, ahead of the one before it, and the backlog drained in no
    order once a probe succeeded. Left in the ledger, they are woken together by the probe
    that closes the breaker, which sends them oldest first (``worker.flows.delivery``); the
    scheduler takes whole batches again only after that, so that it does not send a
    second batch ahead of the probe's.
    """
    if breaker.state is State.CLOSED and now - breaker.since >= WAKE_GRACE_S:
        return batch
    return min(batch, PROBE_BATCH)


def admit(breaker: Breaker, now: float, config: BreakerConfig) -> tuple[Breaker, Admission]:
    """May a call go to Gameball now? Grants at most one probe at a time when not closed."""
    if breaker.state is State.CLOSED:
        return breaker, Admission(True)
    cooldown = config.pause_cooldown_s if breaker.state is State.PAUSED else config.cooldown_s
    ready_at = max(breaker.since + cooldown, breaker.probe_until)
    if breaker.state is State.HALF_OPEN:
        ready_at = breaker.probe_until
    if now < ready_at:
        # Come back after one cool-down at most, not at the probe's timeout: a probe
        # usually answers within a second, and callers deferred behind it are the oldest.
        retry_at = min(ready_at, now + cooldown)
        return breaker, Admission(False, retry_at=retry_at, wait_s=retry_at - now)
    state = State.PAUSED if breaker.state is State.PAUSED else State.HALF_OPEN
    probing = replace(breaker, state=state, probe_until=now + config.probe_timeout_s)
    return probing, Admission(True, probe=True)


def observe(
    breaker: Breaker,
    now: float,
    signal: Signal,
    config: BreakerConfig,
    *,
    detail: str = "",
    earlier_successes: int = 0,
) -> Change:
    """Fold one call's result into the state, after ``earlier_successes`` a process counted
    and had not written yet (they go in the current second's bucket)."""
    if earlier_successes and breaker.state is State.CLOSED:
        breaker = _count(breaker, now, config, failed=False, calls=earlier_successes)
    if signal is Signal.NEUTRAL:
        return Change(breaker)
    if signal is Signal.PAUSE:
        paused = Breaker(State.PAUSED, now, detail or "Gameball refuses the keys")
        if breaker.state is State.PAUSED and breaker.reason == paused.reason:
            return Change(replace(breaker, since=now, probe_until=0.0))
        return Change(paused, f"{breaker.state} -> paused: {paused.reason}")
    if signal is Signal.SUCCESS:
        if breaker.state is State.CLOSED:
            return Change(_count(breaker, now, config, failed=False))
        return Change(
            Breaker(State.CLOSED, now), f"{breaker.state} -> closed: a call to Gameball succeeded"
        )
    # FAILURE
    if breaker.state is State.HALF_OPEN:
        return Change(
            Breaker(State.OPEN, now, f"probe failed: {detail}"),
            f"half_open -> open: the probe failed ({detail})",
        )
    if breaker.state is not State.CLOSED:
        return Change(breaker)  # open or paused already; late failures change nothing
    counted = _count(breaker, now, config, failed=True)
    successes = sum(s for _, s, _ in counted.buckets)
    failures = sum(f for _, _, f in counted.buckets)
    total = successes + failures
    why = None
    if counted.consecutive >= config.consecutive_failures:
        why = f"{counted.consecutive} transient failures in a row (last: {detail})"
    elif total >= config.min_requests and failures / total >= config.failure_rate:
        why = f"{failures} of {total} calls failed within {config.window_s:g}s (last: {detail})"
    if why is None:
        return Change(counted)
    return Change(Breaker(State.OPEN, now, why), f"closed -> open: {why}")


def _count(
    breaker: Breaker, now: float, config: BreakerConfig, *, failed: bool, calls: int = 1
) -> Breaker:
    second = int(now)
    oldest = second - int(config.window_s) + 1
    buckets = {sec: (ok, bad) for sec, ok, bad in breaker.buckets if sec >= oldest}
    ok, bad = buckets.get(second, (0, 0))
    buckets[second] = (ok + (0 if failed else calls), bad + (calls if failed else 0))
    return replace(
        breaker,
        buckets=tuple(sorted((sec, ok, bad) for sec, (ok, bad) in buckets.items())),
        consecutive=breaker.consecutive + calls if failed else 0,
    )
