"""Quiet logging while something the worker needs is down.

During a ledger or Redis outage every message fails the same way. Logging a traceback per
message (about 58 lines each) buried everything else: 21,000 lines per worker for 361
messages. Here the first failure of an outage is one warning, the rest are counted (their
tracebacks at DEBUG), and the first success after it says how many failed and for how
long. Nothing is lost meanwhile: the message is acked, and the inbox entry or the ledger
row it stood for is sent again by the scheduler once the outage ends.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

import redis
from sqlalchemy.exc import DisconnectionError, InterfaceError, OperationalError

from producers.untrusted import printable

# What an outage of each looks like to the worker (a deadlock victim is one too: retried).
LEDGER_DOWN = (OperationalError, InterfaceError, DisconnectionError)
REDIS_DOWN = (redis.ConnectionError, redis.TimeoutError)


class OutageLog:
    """One warning when ``what`` becomes unavailable, one line when it is back."""

    def __init__(
        self, what: str, logger: logging.Logger, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.what, self.logger, self.clock = what, logger, clock
        self.failures = 0
        self._since = 0.0
        self._lock = threading.Lock()

    def failed(self, error: BaseException) -> None:
        with self._lock:
            self.failures += 1
            first = self.failures == 1
            if first:
                self._since = self.clock()
        if first:
            self.logger.warning(
                "%s unavailable (%s: %s): messages are left for the scheduler to send again "
                "once it is back; further failures are only counted (tracebacks at DEBUG)",
                self.what,
                type(error).__name__,
                printable(str(error).splitlines()[0] if str(error) else "", 300),
            )
        self.logger.debug("%s unavailable", self.what, exc_info=error)

    def succeeded(self) -> None:
        if not self.failures:  # the common case: no lock, no work
            return
        with self._lock:
            failures, self.failures = self.failures, 0
            took = self.clock() - self._since
        if failures:
            self.logger.warning(
                "%s available again: %d message(s) failed over %.0f s", self.what, failures, took
            )
