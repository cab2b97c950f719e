"""One leader among schedulers: a Redis lock with an expiry, renewed by its holder and
taken over when it lapses (``gbq:scheduler:leader``)."""

from __future__ import annotations

import redis

from producers.keys import LEADER_KEY
from producers.lua import script

_HOLD = script("worker.coordination", "leader_hold")
_RELEASE = script("worker.coordination", "leader_release")


class LeaderLock:
    """A Redis lock with an expiry, renewed by its holder and taken over when it lapses."""

    def __init__(self, client: redis.Redis, owner: str, ttl_s: float) -> None:
        self.client, self.owner, self.ttl_ms = client, owner, max(1, int(ttl_s * 1000))

    def hold(self) -> bool:
        return bool(self.client.eval(_HOLD, 1, LEADER_KEY, self.owner, self.ttl_ms))

    def release(self) -> None:
        self.client.eval(_RELEASE, 1, LEADER_KEY, self.owner)

    def leader(self) -> str | None:
        value = self.client.get(LEADER_KEY)
        return value.decode() if isinstance(value, bytes) else value
