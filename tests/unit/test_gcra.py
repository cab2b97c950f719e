"""GCRA over Gameball's two windows, one bucket per resource: the arithmetic, with the
clock passed in, and which bucket a call counts against."""

from __future__ import annotations

import pytest

from worker.coordination.ratelimit import Bucket, RateLimits, bucket_of, gcra, keys_of
from worker.settings import Settings

SECOND = 1_000_000
KEYS = keys_of("orders")


def test_intervals_include_the_margin_and_skip_switched_off_windows() -> None:
    """30/s → one every (1 + 0.5)/30 s; 360/30 s → one every 30.5/360 s; 0 is off."""
    assert RateLimits(30, 360, 0.5, 1.0).intervals_us() == [(KEYS[0], 50_000), (KEYS[1], 84_723)]
    assert RateLimits(0, 360, 0.0, 1.0).intervals_us() == [(KEYS[1], 83_334)]  # rounded up
    assert RateLimits(0, 0, 0.5, 1.0).intervals_us() == []


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
    intervals = tuple(interval for _, interval in RateLimits(30, 360, 0.0, 1.0).intervals_us())
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


@pytest.mark.parametrize(
    ("method", "path", "bucket"),
    [
        ("POST", "/api/v4.1/integrations/orders", "orders"),
        ("POST", "/api/v3.0/integrations/order", "orders"),
        ("GET", "/api/v4.1/integrations/orders/O-1/transactions", "orders"),
        ("GET", "/api/v3.0/Integrations/order/O-1/transactions", "orders"),
        ("POST", "/api/v4.1/integrations/transactions/refund", "transactions_post"),
        ("POST", "/api/v4.0/integrations/transactions/cashback", "transactions_post"),
        ("POST", "/api/v3.0/integrations/transaction/refund", "transactions_post"),
        ("GET", "/api/v4.1/integrations/transactions?customerId=c&limit=200", "transactions_get"),
        ("GET", "/api/v3.0/integrations/transaction/list?transactionId=t", "transactions_get"),
        ("GET", "/api/v4.1/integrations/customers/c/balance", "customers_get"),
        ("GET", "/api/v3.0/integrations/player/c/balance", "customers_get"),
        ("POST", "/api/v4.1/integrations/customers", "others"),
    ],
)
def test_each_call_counts_against_its_documented_resource(
    method: str, path: str, bucket: Bucket
) -> None:
    """rate-limiting.mdx: orders, transactions POST, transactions GET, customers GET."""
    assert bucket_of(method, path) == bucket


def test_the_settings_set_the_30_per_second_resources_and_scale_the_others() -> None:
    """Defaults are the documented limits; customers GET is 100/1200 and scales with them."""
    limits = RateLimits.from_settings(Settings.model_construct())
    assert [limits.of(b) for b in ("orders", "transactions_post", "transactions_get")] == [
        (30, 360)
    ] * 3
    assert limits.of("customers_get") == (100, 1200)
    assert RateLimits(15, 180, 0.5, 1.0).of("customers_get") == (50, 600)
    assert RateLimits(0, 0, 0.5, 1.0).of("customers_get") == (0, 0)
    assert RateLimits(30, 360, 0.5, 1.0).intervals_us("customers_get") == [
        ("gbq:ratelimit:customers_get:1s", 15_000),
        ("gbq:ratelimit:customers_get:30s", 25_417),
    ]
