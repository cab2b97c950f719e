"""Gameball reads that take their resource's rate-limit turn, like writes (Gameball counts
reads against the same limits): settling an "already exists", ``gbq reconcile``.

Kept apart from ``ratelimit`` so that what only reads the limiter (``gbq status``, the
console) does not load the HTTP client.
"""

from __future__ import annotations

from worker.coordination.ratelimit import Permits, bucket_of
from worker.gameball.client import GameballReadError
from worker.gameball.records import Reader


class RateLimitedReadError(GameballReadError):
    """A read would wait longer than allowed for its bucket's permission: ask later."""


class PacedReader:
    """A read client whose every GET first takes its resource's permission (Gameball
    counts reads against the same limits as everyone else's)."""

    def __init__(self, reader: Reader, limiter: Permits, max_wait_s: float) -> None:
        self.reader, self.limiter, self.max_wait_s = reader, limiter, max_wait_s

    def get_json(self, path: str) -> tuple[int, object]:
        bucket = bucket_of("GET", path)
        allowed, wait_s = self.limiter.acquire(self.max_wait_s, bucket)
        if not allowed:
            raise RateLimitedReadError(f"the {bucket} rate limit is {wait_s:.1f}s ahead")
        status, body = self.reader.get_json(path)
        if status == 429:
            self.limiter.penalize(bucket=bucket)
        return status, body
