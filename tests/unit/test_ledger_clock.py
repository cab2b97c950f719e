"""The ledger's clock: the database's time, carried forward with the monotonic clock."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy.exc import OperationalError

from worker.ledger.clock import LedgerClock

DB = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


class Fake:
    """A database clock, a monotonic clock and a wall clock the test moves by hand."""

    def __init__(self) -> None:
        self.mono, self.wall, self.db = 100.0, 5_000.0, DB
        self.reads = 0
        self.down = False

    def read(self) -> datetime:
        self.reads += 1
        if self.down:
            raise OperationalError("SELECT", {}, Exception("connection refused"))
        return self.db

    def advance(self, seconds: float) -> None:
        self.mono += seconds
        self.wall += seconds
        self.db += timedelta(seconds=seconds)

    def clock(self) -> LedgerClock:
        return LedgerClock(
            self.read, resync_s=10, monotonic=lambda: self.mono, wall=lambda: self.wall
        )


def test_it_is_the_databases_time_whatever_the_local_wall_clock_says() -> None:
    fake = Fake()
    fake.wall += 3600  # this host's clock is an hour ahead
    assert fake.clock().now() == DB


def test_it_reads_the_database_once_per_resync_interval() -> None:
    fake = Fake()
    clock = fake.clock()
    for _ in range(9):
        clock.now()
        fake.advance(1)
    assert fake.reads == 1
    assert clock.now() == DB + timedelta(seconds=9)  # carried forward, monotonic
    fake.advance(2)
    clock.now()
    assert fake.reads == 2


def test_a_jump_of_the_local_wall_clock_reads_again_at_once() -> None:
    """A VM resumed from pause or NTP stepping the clock: the wall clock jumps while the
    monotonic one does not; the database's time is read again."""
    fake = Fake()
    clock = fake.clock()
    clock.now()
    fake.wall += 30  # stepped
    fake.db += timedelta(seconds=30)  # the pause, as the database saw it
    assert clock.now() == DB + timedelta(seconds=30)
    assert fake.reads == 2


def test_while_the_database_is_down_it_goes_on_from_the_last_reading() -> None:
    fake = Fake()
    clock = fake.clock()
    clock.now()
    fake.down = True
    fake.advance(15)
    assert clock.now() == DB + timedelta(seconds=15)
    assert fake.reads == 2
    fake.advance(1)
    clock.now()
    assert fake.reads == 2  # no query per call during the outage


def test_never_read_it_is_the_local_clock() -> None:
    fake = Fake()
    fake.down = True
    assert fake.clock().now() == datetime.fromtimestamp(fake.wall, UTC)
