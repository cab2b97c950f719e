"""Gameball's rate limits as the sandbox enforces them: exact sliding windows.

Gameball counts each API resource on its own (rate-limiting.mdx): orders (any method),
transactions POST and transactions GET, 30 requests per second and 360 per 30 seconds each;
customers GET 100 and 1,200. Beyond that it answers 429, with no Retry-After. A refused
request does not use up the budget.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable


class SlidingWindowLimiter:
    """Allows at most ``limit`` requests per ``window_s`` seconds, per bucket."""

    def __init__(
        self, limit: int, window_s: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.limit = limit
        self.window_s = window_s
        self._clock = clock
        self._accepted: dict[str, deque[float]] = {}

    def has_room(self, bucket: str) -> bool:
        return len(self._trimmed(bucket)) < self.limit

    def record(self, bucket: str) -> None:
        self._trimmed(bucket).append(self._clock())

    def _trimmed(self, bucket: str) -> deque[float]:
        accepted = self._accepted.setdefault(bucket, deque())
        horizon = self._clock() - self.window_s
        while accepted and accepted[0] <= horizon:
            accepted.popleft()
        return accepted


class GameballRateLimits:
    """Both of Gameball's windows; a request passes only if every window has room."""

    def __init__(
        self, per_s: int, per_30s: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.per_s = per_s
        self.per_30s = per_30s
        self._windows = [
            SlidingWindowLimiter(limit, window_s, clock)
            for limit, window_s in ((per_s, 1.0), (per_30s, 30.0))
            if limit > 0  # 0 switches a window off
        ]

    def allow(self, bucket: str) -> bool:
        if not all(window.has_room(bucket) for window in self._windows):
            return False
        for window in self._windows:
            window.record(bucket)
        return True
