"""What a worker process builds once: settings, ledger, Gameball client, Redis, deliverer.

Built lazily and per process id: Celery's prefork children must not share the parent's
database connections or sockets.
"""

from __future__ import annotations

import os
import socket
import threading
import uuid
from dataclasses import dataclass

from producers.transport import redis_client
from worker.coordination.liveness import Heartbeat
from worker.coordination.queue import RedisQueue
from worker.coordination.ratelimit import RateLimiter, RateLimits
from worker.coordination.shared_breaker import SharedBreaker, breaker_config
from worker.flows.delivery import Deliverer
from worker.gameball.client import client_for_process
from worker.ledger.engine import create_ledger_engine
from worker.ledger.repository import Ledger
from worker.rules.retry import RetryPolicy
from worker.settings import Settings, load_settings

REDIS_TIMEOUT_S = 10.0


@dataclass
class Runtime:
    settings: Settings
    ledger: Ledger
    queue: RedisQueue
    deliverer: Deliverer
    heartbeat: Heartbeat

    def close(self) -> None:
        """Stop beating and close the ledger's connections (a runtime built by hand, as
        tests do; a worker process's lives as long as the process)."""
        self.heartbeat.stop()
        self.ledger.engine.dispose()


_runtime: tuple[int, Runtime] | None = None
# Runtimes inherited across a fork stay referenced and untouched: closing (or garbage-
# collecting) their pooled connections in the child would act on the parent's database
# sessions; for SQLite in WAL mode a child closing an inherited handle can even delete the
# parent's WAL (SQLite: "do not carry an open database connection across a fork").
_inherited: list[Runtime] = []
_lock = threading.Lock()


def owner_prefix(pid: int) -> str:
    """What every lease-owner name of process ``pid`` on this host starts with."""
    return f"{socket.gethostname()}:{pid}:"


def owner_id() -> str:
    """This process's lease-owner name: host, pid and a nonce (pids get reused)."""
    return f"{owner_prefix(os.getpid())}{uuid.uuid4().hex[:8]}"


def build_runtime(settings: Settings) -> Runtime:
    ledger = Ledger(create_ledger_engine(settings.effective_database_url()))
    client = redis_client(settings.effective_redis_url(), REDIS_TIMEOUT_S)
    queue = RedisQueue(client, keep_done=settings.ledger_standbys > 0)
    owner = owner_id()
    heartbeat = Heartbeat(client, owner, settings.heartbeat_ttl_s).start()  # before any claim
    deliverer = Deliverer(
        ledger=ledger,
        gameball=client_for_process(settings),
        queue=queue,
        breaker=SharedBreaker(client, breaker_config(settings)),
        limiter=RateLimiter(client, RateLimits.from_settings(settings)),
        owner=owner,
        policy=RetryPolicy(
            settings.retry_base_s,
            settings.retry_cap_s,
            settings.retry_window_s,
            settings.pause_delay_s,
        ),
        lease_s=settings.lease_s,
        recheck_s=settings.redrive_after_s,
        api_version=settings.gameball_api_version,
        v3_refund_lines=settings.gameball_v3_refund_line_items,
        refund_time=settings.gameball_refund_time,
        refund_at_paid=settings.gameball_refund_at_paid,
        max_token_wait_s=settings.rate_limit_max_wait_s,
    )
    return Runtime(settings, ledger, queue, deliverer, heartbeat)


def runtime() -> Runtime:
    """This process's runtime, built on first use."""
    global _runtime  # noqa: PLW0603 - one per process is the point
    with _lock:
        if _runtime is None or _runtime[0] != os.getpid():
            if _runtime is not None:
                _inherited.append(_runtime[1])
            _runtime = (os.getpid(), build_runtime(load_settings()))
        return _runtime[1]
