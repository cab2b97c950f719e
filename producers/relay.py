"""A publisher relays its own spool: in a background thread, once Redis answers again.

A checkout host usually has no scheduler beside it, so nothing else would ever move its
spool. The thread starts when the publisher spools (or finds its spool not empty when it
is created), tries Redis every ``interval_s`` (doubling up to ``max_interval_s`` while
Redis stays down), moves the spool oldest first in batches, reports what is left
(``producers.spool_report``), and ends once the spool is empty. ``publish()`` never waits
for it: while the spool holds events, a publisher spools its new ones behind them
(``Publisher``), so its events still reach Redis in the order it published them.

The last step runs under the publisher's lock: the spool is found empty and the
publisher told so (``on_empty``) with no publish in between.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Final

import redis

from producers.spool import Spool
from producers.spool_report import report

log = logging.getLogger(__name__)
BATCH: Final = 500


class SpoolRelay:
    """Moves one spool to Redis in the background; ``wake()`` starts it if it is idle."""

    def __init__(
        self,
        spool: Spool,
        client: redis.Redis,
        lock: threading.Lock,
        on_empty: Callable[[], None],
        *,
        interval_s: float = 0.5,
        max_interval_s: float = 5.0,
    ) -> None:
        self.spool, self.client, self.lock = spool, client, lock
        self.on_empty = on_empty
        self.interval_s, self.max_interval_s = interval_s, max_interval_s
        self._thread: threading.Thread | None = None
        self._stopped = threading.Event()
        self.relayed = 0  # events moved to Redis by this relay, ever
        self._report_refused = False

    def wake(self) -> None:
        """Start relaying unless a relay thread of this process already runs."""
        if self._stopped.is_set():
            return
        thread = self._thread
        if thread is not None and thread.is_alive():
            return
        self._thread = threading.Thread(target=self._run, name="gbq-spool-relay", daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = 5.0) -> None:
        self._stopped.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout_s)

    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _run(self) -> None:
        pause = self.interval_s
        failing = False
        while not self._stopped.is_set():
            try:
                if self._drained():
                    if failing:
                        log.warning("spool %s relayed: Redis answers again", self.spool.path)
                    return
                pause = self.interval_s
                continue
            except (redis.RedisError, OSError) as error:
                if not failing:
                    log.warning(
                        "spool %s waits for Redis (%s); retrying in the background",
                        self.spool.path,
                        type(error).__name__,
                    )
                failing = True
            except Exception:  # never let the relay die silently: say why, try again later
                log.exception("spool %s: unexpected error while relaying", self.spool.path)
                failing = True
            self._stopped.wait(pause)
            pause = min(pause * 2, self.max_interval_s)

    def _drained(self) -> bool:
        """Relay one batch; True once the spool is empty (and the publisher told)."""
        moved = self.spool.relay(self.client, BATCH)
        self.relayed += moved
        if moved:
            self._report()
            return False
        with self.lock:  # no publish of this process spools between the check and on_empty
            moved = self.spool.relay(self.client, BATCH)
            self.relayed += moved
            if moved:
                return False
            self.on_empty()
        self._report()  # a count of 0 now
        return True

    def _report(self) -> None:
        """Report what is left; a report refused (an ACL without ``gbq:spools``, say) is
        logged once and never holds the relay back."""
        try:
            report(self.client, self.spool)
        except redis.ResponseError as error:
            if not self._report_refused:
                log.warning("could not report spool %s to Redis: %s", self.spool.path, error)
            self._report_refused = True
