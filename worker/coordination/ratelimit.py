"""The rate limits toward Gameball: one bucket per documented resource, GCRA over both of
its windows, atomic in Redis and shared by every worker.

Gameball limits each API resource on its own (rate-limiting.mdx): orders, transactions
POST, transactions GET, 30 per second and 360 per 30 seconds each; customers GET 100 and
1,200. Calls are counted in windows. GCRA with no burst tolerance spaces a bucket's calls
``(window + margin) / limit`` apart for each window and sends only when both allow, so no
window, anywhere in time, ever holds more than its limit: even pacing, not bursts followed
by 429s. The margin absorbs network jitter at window edges. A 429 from Gameball pushes
every sender of that bucket back by ``penalty_s`` (the budget shrinks for a moment).

:func:`gcra` is the arithmetic and :func:`bucket_of` the resource of a call, both pure and
table-tested; the Lua script does the same in one atomic step on Redis, with Redis's clock
unless one is given. Reads (Gameball's records, balances) take their bucket's permission
too, through ``worker.coordination.paced_reads.PacedReader``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final, Literal, Protocol, TypeAlias

import redis

from producers.keys import RATE_LIMIT_PREFIX, RATE_LIMIT_WAITS_KEY
from producers.lua import script
from worker.settings import Settings

Bucket: TypeAlias = Literal[
    "orders", "transactions_post", "transactions_get", "customers_get", "others"
]
# Each resource's documented limits (rate-limiting.mdx): per second, per 30 seconds.
DOCUMENTED: Final[dict[Bucket, tuple[int, int]]] = {
    "orders": (30, 360),  # Orders (Tracking), any method: orders and their transactions
    "transactions_post": (30, 360),  # refunds, cashback, holds, redeem
    "transactions_get": (30, 360),  # the transaction lists
    "customers_get": (100, 1200),  # balances
    "others": (30, 360),
}
BASE_LIMITS: Final = DOCUMENTED["orders"]  # what GBQ_RATE_LIMIT_PER_S / _PER_30S set


def bucket_of(method: str, path: str) -> Bucket:
    """The resource Gameball counts a call against, from its method and path (any API
    version: v3.0 writes ``order``, ``transaction``, ``player``)."""
    rest = path.split("?", 1)[0].lower().split("/integrations/", 1)[-1]
    resource = rest.strip("/").split("/", 1)[0]
    if resource in ("order", "orders"):
        return "orders"
    if resource in ("transaction", "transactions"):
        return "transactions_get" if method.upper() == "GET" else "transactions_post"
    if resource in ("player", "customers") and method.upper() == "GET":
        return "customers_get"
    return "others"


def keys_of(bucket: Bucket) -> tuple[str, str]:
    """The Redis keys of a bucket's two windows."""
    return (f"{RATE_LIMIT_PREFIX}{bucket}:1s", f"{RATE_LIMIT_PREFIX}{bucket}:30s")


_GCRA = script("worker.coordination", "gcra")

_PENALTY = script("worker.coordination", "penalty")


def gcra(
    tats: Sequence[int], intervals: Sequence[int], now: int
) -> tuple[bool, int, tuple[int, ...]]:
    """One GCRA step over several limits (times in microseconds).

    Returns (allowed, wait before trying again, the new theoretical arrival times).
    """
    current = [max(tat, now) for tat in tats]
    wait = max((tat - now for tat in current), default=0)
    if wait > 0:
        return False, wait, tuple(current)
    return True, 0, tuple(tat + interval for tat, interval in zip(current, intervals, strict=True))


@dataclass(frozen=True)
class RateLimits:
    """The limits of the 30-per-second resources (orders, transactions); the others scale
    with them (customers GET: 100/30 of them), so one setting slows or stops them all."""

    per_s: int  # the defaults are the settings' (GBQ_RATE_LIMIT_*): Gameball's own limits
    per_30s: int
    margin_s: float
    penalty_s: float

    @classmethod
    def from_settings(cls, settings: Settings) -> RateLimits:
        return cls(
            settings.rate_limit_per_s,
            settings.rate_limit_per_30s,
            settings.rate_limit_margin_s,
            settings.rate_limit_penalty_s,
        )

    def of(self, bucket: Bucket) -> tuple[int, int]:
        """A bucket's (per second, per 30 seconds), 0 meaning off."""
        documented_s, documented_30s = DOCUMENTED[bucket]
        return (
            self.per_s * documented_s // BASE_LIMITS[0],
            self.per_30s * documented_30s // BASE_LIMITS[1],
        )

    def intervals_us(self, bucket: Bucket = "orders") -> list[tuple[str, int]]:
        """(key, spacing in µs) for each of the bucket's windows that is switched on."""
        per_s, per_30s = self.of(bucket)
        key_1s, key_30s = keys_of(bucket)
        windows = ((key_1s, per_s, 1.0), (key_30s, per_30s, 30.0))
        # Rounded up: rounding down would fit one call too many into a window.
        return [
            (key, math.ceil((window + self.margin_s) / limit * 1_000_000))
            for key, limit, window in windows
            if limit > 0
        ]


class RateLimiter:
    """Hands out permission to call Gameball, per resource, shared by every worker through
    Redis."""

    def __init__(
        self,
        client: redis.Redis,
        limits: RateLimits,
        *,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.client, self.limits, self.sleep = client, limits, sleep
        self._windows = {bucket: limits.intervals_us(bucket) for bucket in DOCUMENTED}
        self._gcra = client.register_script(_GCRA)
        self._penalty = client.register_script(_PENALTY)

    @property
    def enabled(self) -> bool:
        return any(self._windows.values())

    def try_acquire(
        self, now_us: int | None = None, bucket: Bucket = "orders"
    ) -> tuple[bool, float]:
        """One attempt: (allowed, seconds to wait before the next try)."""
        windows = self._windows[bucket]
        if not windows:
            return True, 0.0
        keys = [key for key, _ in windows]
        args = ["" if now_us is None else now_us, *[interval for _, interval in windows]]
        allowed, wait_us = self._gcra(keys=keys, args=args)
        return bool(allowed), int(wait_us) / 1_000_000

    def acquire(self, max_wait_s: float, bucket: Bucket = "orders") -> tuple[bool, float]:
        """Wait up to ``max_wait_s`` for permission; else (False, how long until likely)."""
        deadline = time.monotonic() + max_wait_s
        waited = False
        while True:
            allowed, wait_s = self.try_acquire(bucket=bucket)
            if allowed:
                if waited:
                    self.client.incr(RATE_LIMIT_WAITS_KEY)
                return True, 0.0
            waited = True
            remaining = deadline - time.monotonic()
            if wait_s > remaining:
                self.client.incr(RATE_LIMIT_WAITS_KEY)
                return False, wait_s
            self.sleep(wait_s)  # waiting for a token: the rate limit's own pacing

    def penalize(self, now_us: int | None = None, bucket: Bucket = "orders") -> None:
        """Gameball said 429 to a call of ``bucket``: its senders hold back ``penalty_s``."""
        windows = self._windows[bucket]
        if windows and self.limits.penalty_s > 0:
            self._penalty(
                keys=[key for key, _ in windows],
                args=["" if now_us is None else now_us, round(self.limits.penalty_s * 1_000_000)],
            )

    def usage(self) -> dict[str, float]:
        """How far ahead each window's schedule runs, in seconds, for the buckets gbq
        writes through (``gbq status``): ``orders 1s``, ``transactions_post 30s``, …"""
        now_s, now_frac = self.client.time()
        now = now_s * 1_000_000 + now_frac
        shown = [(b, w) for b in ("orders", "transactions_post") for w in self._windows[b]]
        values = self.client.mget([key for _, (key, _) in shown]) if shown else []
        return {
            f"{bucket} {key.rsplit(':', 1)[1]}": max(0, int(raw or 0) - now) / 1_000_000
            for (bucket, (key, _)), raw in zip(shown, values, strict=True)
        }


class Permits(Protocol):
    """What a sender needs of the rate limit (:class:`RateLimiter`, or a test's own)."""

    def acquire(self, max_wait_s: float, bucket: Bucket = "orders") -> tuple[bool, float]: ...
    def penalize(self, now_us: int | None = None, bucket: Bucket = "orders") -> None: ...
