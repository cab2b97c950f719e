"""Scheduler liveness: each scheduler says in Redis that its loop runs (leading or standing
by), and the leader when it last finished a tick, so that metrics, alerts and a container's
health check see a scheduler that is alive rather than one whose database answers.

- ``SchedulerBeat.beat``: once per loop turn, ``gbq:scheduler:alive:<owner>`` with a TTL of
  three ticks (its host, pid and role), and when it ticked, ``gbq:scheduler:ticked``;
- ``schedulers``: the schedulers beating now;
- ``last_tick_age_s``: seconds since the leader last finished a tick, by Redis's clock.
"""

from __future__ import annotations

import itertools
import json
import os
import socket
from dataclasses import dataclass

import redis

from producers.keys import LEADER_KEY, SCHEDULER_ALIVE_PREFIX, SCHEDULER_TICKED_KEY
from producers.lua import script

_BEAT = script("worker.coordination", "scheduler_beat")


@dataclass(frozen=True)
class SchedulerSeen:
    owner: str
    host: str
    pid: int
    leads: bool


class SchedulerBeat:
    """Says in Redis that this scheduler's loop turns."""

    def __init__(self, client: redis.Redis, owner: str, ttl_s: float) -> None:
        self.client, self.owner, self.ttl_ms = client, owner, max(1, int(ttl_s * 1000))
        self.host, self.pid = socket.gethostname(), os.getpid()

    def beat(self, *, leads: bool, ticked: bool) -> None:
        said = json.dumps({"host": self.host, "pid": self.pid, "leads": leads})
        self.client.eval(
            _BEAT,
            2,
            SCHEDULER_ALIVE_PREFIX + self.owner,
            SCHEDULER_TICKED_KEY,
            said,
            self.ttl_ms,
            "1" if ticked else "0",
        )


def _seen(owner: str, raw: object) -> SchedulerSeen | None:
    # Anyone with write access to Redis could put anything here: read it as untrusted.
    try:
        said = json.loads(raw) if isinstance(raw, str | bytes) else None
    except ValueError:
        return None
    if not isinstance(said, dict):
        return None
    host, pid, leads = said.get("host"), said.get("pid"), said.get("leads")
    if not isinstance(host, str) or not isinstance(pid, int) or not isinstance(leads, bool):
        return None
    return SchedulerSeen(owner=owner, host=host[:200], pid=pid, leads=leads)


def schedulers(client: redis.Redis, limit: int = 100) -> list[SchedulerSeen]:
    """The schedulers whose loop turned within their TTL, ordered by owner."""
    keys = [
        key.decode() if isinstance(key, bytes) else str(key)
        for key in itertools.islice(
            client.scan_iter(match=SCHEDULER_ALIVE_PREFIX + "*", count=500), limit
        )
    ]
    if not keys:
        return []
    seen = (
        _seen(key[len(SCHEDULER_ALIVE_PREFIX) :], raw)
        for key, raw in zip(keys, client.mget(keys), strict=True)
    )
    return sorted((found for found in seen if found is not None), key=lambda s: s.owner)


def leader_present(client: redis.Redis) -> bool:
    return bool(client.exists(LEADER_KEY))


def last_tick_age_s(client: redis.Redis) -> float | None:
    """Seconds since the leader last finished a tick, by Redis's clock (None: never)."""
    pipe = client.pipeline(transaction=False)
    pipe.get(SCHEDULER_TICKED_KEY)
    pipe.time()
    raw, (seconds, micros) = pipe.execute()
    try:
        ticked = float(raw)
    except (TypeError, ValueError):
        return None
    return max(0.0, float(seconds) + float(micros) / 1e6 - ticked)
