"""The heartbeat never stops while its process lives, whatever goes wrong in one beat."""

from __future__ import annotations

import threading
from typing import Any

import redis

from harness.processes import wait_until
from producers.keys import ALIVE_PREFIX
from worker.coordination.liveness import Heartbeat


class FlakyRedis:
    """Fails some SETs: a connection error, then an unexpected error, then works."""

    def __init__(self) -> None:
        self.failures = [redis.ConnectionError("down"), ValueError("surprise")]
        self.sets: list[tuple[str, int]] = []
        self.lock = threading.Lock()

    def set(self, key: str, value: bytes, px: int) -> None:
        with self.lock:
            if self.failures:
                raise self.failures.pop(0)
            self.sets.append((key, px))


def test_a_heartbeat_survives_failed_beats_and_keeps_beating() -> None:
    client: Any = FlakyRedis()
    Heartbeat(client, "host:1:abc", ttl_s=0.03).start()
    wait_until(lambda: len(client.sets) >= 3, timeout_s=10, what="three beats after failures")
    assert client.sets[0] == (ALIVE_PREFIX + "host:1:abc", 30)
