"""The ledger's clock: one time for every process that shares a ledger.

Leases, due retries, deferrals and re-checks are written by one process and compared by
another (a worker's lease is expired by the scheduler, a retry written by a worker is
taken by the scheduler). Each process's own clock would make skew between hosts decide:
a scheduler 90 s ahead expired every lease of a 60 s lease and live-locked delivery; a
worker behind sent its retries early. So every such time comes from here: the database
server's clock (PostgreSQL ``clock_timestamp()``; SQLite's ``'now'``, read from the
operating system's clock, which every process on the host shares), read once and then
carried forward with the local monotonic clock, so it costs a query only every
``resync_s`` seconds, and is read again at once when the local wall clock jumps (a VM
resumed from pause, NTP stepping the clock). While the database cannot be read, it goes
on from the last reading; before the first, it is the local clock.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine, text
from sqlalchemy.exc import SQLAlchemyError

log = logging.getLogger(__name__)
RESYNC_S = 10.0
JUMP_S = 1.0  # local wall and monotonic clocks disagreeing by this much: read again


def read_database_time(engine: Engine) -> datetime:
    """The database server's current time, aware UTC."""
    with engine.connect() as connection:
        if engine.dialect.name == "postgresql":
            value = connection.execute(text("SELECT clock_timestamp()")).scalar_one()
            return value.astimezone(UTC)  # type: ignore[no-any-return]
        raw = connection.execute(text("SELECT strftime('%Y-%m-%d %H:%M:%f', 'now')")).scalar_one()
        return datetime.strptime(raw, "%Y-%m-%d %H:%M:%S.%f").replace(tzinfo=UTC)


class LedgerClock:
    """``now()``: the ledger's time, for every comparison another process also makes."""

    def __init__(
        self,
        read: Callable[[], datetime],
        *,
        resync_s: float = RESYNC_S,
        monotonic: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self._read, self._resync_s = read, resync_s
        self._monotonic, self._wall = monotonic, wall
        self._lock = threading.Lock()
        self._base: datetime | None = None  # the ledger's time at _base_mono
        self._base_mono = 0.0
        self._base_wall = 0.0
        self._due = 0.0  # monotonic time of the next reading

    @classmethod
    def of(cls, engine: Engine) -> LedgerClock:
        return cls(lambda: read_database_time(engine))

    def now(self) -> datetime:
        with self._lock:
            mono, wall = self._monotonic(), self._wall()
            jumped = abs((wall - self._base_wall) - (mono - self._base_mono)) > JUMP_S
            if self._base is None or mono >= self._due or jumped:
                self._sync(mono, wall)
            if self._base is None:  # never read: the local clock is all there is
                return datetime.fromtimestamp(self._wall(), UTC)
            return self._base + timedelta(seconds=self._monotonic() - self._base_mono)

    def _sync(self, mono: float, wall: float) -> None:
        self._due = mono + self._resync_s  # after a failure too: no query per call
        try:
            reading = self._read()
        except (SQLAlchemyError, OSError) as error:
            log.debug("could not read the ledger's clock (%s); carrying on", error)
            if self._base is not None:  # go on from the last reading
                self._base_wall = wall - (mono - self._base_mono)
            return
        after = self._monotonic()
        self._base = reading + timedelta(seconds=(after - mono) / 2)
        self._base_mono, self._base_wall = after, self._wall()
