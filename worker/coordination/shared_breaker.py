"""One circuit breaker for every worker process and host, kept in Redis.

The decisions are ``worker.rules.breaker``'s pure functions; this module reads the state, applies
them and writes the result back in an optimistic transaction (WATCH/MULTI), so concurrent
workers never lose an update. Only the process whose write made a transition logs it, so
each transition is logged once.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Final, TypeVar

import redis

from producers.keys import BREAKER_DEFERRALS_KEY, BREAKER_KEY
from worker.rules.breaker import (
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
SUCCESS_FLUSH_S: Final = 2.0  # successes counted in a process are written at least this often
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

    key: Final = BREAKER_KEY

    def __init__(
        self,
        client: redis.Redis,
        config: BreakerConfig,
        clock: Callable[[], float] | None = None,
        *,
        flush_s: float = SUCCESS_FLUSH_S,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.client, self.config = client, config
        self.clock = clock or self._redis_time  # Redis's clock: the same for every worker
        self.flush_s, self.monotonic = flush_s, monotonic
        self._seen = Breaker()  # the state as this process last read it (admit reads it)
        self._successes = 0  # successes counted here, not yet written (see observe)
        self._since = 0.0  # when the oldest of them was counted (monotonic)

    def _redis_time(self) -> float:
        seconds, micros = self.client.time()
        return seconds + micros / 1_000_000

    def current(self) -> Breaker:
        self._seen = Breaker.from_json(self.client.get(BREAKER_KEY))
        return self._seen

    def admit(self) -> Admission:
        """Whether this call may go now (closed: yes, without a write)."""
        return self.admit_as_read(Breaker.from_json(self.client.get(BREAKER_KEY)))

    def admit_as_read(self, seen: Breaker) -> Admission:
        """:meth:`admit`, given the state just read from ``key`` along with other work (the
        worker reads it while clearing the inbox); a breaker that is not closed is decided
        on a fresh read, in the update."""
        self._seen = seen
        if seen.state == "closed":
            return Admission(True)
        admission = self._update(lambda b, now: admit(b, now, self.config))
        if not admission.allowed:
            self.client.incr(BREAKER_DEFERRALS_KEY)
        return admission

    def observe(self, signal: Signal, detail: str = "") -> Breaker:
        """Fold one call's result into the shared state.

        A success while the breaker is closed with no failure run changes nothing but the
        success tally of the failure-rate window, so it is counted here and written later:
        with the next failure or pause (in the same update, before the failure is judged),
        or once the oldest has waited ``flush_s``. Every success thus costs no Redis round
        trip in the common case; another process may judge a failure rate without up to
        ``flush_s`` of this one's successes, which only errs towards opening."""
        if signal is Signal.NEUTRAL:
            return self._seen
        seen = self._seen
        applied: Signal = signal
        if signal is Signal.SUCCESS and seen.state == "closed" and seen.consecutive == 0:
            if not self._successes:
                self._since = self.monotonic()
            self._successes += 1
            if self.monotonic() - self._since < self.flush_s:
                return seen
            applied = Signal.NEUTRAL  # only write the tally, this success included
        pending, self._successes = self._successes, 0

        def apply(breaker: Breaker, now: float) -> tuple[Breaker, Change]:
            change = observe(
                breaker, now, applied, self.config, detail=detail, earlier_successes=pending
            )
            return change.breaker, change

        change = self._update(apply)
        self._seen = change.breaker
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
