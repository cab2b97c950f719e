"""One circuit breaker for every worker process and host, kept in Redis.

The decisions are ``worker.breaker``'s pure functions; this module reads the state, applies
them and writes the result back in an optimistic transaction (WATCH/MULTI), so concurrent
workers never lose an update. Only the process whose write made a transition logs it, so
each transition is logged once.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TypeVar

import redis

from worker.breaker import (
    Admission,
    Breaker,
    BreakerConfig,
    Change,
    Signal,
    admit,
    observe,
)
from worker.settings import Settings

log = logging.getLogger(__name__)
BREAKER_KEY = "gbq:breaker"
DEFERRALS_KEY = "gbq:stats:breaker_deferrals"  # events held back while not closed (a metric)
T = TypeVar("T")


def breaker_config(settings: Settings) -> BreakerConfig:
    probe_timeout = (
        settings.gameball_connect_timeout_s
        + settings.gameball_write_timeout_s
        + settings.gameball_read_timeout_s
    )
    return BreakerConfig(
        min_requests=settings.breaker_min_requests,
        failure_rate=settings.breaker_failure_rate,
        window_s=settings.breaker_window_s,
        consecutive_failures=settings.breaker_consecutive_failures,
        cooldown_s=settings.breaker_cooldown_s,
        pause_cooldown_s=settings.pause_delay_s,
        probe_timeout_s=probe_timeout,
    )


class SharedBreaker:
    """The breaker as every worker sees it."""

    def __init__(
        self,
        client: redis.Redis,
        config: BreakerConfig,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self.client, self.config = client, config
        self.clock = clock or self._redis_time  # Redis's clock: the same for every worker

    def _redis_time(self) -> float:
        seconds, micros = self.client.time()
        return seconds + micros / 1_000_000

    def current(self) -> Breaker:
        return Breaker.from_json(self.client.get(BREAKER_KEY))

    def admit(self) -> Admission:
        """Whether this call may go now (closed: yes, without a write)."""
        if self.current().state == "closed":
            return Admission(True)
        admission = self._update(lambda b, now: admit(b, now, self.config))
        if not admission.allowed:
            self.client.incr(DEFERRALS_KEY)
        return admission

    def observe(self, signal: Signal, detail: str = "") -> Breaker:
        if signal is Signal.NEUTRAL:
            return self.current()

        def apply(breaker: Breaker, now: float) -> tuple[Breaker, Change]:
            change = observe(breaker, now, signal, self.config, detail=detail)
            return change.breaker, change

        change = self._update(apply)
        if change.transition:
            level = logging.WARNING if change.breaker.state != "closed" else logging.INFO
            log.log(level, "circuit breaker %s", change.transition)
        return change.breaker

    def reset(self) -> None:
        self.client.delete(BREAKER_KEY)

    def _update(self, step: Callable[[Breaker, float], tuple[Breaker, T]]) -> T:
        with self.client.pipeline(transaction=True) as pipe:
            while True:
                try:
                    pipe.watch(BREAKER_KEY)  # type: ignore[no-untyped-call]
                    before = pipe.get(BREAKER_KEY)
                    after, result = step(Breaker.from_json(before), self.clock())
                    encoded = after.to_json()
                    pipe.multi()
                    if before is None or encoded != (
                        before.decode() if isinstance(before, bytes) else before
                    ):
                        pipe.set(BREAKER_KEY, encoded)
                    pipe.execute()
                except redis.WatchError:
                    continue  # another worker wrote first: decide again on its state
                return result
