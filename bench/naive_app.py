"""The baselines: plain Celery, configured the way a user would write it by hand.

- ``bench.noop`` does nothing but count itself: the ceiling of Celery on this machine.
- ``bench.naive_post`` posts the same bytes to Gameball with httpx and
  ``autoretry_for`` + ``retry_backoff`` (Celery's documented recipe): no ledger, no
  ordering, no breaker, retries as ETA tasks, failures after ``max_retries`` are simply
  lost (counted here so the benchmark can report them).

Environment: BENCH_BROKER_URL, BENCH_GAMEBALL_URL, BENCH_ACKS_LATE (1/0),
BENCH_VISIBILITY_TIMEOUT_S (kombu's default is 3600), BENCH_MAX_RETRIES (Celery's default 3).
Run with ``celery -A bench.naive_app worker -Q naive``.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

import httpx
import redis
from celery import Celery, Task

from worker.settings import SANDBOX_API_KEY, SANDBOX_SECRET_KEY

BROKER = os.environ.get("BENCH_BROKER_URL", "redis://127.0.0.1:6379/0")
QUEUE = "naive"
DONE_KEY = "bench:done"
FAILED_KEY = "bench:failed"
CALLS_KEY = "bench:calls"
TIMES_KEY = "bench:times"  # JSON [key, started, ended] per task given a key (bench/latency.py)

app = Celery("naive", broker=BROKER)
app.conf.update(
    task_default_queue=QUEUE,
    task_acks_late=os.environ.get("BENCH_ACKS_LATE", "1") == "1",
    worker_prefetch_multiplier=1,
    task_serializer="json",
    accept_content=["json"],
    broker_connection_retry_on_startup=True,
    broker_transport_options={
        "visibility_timeout": float(os.environ.get("BENCH_VISIBILITY_TIMEOUT_S", "3600"))
    },
    worker_hijack_root_logger=False,
)

_counter = redis.Redis.from_url(BROKER)
_http: tuple[int, httpx.Client] | None = None


def http() -> httpx.Client:
    """One client per process (prefork children must not share the parent's sockets)."""
    global _http  # noqa: PLW0603 - a per-process cache, like worker.process.runtime
    if _http is None or _http[0] != os.getpid():
        client = httpx.Client(
            base_url=os.environ.get("BENCH_GAMEBALL_URL", "http://127.0.0.1:8099"),
            headers={
                "APIKey": SANDBOX_API_KEY,
                "secretKey": SANDBOX_SECRET_KEY,
                "Content-Type": "application/json",
            },
            timeout=10,
        )
        _http = (os.getpid(), client)
    return _http[1]


@app.task(name="bench.noop")  # type: ignore[untyped-decorator]
def noop(key: Any = None) -> None:
    if isinstance(key, str):  # the latency benchmark: when the task started
        now = time.time()
        _counter.rpush(TIMES_KEY, json.dumps([key, now, now]))
    _counter.incr(DONE_KEY)


class CountFailures(Task):  # type: ignore[misc]
    def on_failure(self, *_: Any) -> None:
        _counter.incr(FAILED_KEY)


@app.task(  # type: ignore[untyped-decorator]
    name="bench.naive_post",
    base=CountFailures,
    autoretry_for=(httpx.HTTPError,),
    retry_backoff=True,
    max_retries=int(os.environ.get("BENCH_MAX_RETRIES", "3")),
)
def naive_post(path: str, body: str, key: str | None = None) -> None:
    _counter.incr(CALLS_KEY)
    started = time.time()
    response = http().post(path, content=body)
    response.raise_for_status()
    if key is not None:  # the latency benchmark: the call's start and the task's end
        _counter.rpush(TIMES_KEY, json.dumps([key, started, time.time()]))
    _counter.incr(DONE_KEY)
