"""A seeded fault schedule: what goes wrong, when, and for how long.

Every kind the soak knows is placed at least ``per_kind`` times at random moments of the
run, never two at once (each fault ends before the next starts), so the check can be exact
and a failure can be replayed from its seed.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

KINDS = (
    "outage",  # every Gameball call answers 503
    "server_errors",  # a burst of 5xx
    "rate_limits",  # a burst of 429 with Retry-After
    "latency",  # Gameball answers slowly
    "drop_after_apply",  # applied, then the connection drops: the worker cannot know
    "kill_worker",  # SIGKILL a worker and its pool; supervisor restarts it
    "kill_leader",  # SIGKILL the scheduler holding the leader lock; restarted
    "redis_restart",  # the Redis primary shut down (AOF flushed) and started again
    "redis_down_publishing",  # the primary away for a while: producers spool, Sentinel
    # may promote a replica meanwhile
    "redis_failover",  # the primary SIGKILLed: Sentinel promotes a replica; it comes back
    # as a replica
)


@dataclass(frozen=True)
class Fault:
    at_s: float
    kind: str
    duration_s: float
    size: int = 0  # calls affected, for bursts

    def describe(self) -> str:
        extra = f", {self.size} calls" if self.size else ""
        return f"{self.at_s:6.1f}s {self.kind} ({self.duration_s:.1f}s{extra})"


DURATIONS = {
    "outage": (2.0, 8.0),
    "server_errors": (1.0, 3.0),
    "rate_limits": (1.0, 3.0),
    "latency": (2.0, 5.0),
    "drop_after_apply": (1.0, 3.0),
    "kill_worker": (1.0, 3.0),  # how long until the restart
    "kill_leader": (1.0, 3.0),
    "redis_restart": (0.5, 1.5),
    "redis_down_publishing": (2.0, 6.0),
    "redis_failover": (2.0, 5.0),  # how long until the lost machine is back
}


def schedule(seed: int, window_s: float, per_kind: int, gap_s: float = 1.0) -> list[Fault]:
    """``per_kind`` faults of every kind, shuffled, spread over ``window_s`` seconds."""
    rng = random.Random(seed * 7919 + 1)
    kinds = [kind for kind in KINDS for _ in range(per_kind)]
    rng.shuffle(kinds)
    slot = window_s / max(1, len(kinds))
    faults = []
    for number, kind in enumerate(kinds):
        low, high = DURATIONS[kind]
        duration = min(rng.uniform(low, high), max(0.2, slot - gap_s))
        start = number * slot + rng.uniform(0, max(0.0, slot - duration - gap_s))
        size = (
            rng.randint(5, 30)
            if kind in ("server_errors", "rate_limits", "drop_after_apply")
            else 0
        )
        faults.append(Fault(round(start, 2), kind, round(duration, 2), size))
    return faults
