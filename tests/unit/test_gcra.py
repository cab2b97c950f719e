"""GCRA over Gameball's two windows: the arithmetic, with the clock passed in."""

from __future__ import annotations

import pytest

from worker.ratelimit import KEYS, RateLimits, gcra

SECOND = 1_000_000


def test_intervals_include_the_margin_and_skip_switched_off_windows() -> None:
    """30/s → one every (1 + 0.5)/30 s; 360/30 s → one every 30.5/360 s; 0 is off."""
    assert RateLimits(30, 360, 0.5).intervals_us() == [(KEYS[0], 50_000), (KEYS[1], 84_723)]
    assert RateLimits(0, 360, 0.0).intervals_us() == [(KEYS[1], 83_334)]  # rounded up
    assert RateLimits(0, 0).intervals_us() == []


@pytest.mark.parametrize(
    ("tats", "now", "allowed", "wait", "after"),
    [
        ((0, 0), 10 * SECOND, True, 0, (10 * SECOND + 50_000, 10 * SECOND + 84_722)),
        # the 30 s window is the tighter: wait for its slot
        ((10_050_000, 10_084_722), 10 * SECOND, False, 84_722, (10_050_000, 10_084_722)),
        # exactly on time: allowed
        ((10_050_000, 10_084_722), 10_084_722, True, 0, (10_134_722, 10_169_444)),
        # a long idle time does not bank a burst
        ((0, 0), 500 * SECOND, True, 0, (500 * SECOND + 50_000, 500 * SECOND + 84_722)),
    ],
)
def test_gcra_steps(
    tats: tuple[int, int], now: int, allowed: bool, wait: int, after: tuple[int, int]
) -> None:
    """Each row: a call at ``now`` against the stored schedule."""
    assert gcra(tats, (50_000, 84_722), now) == (allowed, wait, after)


def test_no_window_ever_holds_more_than_its_limit() -> None:
    """Greedy callers for 2 minutes: never over 30 in 1 s nor 360 in 30 s."""
    intervals = tuple(interval for _, interval in RateLimits(30, 360, 0.0).intervals_us())
    tats, now, sent = (0, 0), 0, []
    while now < 120 * SECOND:
        allowed, wait, tats = gcra(tats, intervals, now)
        if allowed:
            sent.append(now)
        else:
            now += wait
    for limit, window in ((30, SECOND), (360, 30 * SECOND)):
        start = 0
        for end, at in enumerate(sent):
            while sent[start] <= at - window:
                start += 1
            assert end - start + 1 <= limit
    assert len(sent) >= 12 * 120 - 1  # and the full sustained rate is used
