"""Start the plain-Celery baselines (bench/naive_app.py) and feed them events."""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import redis
from celery import Celery

from bench.naive_app import CALLS_KEY, DONE_KEY, FAILED_KEY, QUEUE
from harness.stack import Process
from producers.events import Event
from worker.gameball.payloads import build_request
from worker.process.app import worker_argv

CELERY = [sys.executable, "-m", "celery"]
ROOT = Path(__file__).resolve().parent.parent


def start_celery_worker(
    folder: Path,
    *,
    redis_url: str,
    gameball_url: str = "http://127.0.0.1:9",
    name: str = "naive",
    concurrency: int = 2,
    pool: str = "prefork",
    **env: str,
) -> Process:
    """A plain Celery worker started with ``gbq worker``'s own arguments (no gossip or
    mingle) and its app's prefetch 1 and late acks, consuming the naive queue."""
    environment = {
        **_base_env(),
        "PYTHONPATH": str(ROOT),
        "BENCH_BROKER_URL": redis_url,
        "BENCH_GAMEBALL_URL": gameball_url,
        **env,
    }
    return Process(
        name,
        ["-A", "bench.naive_app", *worker_argv(concurrency, pool, "INFO", f"{name}@%h", QUEUE)],
        environment,
        folder / f"{name}.log",
        command=CELERY,
    )


def _base_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("GBQ_")}


@functools.cache
def sender(redis_url: str) -> Celery:
    """A Celery app that only sends, one per broker (a benchmark starts a new Redis)."""
    return Celery("bench-sender", broker=redis_url, set_as_current=False)


def send_noops(redis_url: str, count: int) -> None:
    app = sender(redis_url)
    for number in range(count):
        app.send_task("bench.noop", args=[number], queue=QUEUE)


def send_naive_posts(redis_url: str, events: Sequence[Event]) -> None:
    """What a hand-written integration enqueues: the same request bytes gbq sends."""
    app = sender(redis_url)
    for event in events:
        request = build_request(event, "v3.0")
        app.send_task("bench.naive_post", args=[request.path, request.body.decode()], queue=QUEUE)


def counters(redis_url: str) -> dict[str, int]:
    client = redis.Redis.from_url(redis_url)
    values = client.mget([DONE_KEY, FAILED_KEY, CALLS_KEY])
    client.close()
    return {
        "done": int(values[0] or 0),
        "failed": int(values[1] or 0),
        "calls": int(values[2] or 0),
    }
