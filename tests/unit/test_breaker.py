"""The circuit breaker's transitions, with the clock passed in."""

from __future__ import annotations

from dataclasses import replace

import pytest

from worker.rules.breaker import (
    WAKE_GRACE_S,
    Breaker,
    BreakerConfig,
    Signal,
    State,
    admit,
    due_batch,
    observe,
    signal_of,
)
from worker.rules.outcomes import Outcome, OutcomeKind, Reason

CONFIG = BreakerConfig(
    min_requests=10,
    failure_rate=0.7,
    window_s=60,
    consecutive_failures=5,
    cooldown_s=30,
    pause_cooldown_s=20,
    probe_timeout_s=10,
)


def run(signals: list[Signal], start: float = 1000.0, step: float = 1.0) -> Breaker:
    breaker = Breaker()
    for n, signal in enumerate(signals):
        breaker = observe(breaker, start + n * step, signal, CONFIG, detail="x").breaker
    return breaker


S, F = Signal.SUCCESS, Signal.FAILURE


@pytest.mark.parametrize(
    ("signals", "state"),
    [
        ([F] * 4, State.CLOSED),  # four failures in a row: not yet
        ([F] * 5, State.OPEN),  # the fifth opens it
        ([F, F, F, F, S, F, F, F, F], State.CLOSED),  # a success breaks the run
        ([S, F, F, S, F, F, S, F, F, F], State.OPEN),  # 7 of 10: 70% is enough to open
        ([S, F, F, S, F, F, S, F, S, F], State.CLOSED),  # 6 of 10 failed: 60%, stays closed
        ([F, F, S, F, F, F, S, F, F, F], State.OPEN),  # 8 of 10 failed: rate over 70%
        ([S] * 3 + [F, F, S] * 2, State.CLOSED),  # under min_requests' worth of failures
        ([Signal.NEUTRAL] * 20, State.CLOSED),  # 429s are the limiter's business
    ],
)
def test_opening(signals: list[Signal], state: State) -> None:
    """A run of failures, or a failure rate over the window, opens the breaker."""
    assert run(signals).state is state


def test_old_failures_leave_the_window() -> None:
    """Failures older than the window no longer count towards the rate."""
    breaker = run([F, F, S, F, F, S, F, F], start=1000, step=1)
    breaker = observe(breaker, 1000 + 120, F, CONFIG).breaker  # two minutes later
    assert breaker.state is State.CLOSED
    assert sum(b[2] for b in breaker.buckets) == 1


def test_open_admits_nothing_until_the_cooldown_then_one_probe() -> None:
    """Open: calls wait for the cool-down; then exactly one probe at a time."""
    opened = run([F] * 5)
    assert opened.since == 1004
    _, denied = admit(opened, 1020, CONFIG)
    assert (denied.allowed, denied.retry_at) == (False, 1034)
    probing, first = admit(opened, 1034, CONFIG)
    assert (first.allowed, first.probe, probing.state) == (True, True, State.HALF_OPEN)
    _, second = admit(probing, 1035, CONFIG)
    assert (second.allowed, second.retry_at) == (False, 1044)  # the probe's timeout is sooner
    _, later = admit(replace(probing, probe_until=1100), 1035, CONFIG)
    assert later.retry_at == 1065  # never more than one cool-down behind a probe
    _, after_timeout = admit(probing, 1044, CONFIG)
    assert after_timeout.probe  # a vanished probe frees the slot


def test_probe_success_closes_and_failure_reopens() -> None:
    """Half-open: the probe decides."""
    probing, _ = admit(run([F] * 5), 1034, CONFIG)
    closed = observe(probing, 1035, S, CONFIG)
    assert (closed.breaker.state, closed.transition) == (
        State.CLOSED,
        "half_open -> closed: a call to Gameball succeeded",
    )
    reopened = observe(probing, 1035, F, CONFIG, detail="timeout")
    assert (reopened.breaker.state, reopened.breaker.since) == (State.OPEN, 1035)
    assert reopened.transition == "half_open -> open: the probe failed (timeout)"


def test_pause_from_any_state_and_only_a_success_closes_it() -> None:
    """401/403 or a disabled account pause delivery until a probe succeeds."""
    paused = observe(Breaker(), 1000, Signal.PAUSE, CONFIG, detail="unauthorized: Invalid APIKey")
    assert paused.breaker.state is State.PAUSED
    assert paused.transition == "closed -> paused: unauthorized: Invalid APIKey"
    # failures do not close it, nor does time
    assert observe(paused.breaker, 1001, F, CONFIG).breaker.state is State.PAUSED
    _, waiting = admit(paused.breaker, 1010, CONFIG)
    assert (waiting.allowed, waiting.retry_at) == (False, 1020)
    probing, probe = admit(paused.breaker, 1020, CONFIG)
    assert probe.probe
    assert probing.state is State.PAUSED
    # the probe is refused again: still paused, counted from now, logged only once
    again = observe(probing, 1021, Signal.PAUSE, CONFIG, detail="unauthorized: Invalid APIKey")
    assert (again.breaker.state, again.breaker.since, again.transition) == (
        State.PAUSED,
        1021,
        None,
    )
    assert observe(probing, 1021, S, CONFIG).breaker.state is State.CLOSED


def test_state_round_trips_through_json() -> None:
    """What one worker writes, another reads back the same."""
    breaker = run([S, F, F])
    assert Breaker.from_json(breaker.to_json()) == breaker
    assert Breaker.from_json(None) == Breaker()


@pytest.mark.parametrize(
    ("kind", "reason", "signal"),
    [
        (OutcomeKind.DELIVERED, Reason.ACCEPTED, Signal.SUCCESS),
        (OutcomeKind.DEAD, Reason.REJECTED, Signal.SUCCESS),  # Gameball answered
        (OutcomeKind.WAITING, Reason.PREDECESSOR_MISSING, Signal.SUCCESS),
        (OutcomeKind.RETRY, Reason.SERVER_ERROR, Signal.FAILURE),
        (OutcomeKind.RETRY, Reason.TIMEOUT, Signal.FAILURE),
        (OutcomeKind.RETRY, Reason.RESPONSE_LOST, Signal.FAILURE),
        (OutcomeKind.RETRY, Reason.RATE_LIMITED, Signal.NEUTRAL),
        (OutcomeKind.PAUSED, Reason.UNAUTHORIZED, Signal.PAUSE),
        (OutcomeKind.PAUSED, Reason.ACCOUNT_DISABLED, Signal.PAUSE),
    ],
)
def test_signal_of_outcomes(kind: OutcomeKind, reason: Reason, signal: Signal) -> None:
    """What each outcome tells the breaker."""
    assert signal_of(Outcome(kind, reason, "m")) is signal


@pytest.mark.parametrize(
    ("breaker", "now", "batch"),
    [
        (Breaker(), 1000.0, 500),  # closed long ago: a whole batch
        (Breaker(State.CLOSED, since=1000.0), 1000.0 + WAKE_GRACE_S, 500),
        (Breaker(State.CLOSED, since=1000.0), 1001.0, 10),  # just closed: the probe's wake
        (Breaker(State.OPEN, since=1000.0), 5000.0, 10),  # held back: a few, for the probe
        (Breaker(State.HALF_OPEN, since=1000.0), 5000.0, 10),
        (Breaker(State.PAUSED, since=1000.0), 5000.0, 10),
    ],
)
def test_the_scheduler_sends_a_batch_only_while_the_breaker_is_closed(
    breaker: Breaker, now: float, batch: int
) -> None:
    assert due_batch(breaker, 500, now) == batch
    assert due_batch(breaker, 3, now) == 3  # never more than asked
