"""Worker liveness: each delivering process announces itself in Redis, so that the leases
of a process that is gone (a host lost, a SIGKILL of the whole worker) come back within
seconds instead of after ``GBQ_LEASE_S``, while a lease stays as long as the slowest call
needs for a process that is alive.

- ``Heartbeat``: a daemon thread that sets ``gbq:alive:<owner>`` with a time to live of
  ``GBQ_HEARTBEAT_TTL_S`` every third of it.
- ``gone``: which lease owners have no such key; the scheduler hands their in-flight
  events back (``worker.flows.scheduler``).

A process cut from Redis while its call is slow stops beating too, and its leases are
handed back while it still works: that is safe. The next sender sends the same ids
(Gameball answers "already exists", settled as ours by its records) and the cut process
can no longer record an outcome (``Ledger.record_attempt`` applies only the lease
holder's).
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import threading
from collections.abc import Sequence

import redis

from producers.keys import ALIVE_PREFIX

log = logging.getLogger(__name__)


class Heartbeat:
    """Keeps ``gbq:alive:<owner>`` alive while this process lives."""

    def __init__(self, client: redis.Redis, owner: str, ttl_s: float) -> None:
        self.client, self.key, self.ttl_ms = client, ALIVE_PREFIX + owner, int(ttl_s * 1000)
        self.interval_s = ttl_s / 3
        self._failing = False  # log the first failure of a run of them, and the recovery
        self._stopped = threading.Event()

    def start(self) -> Heartbeat:
        """Beat once now (before any claim), then in the background."""
        self.beat()
        threading.Thread(target=self._run, name="gbq-heartbeat", daemon=True).start()
        return self

    def beat(self) -> None:
        try:
            self.client.set(self.key, b"1", px=self.ttl_ms)
        except (redis.RedisError, OSError) as error:
            if not self._failing:
                log.warning(
                    "heartbeat %s failed (%s): once it lapses, the scheduler hands this "
                    "process's leases to others",
                    self.key,
                    type(error).__name__,
                )
            self._failing = True
        else:
            if self._failing:
                log.warning("heartbeat %s works again", self.key)
            self._failing = False

    def _run(self) -> None:
        # A daemon thread: it ends with the process, which is the point. It must not end
        # before: a heartbeat that stops hands this process's leases to others while it
        # still works. Event.wait rather than time.sleep, which a clock shim can break
        # (libfaketime with a negative offset: EINVAL, found by test_clock_skew).
        while not self._stopped.is_set():
            try:
                if self._stopped.wait(self.interval_s):
                    return
                self.beat()
            except Exception:  # never let the heartbeat die; say why once
                if not self._failing:
                    log.exception("heartbeat %s: unexpected error (still beating)", self.key)
                self._failing = True

    def stop(self) -> None:
        """Stop beating and take the key away: this owner is gone now, not after the TTL
        (a runtime closed by its owner, never a process that dies)."""
        self._stopped.set()
        with contextlib.suppress(redis.RedisError, OSError):  # else it lapses by itself
            self.client.delete(self.key)


def gone(client: redis.Redis, owners: Sequence[str]) -> list[str]:
    """The owners whose heartbeat has lapsed (one round trip)."""
    if not owners:
        return []
    pipe = client.pipeline(transaction=False)
    for owner in owners:
        pipe.exists(ALIVE_PREFIX + owner)
    return [owner for owner, alive in zip(owners, pipe.execute(), strict=True) if not alive]


def alive(client: redis.Redis, limit: int = 500) -> list[tuple[str, float]]:
    """The worker processes beating now, with the seconds left on each heartbeat."""
    owners = [
        key.decode()[len(ALIVE_PREFIX) :] if isinstance(key, bytes) else key[len(ALIVE_PREFIX) :]
        for key in itertools.islice(client.scan_iter(match=ALIVE_PREFIX + "*", count=500), limit)
    ]
    pipe = client.pipeline(transaction=False)
    for owner in owners:
        pipe.pttl(ALIVE_PREFIX + owner)
    return sorted(
        (owner, ttl / 1000)
        for owner, ttl in zip(owners, pipe.execute(), strict=True)
        if ttl is not None and ttl > 0
    )
