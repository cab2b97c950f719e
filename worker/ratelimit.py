"""The global rate limit toward Gameball: GCRA over both of its windows, atomic in Redis.

Gameball allows ``per_s`` calls per second and ``per_30s`` per 30 seconds and counts them
in windows. GCRA with no burst tolerance spaces calls ``(window + margin) / limit`` apart
for each window and sends only when both allow, so no window, anywhere in time, ever
holds more than its limit: even pacing, not bursts followed by 429s. The margin absorbs
network jitter at window edges. A 429 from Gameball pushes every sender back by
``penalty_s`` (the budget shrinks for a moment).

:func:`gcra` is the arithmetic, pure and table-tested; the Lua script does the same in
one atomic step on Redis, with Redis's clock unless one is given.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import redis

from worker.settings import Settings

KEYS = ("gbq:ratelimit:1s", "gbq:ratelimit:30s")
WAITS_KEY = "gbq:stats:rate_limit_waits"  # how often a worker had to wait (a metric)

_GCRA = """
local now = tonumber(ARGV[1])
if now == nil then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000000 + tonumber(t[2])
end
local wait = 0
local tats = {}
for i, key in ipairs(KEYS) do
  local tat = tonumber(redis.call('GET', key) or '0')
  if tat < now then tat = now end
  tats[i] = tat
  if tat - now > wait then wait = tat - now end
end
if wait > 0 then return {0, wait} end
for i, key in ipairs(KEYS) do
  local interval = tonumber(ARGV[i + 1])
  redis.call('SET', key, tats[i] + interval, 'PX', math.ceil((interval + 1000000) / 1000))
end
return {1, 0}
"""

_PENALTY = """
local now = tonumber(ARGV[1])
if now == nil then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000000 + tonumber(t[2])
end
local penalty = tonumber(ARGV[2])
for _, key in ipairs(KEYS) do
  local tat = tonumber(redis.call('GET', key) or '0')
  if tat < now then tat = now end
  redis.call('SET', key, tat + penalty, 'PX', math.ceil((penalty + 1000000) / 1000))
end
return 1
"""


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
    per_s: int = 30
    per_30s: int = 360
    margin_s: float = 0.5
    penalty_s: float = 1.0

    @classmethod
    def from_settings(cls, settings: Settings) -> RateLimits:
        return cls(
            settings.rate_limit_per_s,
            settings.rate_limit_per_30s,
            settings.rate_limit_margin_s,
            settings.rate_limit_penalty_s,
        )

    def intervals_us(self) -> list[tuple[str, int]]:
        """(key, spacing in µs) for each window that is switched on."""
        windows = ((KEYS[0], self.per_s, 1.0), (KEYS[1], self.per_30s, 30.0))
        # Rounded up: rounding down would fit one call too many into a window.
        return [
            (key, math.ceil((window + self.margin_s) / limit * 1_000_000))
            for key, limit, window in windows
            if limit > 0
        ]


class RateLimiter:
    """Hands out permission to call Gameball, shared by every worker through Redis."""

    def __init__(
        self,
        client: redis.Redis,
        limits: RateLimits,
        *,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.client, self.limits, self.sleep = client, limits, sleep
        self._windows = limits.intervals_us()
        self._gcra = client.register_script(_GCRA)
        self._penalty = client.register_script(_PENALTY)

    @property
    def enabled(self) -> bool:
        return bool(self._windows)

    def try_acquire(self, now_us: int | None = None) -> tuple[bool, float]:
        """One attempt: (allowed, seconds to wait before the next try)."""
        if not self._windows:
            return True, 0.0
        keys = [key for key, _ in self._windows]
        args = ["" if now_us is None else now_us, *[interval for _, interval in self._windows]]
        allowed, wait_us = self._gcra(keys=keys, args=args)
        return bool(allowed), int(wait_us) / 1_000_000

    def acquire(self, max_wait_s: float) -> tuple[bool, float]:
        """Wait up to ``max_wait_s`` for permission; else (False, how long until likely)."""
        deadline = time.monotonic() + max_wait_s
        waited = False
        while True:
            allowed, wait_s = self.try_acquire()
            if allowed:
                if waited:
                    self.client.incr(WAITS_KEY)
                return True, 0.0
            waited = True
            remaining = deadline - time.monotonic()
            if wait_s > remaining:
                self.client.incr(WAITS_KEY)
                return False, wait_s
            self.sleep(wait_s)  # waiting for a token: the rate limit's own pacing

    def penalize(self, now_us: int | None = None) -> None:
        """Gameball said 429: everyone holds back ``penalty_s``."""
        if self._windows and self.limits.penalty_s > 0:
            self._penalty(
                keys=[key for key, _ in self._windows],
                args=["" if now_us is None else now_us, round(self.limits.penalty_s * 1_000_000)],
            )

    def usage(self) -> dict[str, float]:
        """How far ahead each window's schedule runs, in seconds (for ``gbq status``)."""
        now_s, now_frac = self.client.time()
        now = now_s * 1_000_000 + now_frac
        result = {}
        for key, _ in self._windows:
            raw = self.client.get(key)
            result[key.rsplit(":", 1)[1]] = max(0, int(raw or 0) - now) / 1_000_000
        return result
