"""The retry policy: backoff with full jitter, Retry-After as a floor, the time window."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from worker.rules.outcomes import Outcome, OutcomeKind, Reason
from worker.rules.retry import RetryPolicy, Transition, after_attempt, backoff_delay_s
from worker.rules.states import DeadReason, EventState

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
POLICY = RetryPolicy(base_s=1, cap_s=600, window_s=72 * 3600, pause_delay_s=30)


class Top(random.Random):
    """Always draws the top of the range, to see the ceiling."""

    def uniform(self, a: float, b: float) -> float:
        return b


def outcome(
    kind: OutcomeKind, reason: Reason = Reason.SERVER_ERROR, retry_after_s: float | None = None
) -> Outcome:
    return Outcome(kind, reason, "msg", retry_after_s=retry_after_s)


@pytest.mark.parametrize(
    ("attempt", "ceiling"),
    [(1, 1), (2, 2), (3, 4), (10, 512), (11, 600), (50, 600), (10_000, 600)],
)
def test_backoff_ceiling_doubles_up_to_the_cap(attempt: int, ceiling: float) -> None:
    """base × 2^(n−1), capped; huge attempt numbers do not overflow."""
    assert backoff_delay_s(attempt, POLICY, Top()) == ceiling


@given(st.integers(1, 100), st.none() | st.floats(0, 3600), st.integers(0, 2**32))
def test_delay_is_full_jitter_above_any_server_floor(
    attempt: int, retry_after: float | None, seed: int
) -> None:
    """Delay ∈ [floor, floor + min(cap, base·2^(n−1))]; never below a Retry-After."""
    delay = backoff_delay_s(attempt, POLICY, random.Random(seed), retry_after)
    floor = retry_after or 0.0
    assert floor <= delay <= floor + min(600, 2 ** (attempt - 1))


def decide(
    kind: OutcomeKind,
    *,
    first: datetime = NOW,
    credit: float = 0.0,
    retry_after_s: float | None = None,
) -> Transition:
    return after_attempt(
        outcome(kind, retry_after_s=retry_after_s),
        attempt=3,
        first_attempt_at=first,
        window_credit_s=credit,
        now=NOW,
        policy=POLICY,
        rng=Top(),
    )


def test_delivered_and_dead() -> None:
    """2xx-like outcomes settle as delivered; permanent ones die as rejected."""
    assert decide(OutcomeKind.DELIVERED) == Transition(EventState.DELIVERED)
    assert decide(OutcomeKind.DEAD) == Transition(EventState.DEAD, dead_reason=DeadReason.REJECTED)


def test_retry_is_scheduled_by_backoff() -> None:
    """A transient failure comes back after the backoff (here its ceiling, 4 s)."""
    transition = decide(OutcomeKind.RETRY)
    assert (transition.state, transition.next_attempt_at) == (
        EventState.SCHEDULED,
        NOW + timedelta(seconds=4),
    )
    assert transition.counts_as_attempt


def test_retry_after_is_a_floor_with_jitter_on_top() -> None:
    """Retry-After 30 s with attempt 3: 30 + up to 4 s."""
    transition = decide(OutcomeKind.RETRY, retry_after_s=30)
    assert transition.next_attempt_at == NOW + timedelta(seconds=34)


def test_waiting_for_the_predecessor_backs_off_too() -> None:
    """Gameball does not know the order yet: try again later, within the window."""
    assert decide(OutcomeKind.WAITING).state is EventState.SCHEDULED


def test_paused_keeps_the_budget() -> None:
    """A pause neither counts as an attempt nor spends the window."""
    transition = decide(OutcomeKind.PAUSED)
    assert transition == Transition(
        EventState.SCHEDULED,
        NOW + timedelta(seconds=30),
        counts_as_attempt=False,
        window_credit_s=30,
    )


def test_window_exhausted_is_dead_expired() -> None:
    """72 h after the first attempt, a failure is final."""
    first = NOW - timedelta(hours=72)
    assert decide(OutcomeKind.RETRY, first=first) == Transition(
        EventState.DEAD, dead_reason=DeadReason.EXPIRED
    )


def test_paused_time_extends_the_window() -> None:
    """An hour paused gives an hour more."""
    first = NOW - timedelta(hours=72, minutes=30)
    assert decide(OutcomeKind.RETRY, first=first, credit=3600).state is EventState.SCHEDULED


def test_last_retry_is_not_scheduled_past_the_window() -> None:
    """The next attempt is capped at the window's end, so the final try happens."""
    first = NOW - timedelta(hours=72) + timedelta(seconds=1)
    transition = decide(OutcomeKind.RETRY, first=first)
    assert transition.next_attempt_at == NOW + timedelta(seconds=1)
