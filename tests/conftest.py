"""Shared fixtures: a real sandbox process on loopback, reset before each test."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from pydantic import SecretStr
from sqlalchemy import Engine

from harness.processes import NO_RATE_LIMIT, SandboxProcess
from harness.sentinel import SentinelGroup
from harness.services import (
    PostgresSchema,
    RedisServer,
    TlsRedisServer,
    sqlite_ledger,
    start_tls_redis,
)
from harness.stack import Stack
from producers.redis_connect import connection_pool
from worker.ledger.engine import create_ledger_engine
from worker.ledger.repository import Ledger
from worker.settings import SANDBOX_API_KEY, SANDBOX_SECRET_KEY, Settings


@pytest.fixture(scope="session")
def sandbox_process(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SandboxProcess]:
    log = tmp_path_factory.mktemp("sandbox") / "sandbox.log"
    process = SandboxProcess(log, NO_RATE_LIMIT)
    yield process
    process.stop()


@pytest.fixture
def sandbox(sandbox_process: SandboxProcess) -> SandboxProcess:
    """The session's sandbox with fresh state, no faults and default rules."""
    sandbox_process.reset()
    sandbox_process.rules(
        points_per_unit="1",
        min_order_value="0",
        max_cashback_per_order=None,
        category_rates={},
        exclude_tax_and_shipping=False,
        full_refund_at_paid=True,
    )
    return sandbox_process


@pytest.fixture
def start_sandbox(tmp_path: Path) -> Iterator[type[SandboxProcess]]:
    """Start extra sandboxes with their own options; all stop when the test ends."""
    started: list[SandboxProcess] = []

    class Started(SandboxProcess):
        def __init__(self, *args: str) -> None:
            super().__init__(tmp_path / f"sandbox-{len(started)}.log", args)
            started.append(self)

    yield Started
    for process in started:
        process.stop()


def settings_for(url: str, **overrides: object) -> Settings:
    """Settings pointing at a sandbox, independent of the caller's GBQ_ environment."""
    values: dict[str, object] = {
        "gameball_base_url": url,
        "gameball_api_key": SecretStr(SANDBOX_API_KEY),
        "gameball_secret_key": SecretStr(SANDBOX_SECRET_KEY),
        "gameball_api_version": "v3.0",
        "gameball_read_timeout_s": 5.0,
    }
    values.update(overrides)
    return Settings(**values)  # type: ignore[arg-type]


# --- Step 2: Redis, ledgers and the whole stack -------------------------------------------

DATABASES = ["sqlite", "postgresql"]


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path_factory.mktemp("redis")).start()
    yield server
    server.kill()


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    """A Redis URL with an empty database: GBQ_TEST_REDIS_URL, or the fixture's server."""
    url = os.environ.get("GBQ_TEST_REDIS_URL") or redis_server.url
    client = redis.Redis.from_url(url)
    client.flushdb()
    client.close()
    return url


# Every form of GBQ_REDIS_URL a user runs: TCP, the unix socket (the embedded default's
# form), TLS, Sentinel. The promises' tests (poison, spool, retention) take
# ``any_redis_url``.
REDIS_FORMS = ["tcp", "unix", "tls", "sentinel"]


@pytest.fixture(scope="session")
def tls_redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsRedisServer]:
    server = start_tls_redis(tmp_path_factory.mktemp("tls-redis"))
    yield server
    server.stop()


@pytest.fixture(scope="session")
def sentinel_group(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SentinelGroup]:
    """A primary and a replica behind three sentinels (Debian's redis-server)."""
    group = SentinelGroup(tmp_path_factory.mktemp("sentinel"))
    yield group
    group.stop()


@pytest.fixture(params=REDIS_FORMS)
def any_redis_url(request: pytest.FixtureRequest, redis_url: str, redis_server: RedisServer) -> str:
    """An empty Redis database over each form: ``redis_url``, the same server's unix socket,
    a TLS server (Debian's redis-server; a skip without it, a failure in CI), or the
    primary of a Sentinel group."""
    if request.param == "tcp":
        return redis_url
    if request.param == "unix":
        url = redis_server.unix_url
    elif request.param == "tls":
        url = request.getfixturevalue("tls_redis_server").url()
    else:
        url = request.getfixturevalue("sentinel_group").url
    client = redis_for(url)
    client.flushdb()
    client.close()
    return url


def redis_for(url: str, **connection_kwargs: Any) -> redis.Redis:
    """A plain client on any form of GBQ_REDIS_URL (Sentinel's included)."""
    return redis.Redis.from_pool(connection_pool(url, **connection_kwargs))


@pytest.fixture(params=DATABASES)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A migrated, empty ledger: SQLite always; PostgreSQL when GBQ_TEST_DATABASE_URL is set."""
    if request.param == "sqlite":
        yield sqlite_ledger(tmp_path)
        return
    base = os.environ.get("GBQ_TEST_DATABASE_URL")
    if not base:
        pytest.skip("GBQ_TEST_DATABASE_URL is not set (.ci/run sets it when PostgreSQL answers)")
    schema = PostgresSchema(base)
    yield schema.url
    schema.drop()


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    """A ledger engine on ``database_url``, disposed afterwards."""
    engine = create_ledger_engine(database_url)
    yield engine
    engine.dispose()


@pytest.fixture
def ledger(engine: Engine) -> Ledger:
    """The ledger's operations on ``database_url``."""
    return Ledger(engine)


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return sqlite_ledger(tmp_path)


@pytest.fixture
def make_stack(tmp_path: Path, redis_url: str, sandbox: SandboxProcess) -> Iterator[type[Stack]]:
    """Build a Stack on the test's Redis and sandbox; everything stops after the test."""
    stacks: list[Stack] = []

    class TestStack(Stack):
        def __init__(
            self,
            database_url: str,
            *,
            redis: str | None = None,
            gameball: str | None = None,
            **overrides: str,
        ) -> None:
            folder = tmp_path / f"stack-{len(stacks)}"
            folder.mkdir()
            super().__init__(
                folder,
                redis_url=redis or redis_url,
                database_url=database_url,
                gameball_url=gameball or sandbox.url,
                **overrides,
            )
            stacks.append(self)

    yield TestStack
    for stack in stacks:
        stack.close()


@pytest.fixture
def driven_settings(
    sandbox: SandboxProcess, redis_url: str, database_url: str, tmp_path: Path
) -> Settings:
    """Settings for deliveries a test drives by hand (``build_runtime``, ``handle``): no
    rate limit, and neither the scheduler's re-check nor a breaker probe comes to help."""
    return settings_for(
        sandbox.url,
        redis_url=SecretStr(redis_url),
        database_url=SecretStr(database_url),
        home=tmp_path,
        rate_limit_per_s=0,
        rate_limit_per_30s=0,
        redrive_after_s=3600.0,
        breaker_cooldown_s=30.0,
    )


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The slowest tests first: pytest-xdist hands tests out in this order, one to each
    core in turn, and one left for the end keeps a core busy while the other waits. A rank
    orders them further: the two drain tests (three workers each) then go to one core one
    after the other, not side by side."""

    def order(item: pytest.Item) -> tuple[int, int]:
        slow = item.get_closest_marker("slow")
        return (1, 0) if slow is None else (0, int(slow.kwargs.get("rank", 9)))

    items.sort(key=order)
