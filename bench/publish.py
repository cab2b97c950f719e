"""Benchmark 1: what checkout pays to publish.

``publish()`` (one MULTI: inbox entry, due index, order index, Celery message) against
plain Celery ``send_task`` of the same event to the same Redis, interleaved in rounds so
both see the same machine; then ``publish_many`` batches, and the spool path (Redis down).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

from pydantic import SecretStr

from bench.baseline import sender
from bench.common import Report, percentile, services
from harness.processes import free_port
from harness.scenario import generate
from harness.sentinel import SentinelGroup
from producers.events import Event, event_to_json
from producers.publisher import Publisher
from worker.settings import Settings

BATCH = 100


def replicated_publishes(
    folder: Path, events: list[Event], per_round: int, rounds: int
) -> tuple[list[float], list[float], int]:
    """``publish()`` through Sentinel with and without waiting for a replica, interleaved:
    (with WAIT, without), each call's seconds."""
    group = SentinelGroup(folder / "sentinel", replicas=2)
    try:
        publishers = {
            replicas: Publisher(
                Settings(
                    redis_url=SecretStr(group.url),
                    home=folder / f"var-replicas-{replicas}",
                    redis_min_replicas=replicas,
                )
            )
            for replicas in (0, 1)
        }
        timings: dict[int, list[float]] = {0: [], 1: []}
        for event in events[:200]:  # warm-up: connections, the script
            for publisher in publishers.values():
                publisher.publish(event)
        for number in range(rounds):
            chunk = events[number * per_round : (number + 1) * per_round]
            for replicas, publisher in publishers.items():
                for event in chunk:
                    before = time.perf_counter()
                    assert publisher.publish(event) == "queued"
                    timings[replicas].append(time.perf_counter() - before)
        for publisher in publishers.values():
            publisher.close()
    finally:
        group.stop()
    return timings[1], timings[0], rounds


def spooled_publishes(folder: Path, events: list[Event]) -> list[float]:
    """Redis down: a refused connection on loopback, then the SQLite spool; each call's
    seconds."""
    down = Settings(
        redis_url=SecretStr(f"redis://127.0.0.1:{free_port()}/0"),
        home=folder / "var-down",
    )
    spooled: list[float] = []
    logging.getLogger("producers").setLevel(logging.ERROR)  # one warning per event
    with Publisher(down) as offline:
        for event in events:
            before = time.perf_counter()
            assert offline.publish(event) == "spooled"
            spooled.append(time.perf_counter() - before)
        assert offline.spool.count() == len(events)
    return spooled


def run(folder: Path, *, quick: bool = False) -> Report:
    per_round, rounds = (500, 2) if quick else (2_000, 5)
    total = per_round * rounds
    scenario = generate(seed=101, orders=total // 3, total_events=total, prefix="P")
    events = scenario.events
    bodies = [event_to_json(event) for event in events]
    with services(folder) as running:
        settings = Settings(redis_url=SecretStr(running.redis.url), home=folder / "var")
        publisher = Publisher(settings)
        celery_app = sender(running.redis.url)
        # Warm both paths up: connections, imports, first-call caches.
        for event, body in zip(events[:200], bodies[:200], strict=True):
            publisher.publish(event)
            celery_app.send_task("bench.noop", args=[body], queue="naive")
        running.flush_redis()

        ours: list[float] = []
        theirs: list[float] = []
        ours_s = theirs_s = 0.0
        for number in range(rounds):
            chunk = slice(number * per_round, (number + 1) * per_round)
            started = time.perf_counter()
            for event in events[chunk]:
                before = time.perf_counter()
                publisher.publish(event)
                ours.append(time.perf_counter() - before)
            ours_s += time.perf_counter() - started
            started = time.perf_counter()
            for body in bodies[chunk]:
                before = time.perf_counter()
                celery_app.send_task("bench.noop", args=[body], queue="naive")
                theirs.append(time.perf_counter() - before)
            theirs_s += time.perf_counter() - started
        running.flush_redis()

        batches: list[float] = []
        started = time.perf_counter()
        for start in range(0, total, BATCH):
            before = time.perf_counter()
            publisher.publish_many(events[start : start + BATCH])
            batches.append(time.perf_counter() - before)
        many_s = time.perf_counter() - started
        publisher.close()

        waited, unwaited, wait_rounds = replicated_publishes(folder, events, per_round, rounds)

        spool_events = events[: min(total, 2_000)]
        spooled = spooled_publishes(folder, spool_events)

    def row(name: str, sample: list[float], seconds: float, count: int) -> list[object]:
        return [
            name,
            count,
            percentile(sample, 0.5) * 1e3,
            percentile(sample, 0.99) * 1e3,
            percentile(sample, 0.999) * 1e3,
            count / seconds,
        ]

    report = Report(
        name="publish",
        title="1. Publish: what checkout pays",
        command="make bench BENCH=publish",
        columns=["path", "events", "p50 ms", "p99 ms", "p99.9 ms", "events/s (1 thread)"],
    )
    report.rows = [
        row("Celery `send_task` (baseline)", theirs, theirs_s, total),
        row("gbq `publish()`", ours, ours_s, total),
        row(f"gbq `publish_many()` ({BATCH}/batch, per batch)", batches, many_s, total),
        row("gbq `publish()`, Redis down → spool", spooled, sum(spooled), len(spool_events)),
        row(
            "gbq `publish()`, Sentinel (a primary, 2 replicas)",
            unwaited,
            sum(unwaited),
            len(unwaited),
        ),
        row(
            "gbq `publish()`, Sentinel, `GBQ_REDIS_MIN_REPLICAS=1` (WAIT)",
            waited,
            sum(waited),
            len(waited),
        ),
    ]
    ratio_p50 = percentile(ours, 0.5) / percentile(theirs, 0.5)
    ratio_rate = (total / ours_s) / (total / theirs_s)
    report.notes = [
        (
            f"`publish()` / `send_task`: p50 latency × {ratio_p50:.2f}, "
            f"throughput × {ratio_rate:.2f} (one round trip each; ours also writes the inbox "
            "entry and two indexes in the same MULTI, so the event survives a lost message)."
        ),
        (
            f"`publish_many()` throughput: {total / many_s:,.0f} events/s "
            f"(× {(total / many_s) / (total / theirs_s):.1f} of `send_task`)."
        ),
        (
            "The spool path includes the refused Redis connection on loopback and a SQLite commit "
            "(WAL, synchronous=FULL: a spooled event survives a power cut) per call."
        ),
        (
            f"Interleaved in {rounds} rounds of {per_round:,} events after a 200-event warm-up; "
            "the same Redis (AOF everysec) for both."
        ),
    ]
    wait_p50 = percentile(waited, 0.5) / percentile(unwaited, 0.5)
    wait_p99 = percentile(waited, 0.99) / percentile(unwaited, 0.99)
    report.notes.append(
        f"`GBQ_REDIS_MIN_REPLICAS=1` (WAIT 1 in the same round trip) / the same publish without "
        f"it, through Sentinel to the same primary: p50 × {wait_p50:.2f}, p99 × {wait_p99:.2f} "
        f"(the replicas on loopback; across a network each publish also waits for one replica's "
        f"acknowledgement, about one round trip to it). Interleaved in {wait_rounds} rounds; "
        "Debian's redis-server for the group, the wheel's for the rows above."
    )
    report.data = {
        "wait_ratio_p50": wait_p50,
        "wait_ratio_p99": wait_p99,
        "ratio_p50": ratio_p50,
        "ratio_throughput": ratio_rate,
        "publish_many_per_s": total / many_s,
    }
    return report
