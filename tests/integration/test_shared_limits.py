"""The breaker and the rate limit as every worker shares them, on a real Redis."""

from __future__ import annotations

import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

import pytest
import redis

from producers.keys import BREAKER_KEY, INBOX_KEY, ORDER_INBOX_PREFIX
from worker.coordination.paced_reads import PacedReader, RateLimitedReadError
from worker.coordination.queue import RedisQueue
from worker.coordination.ratelimit import RateLimiter, RateLimits, gcra
from worker.coordination.shared_breaker import SharedBreaker, breaker_config
from worker.rules.breaker import Breaker, Signal, State
from worker.settings import Settings

pytestmark = pytest.mark.integration
SECOND = 1_000_000

DEFAULT_BREAKER = breaker_config(Settings.model_construct())  # the shipped defaults


def test_lua_agrees_with_the_pure_arithmetic(redis_url: str) -> None:
    """Calls at chosen instants get the same answers from Redis as from gcra()."""
    limiter = RateLimiter(redis.Redis.from_url(redis_url), RateLimits(30, 360, 0.5, 1.0))
    intervals = [interval for _, interval in limiter.limits.intervals_us()]
    tats: tuple[int, ...] = (0, 0)
    for offset in [0, 1, 10_000, 84_722, 84_723, 84_724, 200_000, 200_001, 5 * SECOND]:
        now = 1_000 * SECOND + offset
        allowed, wait, tats = gcra(tats, intervals, now)
        assert limiter.try_acquire(now) == (allowed, wait / SECOND)


def test_penalty_pushes_everyone_back(redis_url: str) -> None:
    """After a 429, no one may call for penalty_s."""
    limiter = RateLimiter(redis.Redis.from_url(redis_url), RateLimits(30, 360, 0.0, 1.0))
    now = 1_000 * SECOND
    assert limiter.try_acquire(now)[0]
    limiter.penalize(now)
    allowed, wait_s = limiter.try_acquire(now + 100_000)
    assert not allowed
    assert wait_s == pytest.approx(1.0834 - 0.1, abs=0.001)


def test_each_resource_has_its_own_budget_and_its_own_penalty(redis_url: str) -> None:
    """Orders and refunds mixed get 30/s each, not 30/s together (rate-limiting.mdx); a
    429 on refunds holds back refunds only."""
    limiter = RateLimiter(redis.Redis.from_url(redis_url), RateLimits(30, 0, 0.0, 1.0))
    start = 3_000 * SECOND
    sent = {"orders": 0, "transactions_post": 0}
    now = start
    while now < start + SECOND:
        for bucket in sent:
            if limiter.try_acquire(now, bucket)[0]:  # type: ignore[arg-type]
                sent[bucket] += 1
        now += 1_000
    assert sent == {"orders": 30, "transactions_post": 30}
    limiter.penalize(now, "transactions_post")
    assert limiter.try_acquire(now + 40_000, "orders")[0]
    assert not limiter.try_acquire(now + 40_000, "transactions_post")[0]


def test_reads_take_their_resources_permission(redis_url: str) -> None:
    """A record read through PacedReader uses the transactions GET bucket (not the
    orders one); a 429 on it pushes that bucket back; over the wait, it refuses to read."""
    limiter = RateLimiter(redis.Redis.from_url(redis_url), RateLimits(1, 0, 0.0, 5.0))
    answers = iter([(200, {"transactions": []}), (429, {"message": "Too Many Requests"})])
    reads: list[str] = []

    class Gameball:
        def get_json(self, path: str) -> tuple[int, object]:
            reads.append(path)
            return next(answers)

    reader = PacedReader(Gameball(), limiter, max_wait_s=0.0)
    listing = "/api/v4.1/integrations/transactions?customerId=c&limit=200"
    assert reader.get_json(listing)[0] == 200
    with pytest.raises(RateLimitedReadError, match="transactions_get"):
        reader.get_json(listing)  # one per second: the next read must wait
    assert limiter.acquire(0.0, "orders")[0]  # another resource is free
    slow = PacedReader(Gameball(), limiter, max_wait_s=2.0)
    assert slow.get_json(listing)[0] == 429
    assert reads == [listing, listing]
    allowed, wait_s = limiter.acquire(0.0, "transactions_get")
    assert not allowed
    assert wait_s > 4.0  # the 5 s penalty


def test_many_threads_share_one_budget(redis_url: str) -> None:
    """Eight threads pulling as fast as they can get one evenly paced budget."""
    limiter = RateLimiter(redis.Redis.from_url(redis_url), RateLimits(20, 0, 0.0, 1.0))
    now = 2_000 * SECOND
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda n: limiter.try_acquire(now + n), range(64)))
    assert sum(allowed for allowed, _ in results) == 1  # one per 50 ms, and all at once


def test_breaker_updates_from_many_workers_are_not_lost(
    redis_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Concurrent failures from 8 threads all count; the opening is logged once."""
    caplog.set_level(logging.INFO, logger="worker.coordination.shared_breaker")
    config = replace(DEFAULT_BREAKER, consecutive_failures=40, min_requests=1000)
    breakers = [SharedBreaker(redis.Redis.from_url(redis_url), config) for _ in range(8)]
    start = threading.Barrier(8)

    def fail(breaker: SharedBreaker) -> None:
        start.wait()
        for _ in range(5):
            breaker.observe(Signal.FAILURE, "server_error: boom")

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(fail, breakers))
    assert breakers[0].current().state is State.OPEN  # exactly 40 failures: none lost
    openings = [r for r in caplog.records if "closed -> open" in r.getMessage()]
    assert len(openings) == 1
    assert "40 transient failures in a row" in openings[0].getMessage()


def test_only_one_probe_at_a_time_across_workers(redis_url: str) -> None:
    """Once the cool-down is over, of many workers asking, one gets the probe."""
    now = [1000.0]
    config = replace(DEFAULT_BREAKER, consecutive_failures=1, cooldown_s=10)
    breakers = [
        SharedBreaker(redis.Redis.from_url(redis_url), config, clock=lambda: now[0])
        for _ in range(6)
    ]
    breakers[0].observe(Signal.FAILURE, "timeout")
    assert not any(b.admit().allowed for b in breakers)
    now[0] = 1010.0
    with ThreadPoolExecutor(6) as pool:
        admissions = list(pool.map(lambda b: b.admit(), breakers))
    assert [a.probe for a in admissions].count(True) == 1
    assert sum(a.allowed for a in admissions) == 1


def test_successes_are_counted_without_a_write_and_none_is_lost(redis_url: str) -> None:
    """While closed, a success costs no Redis write: each process counts its own and
    writes them with its next failure (before the failure is judged) or after flush_s.
    Four processes, 25 successes each, then one failure: the window holds all 100
    successes and the failure, and the breaker stays closed (1 of 101 failed)."""
    clock = [2000.0]
    monotonic = [0.0]
    config = replace(DEFAULT_BREAKER, min_requests=10, failure_rate=0.5, consecutive_failures=5)
    client = redis.Redis.from_url(redis_url)
    breakers = [
        SharedBreaker(
            redis.Redis.from_url(redis_url),
            config,
            clock=lambda: clock[0],
            monotonic=lambda: monotonic[0],
            flush_s=2.0,
        )
        for _ in range(4)
    ]
    for breaker in breakers:
        assert breaker.admit().allowed
        for _ in range(25):
            breaker.observe(Signal.SUCCESS)
    assert client.get(BREAKER_KEY) is None  # nothing written yet
    for breaker in breakers[:3]:
        monotonic[0] += 3  # past flush_s: the next success writes the tally
        breaker.observe(Signal.SUCCESS)
    breakers[3].observe(Signal.FAILURE, "timeout")
    state = breakers[3].current()
    assert state.state is State.CLOSED
    assert sum(ok for _, ok, _ in state.buckets) == 103
    assert sum(bad for _, _, bad in state.buckets) == 1


def test_the_breaker_read_while_clearing_the_inbox_admits_as_a_fresh_read(
    redis_url: str,
) -> None:
    """The worker reads the breaker in the command that clears its inbox entries: a
    closed breaker admits on that read; one that is open is decided on a fresh read, so
    a stale "open" still lets exactly one probe through once the cool-down is over."""
    now = [3000.0]
    config = replace(DEFAULT_BREAKER, consecutive_failures=1, cooldown_s=10)
    client = redis.Redis.from_url(redis_url)
    queue = RedisQueue(client)
    breakers = [
        SharedBreaker(redis.Redis.from_url(redis_url), config, clock=lambda: now[0])
        for _ in range(4)
    ]
    client.hset(INBOX_KEY, mapping={"paid:A": "{}", "refunded:A1": "{}"})
    client.sadd(ORDER_INBOX_PREFIX + "A", "paid:A", "refunded:A1")
    with queue.get_meanwhile(breakers[0].key) as breaker_read:
        queue.inbox_done([("paid:A", "A")])  # another connection's command meanwhile
        read = breaker_read()
    assert read is None  # no state yet: closed
    assert breakers[0].admit_as_read(Breaker.from_json(read)).allowed
    assert client.hkeys(INBOX_KEY) == [b"refunded:A1"]
    assert client.smembers(ORDER_INBOX_PREFIX + "A") == {b"refunded:A1"}
    breakers[0].observe(Signal.FAILURE, "timeout")
    with queue.get_meanwhile(BREAKER_KEY) as breaker_read:
        stale = Breaker.from_json(breaker_read())
    queue.inbox_done([("refunded:A1", "A")])
    assert stale.state is State.OPEN
    assert not client.exists(INBOX_KEY, ORDER_INBOX_PREFIX + "A")
    assert not any(b.admit_as_read(stale).allowed for b in breakers)
    now[0] = 3010.0
    with ThreadPoolExecutor(4) as pool:
        admissions = list(pool.map(lambda b: b.admit_as_read(stale), breakers))
    assert [a.probe for a in admissions].count(True) == 1
    assert sum(a.allowed for a in admissions) == 1
    assert queue.inbox_done([]) is None  # nothing to clear, nothing asked: no command
