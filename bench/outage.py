"""Benchmark 4: Gameball down for a minute while checkout keeps publishing.

5,000 events are published evenly through a 60 s outage (every call answers 503). Then
Gameball comes back. Measured: HTTP calls made during the outage per event, time from
recovery to the last delivery, dead letters (must be 0), and the same for the naive task.
Both run without a rate limit, so the drain shows the pipeline's own speed.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from bench.baseline import counters, send_naive_posts, start_celery_worker
from bench.common import LIMITS_OFF, Report, sandbox_calls, services, wait_ready
from harness.processes import wait_until
from harness.scenario import generate
from producers.events import Event

BATCH = 25


def publish_through(
    events: list[Event], seconds: float, publish: Callable[[list[Event]], object]
) -> None:
    """Publish ``events`` in small batches, spread evenly over ``seconds``."""
    started = time.monotonic()
    batches = [events[start : start + BATCH] for start in range(0, len(events), BATCH)]
    for number, batch in enumerate(batches):
        publish(batch)
        due = started + seconds * (number + 1) / len(batches)
        time.sleep(max(0.0, due - time.monotonic()))  # pacing the load, not synchronising


def run(folder: Path, *, quick: bool = False) -> Report:
    total, outage_s = (500, 10.0) if quick else (5_000, 60.0)
    events = generate(seed=401, orders=total // 3, total_events=total, prefix="U").events
    report = Report(
        name="outage",
        title=f"4. A {outage_s:.0f} s Gameball outage with {total:,} events published during it",
        command="make bench BENCH=outage",
        columns=[
            "what",
            "events",
            "calls during outage",
            "calls per event",
            "drain after recovery s",
            "delivered",
            "dead or lost",
        ],
    )
    with services(folder) as running:
        sandbox = running.sandbox()
        stack = running.stack(running.ledger(), sandbox.url, **LIMITS_OFF)
        sandbox.faults(outage=True)
        worker = stack.start_worker("w1", concurrency=4)
        stack.start_scheduler()
        wait_ready(worker)
        publish_through(events, outage_s, stack.publisher.publish_many)
        during = sandbox_calls(sandbox)
        sandbox.faults(outage=False)
        recovered = time.monotonic()
        settled = stack.wait_settled(total, timeout_s=600)
        drain_s = time.monotonic() - recovered
        report.rows.append(
            [
                "gbq (breaker, deferrals, ledger)",
                total,
                during,
                during / total,
                drain_s,
                settled["delivered"],
                settled["dead"],
            ]
        )
        report.data["gbq"] = {"calls": during, "drain_s": drain_s, **settled}
        running.close_stacks()

        sandbox.reset()
        sandbox.faults(outage=True)
        running.flush_redis()
        url = running.redis.url
        naive = start_celery_worker(
            running.folder, redis_url=url, gameball_url=sandbox.url, concurrency=4
        )
        wait_ready(naive)
        publish_through(events, outage_s, lambda batch: send_naive_posts(url, batch))
        during = sandbox_calls(sandbox)
        sandbox.faults(outage=False)
        recovered = time.monotonic()
        wait_until(
            lambda: sum(counters(url)[k] for k in ("done", "failed")) >= total,
            timeout_s=600,
            what="every naive task to finish",
            interval_s=0.2,
        )
        drain_s = time.monotonic() - recovered
        naive.stop()
        counts = counters(url)
        report.rows.append(
            [
                "naive Celery + httpx autoretry",
                total,
                during,
                during / total,
                drain_s,
                counts["done"],
                counts["failed"],
            ]
        )
        report.data["naive"] = {**counts, "calls": during, "drain_s": drain_s}
    gbq, naive_data = report.data["gbq"], report.data["naive"]
    report.notes = [
        (
            f"gbq made {gbq['calls']:,} calls while Gameball was down "
            f"({gbq['calls'] / total:.3f} per event): the breaker opened and only probes went. "
            f"The naive task made {naive_data['calls']:,} ({naive_data['calls'] / total:.1f} per "
            f"event) and gave up on {naive_data['failed']:,} events for good."
        ),
        (
            "The drain after recovery includes the breaker's cool-down (GBQ_BREAKER_COOLDOWN_S, "
            "30 s by default) before the first probe; no rate limit is set on either side here. "
            "With Gameball's real limit the drain is bound by 12 calls/s (benchmark 3)."
        ),
        "One gbq worker (prefork × 4) and the scheduler; the naive worker is prefork × 4.",
    ]
    return report
