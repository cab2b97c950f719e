"""Benchmark 3: a backlog against Gameball's real limits.

2,000 events are waiting when the workers start; the sandbox enforces 30 calls/s and
360 calls per 30 s (so 12/s sustained) across all callers. gbq's shared GCRA limiter is
set to the same limits (its defaults). The naive Celery task meets the same sandbox.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from bench.baseline import counters, send_naive_posts, start_celery_worker
from bench.common import Report, percentile, services, wait_ready
from harness.processes import wait_until
from harness.scenario import generate

LIMITED = ("--rate-limit-per-s", "30", "--rate-limit-per-30s", "360", "--shared-rate-limit")
ALLOWED = 360 / 30
BATCH = 100


def rate_and_429s(rows: list[dict[str, Any]]) -> tuple[float, float]:
    """Applied calls per second from the first to the last, and the share of 429s."""
    applied = [float(row["at"]) for row in rows if row["applied"]]
    rate = (len(applied) - 1) / (applied[-1] - applied[0]) if len(applied) > 1 else 0.0
    return rate, sum(row["status"] == 429 for row in rows) / max(1, len(rows))


def run(folder: Path, *, quick: bool = False) -> Report:
    total = 300 if quick else 2_000
    events = generate(seed=301, orders=total // 3, total_events=total, prefix="B").events
    report = Report(
        name="drain",
        title="3. Rate-limited drain: a backlog against 30/s and 360/30 s",
        command="make bench BENCH=drain",
        columns=[
            "what",
            "events",
            "delivered",
            "applied calls/s",
            "÷ allowed 12/s",
            "429 share",
            "p50 time in queue s",
            "p99 time in queue s",
        ],
    )
    with services(folder) as running:
        sandbox = running.sandbox(*LIMITED)
        # gbq: the backlog first, then one worker (prefork x 4, the default) and the scheduler
        stack = running.stack(running.ledger(), sandbox.url)
        for start in range(0, total, BATCH):
            stack.publisher.publish_many(events[start : start + BATCH])
        published = time.time()
        worker = stack.start_worker("w1", concurrency=4)
        stack.start_scheduler()
        wait_ready(worker)
        settled = stack.wait_settled(total, timeout_s=total / ALLOWED * 3 + 120)
        rows = sandbox.requests()
        rate, share = rate_and_429s(rows)
        waits = [
            (event.delivered_at.timestamp() - published)
            for event in (stack.ledger.get(e.event_id) for e in events)
            if event is not None and event.delivered_at is not None
        ]
        report.rows.append(
            [
                "gbq (shared GCRA limiter)",
                total,
                settled["delivered"],
                rate,
                rate / ALLOWED,
                share,
                percentile(waits, 0.5),
                percentile(waits, 0.99),
            ]
        )
        report.data["gbq"] = {"rate": rate, "share_429": share, "calls": len(rows)}
        running.close_stacks()

        # The naive task: same backlog, same sandbox (fresh), same worker shape.
        sandbox.reset()
        running.flush_redis()
        send_naive_posts(running.redis.url, events)
        published = time.time()
        naive = start_celery_worker(
            running.folder, redis_url=running.redis.url, gameball_url=sandbox.url, concurrency=4
        )
        wait_ready(naive)
        wait_until(
            lambda: sum(counters(running.redis.url)[k] for k in ("done", "failed")) >= total,
            timeout_s=total / ALLOWED * 3 + 120,
            what="the naive backlog to finish",
            interval_s=0.2,
        )
        finished = time.time() - published
        naive.stop()
        rows = sandbox.requests()
        rate, share = rate_and_429s(rows)
        counts = counters(running.redis.url)
        report.rows.append(
            [
                "naive Celery + httpx autoretry",
                total,
                counts["done"],
                rate,
                rate / ALLOWED,
                share,
                "n/a",
                f"all settled after {finished:.0f}",
            ]
        )
        report.data["naive"] = {"rate": rate, "share_429": share, **counts}
    ideal = total / ALLOWED
    report.notes = [
        (
            f"The ideal drain of {total:,} events at 12/s takes {ideal:.0f} s, so a backlog's "
            "time in queue is its place in line ÷ 12: the p99 can be no lower than about "
            f"{0.99 * ideal:.0f} s."
        ),
        "Applied calls/s is measured by the sandbox, from its first applied call to its last.",
        (
            f"The naive task lost {report.data['naive']['failed']:,} of {total:,} events: "
            "429s raised, autoretry_for retried three times with backoff and then gave up."
        ),
    ]
    return report
