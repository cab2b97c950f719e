"""A scrape with the ledger or Redis unreachable still answers: the other source's
figures come, and gbq_ledger_up / gbq_redis_up say which is missing."""

from __future__ import annotations

from pathlib import Path

import redis
from prometheus_client import CollectorRegistry, generate_latest
from redis.backoff import NoBackoff
from redis.retry import Retry

from harness.processes import free_port
from harness.services import sqlite_ledger
from tests.promql import samples
from worker.ledger.engine import create_ledger_engine
from worker.ledger.repository import Ledger
from worker.ops.metrics import LedgerCollector


def nobody() -> redis.Redis:
    """A Redis client to a port where nothing listens, without redis-py's retries."""
    return redis.Redis(port=free_port(), socket_connect_timeout=1, retry=Retry(NoBackoff(), 0))


def scrape(ledger: Ledger, client: redis.Redis) -> dict[str, float]:
    registry = CollectorRegistry()
    registry.register(LedgerCollector(ledger, client, registry))
    return {name: value for name, labels, value in samples(generate_latest(registry).decode())}


def test_neither_source_answering_is_two_zeros_not_an_error(tmp_path: Path) -> None:
    missing = Ledger(create_ledger_engine(f"sqlite:///{tmp_path}/no/such/folder/ledger.db"))
    figures = scrape(missing, nobody())
    assert figures == {"gbq_ledger_up": 0.0, "gbq_redis_up": 0.0}


def test_the_ledger_figures_come_while_redis_is_down(tmp_path: Path) -> None:
    ledger = Ledger(create_ledger_engine(sqlite_ledger(tmp_path)))
    figures = scrape(ledger, nobody())
    assert figures["gbq_ledger_up"] == 1.0
    assert figures["gbq_redis_up"] == 0.0
    assert figures["gbq_oldest_sendable_age_seconds"] == 0.0
    assert "gbq_queue_depth" not in figures
