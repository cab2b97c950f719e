"""Spools made visible: each relayer says in Redis how much its spool still holds.

A spool lives on the checkout host that wrote it, where no ``gbq status`` looks. So
whoever relays a spool (its publisher, a scheduler sharing the path) writes a report to
the hash ``gbq:spools``, one field per host and spool path: how many events wait, the
oldest one's publish time, and when this was seen (a count of 0 once it is empty).
``gbq status``, the console and the ``gbq_spooled_events`` metric read them. A report
whose ``seen_at`` is old belongs to a host that stopped relaying (its process gone before
Redis came back, say): the events are still on that host's disk.

The hash is writable by any producer, so a report is read as hostile input: anything
that is not one is skipped.
"""

from __future__ import annotations

import json
import math
import socket
import time
from dataclasses import dataclass
from typing import Final

import redis

from producers.keys import SPOOLS_KEY
from producers.spool import Spool
from producers.untrusted import UnreadableError, load_json

MAX_REPORTS: Final = 1000
MAX_REPORT_BYTES: Final = 4096


@dataclass(frozen=True)
class SpoolReport:
    host: str
    path: str
    count: int
    oldest: float | None  # epoch seconds: the oldest waiting event's publish time
    seen_at: float  # epoch seconds: when its relayer last looked

    def oldest_age_s(self, now: float) -> float | None:
        return None if self.oldest is None else max(0.0, now - self.oldest)


def report_field(spool: Spool) -> str:
    return f"{socket.gethostname()}:{spool.path.resolve()}"


def report(client: redis.Redis, spool: Spool) -> int:
    """Write this spool's report; returns its count. An empty spool's report stays, with
    a count of 0 (the producers' ACL user may set fields, not delete them)."""
    count, oldest = spool.backlog()
    value = {
        "host": socket.gethostname(),
        "path": str(spool.path.resolve()),
        "count": count,
        "oldest": oldest,
        "seen_at": time.time(),
    }
    client.hset(SPOOLS_KEY, report_field(spool), json.dumps(value))
    return count


def reports(client: redis.Redis) -> list[SpoolReport]:
    """Every readable report of a spool that holds events, most events first."""
    found = []
    for _, raw in client.hscan_iter(SPOOLS_KEY, count=MAX_REPORTS):
        parsed = _parsed(raw)
        if parsed is not None and parsed.count > 0:
            found.append(parsed)
        if len(found) >= MAX_REPORTS:
            break
    return sorted(found, key=lambda item: (-item.count, item.host, item.path))


def _parsed(raw: bytes) -> SpoolReport | None:
    try:
        data = load_json(raw, max_bytes=MAX_REPORT_BYTES)
    except UnreadableError:
        return None
    if not isinstance(data, dict):
        return None
    host, path, count = data.get("host"), data.get("path"), data.get("count")
    oldest, seen_at = data.get("oldest"), data.get("seen_at")
    if not (isinstance(host, str) and isinstance(path, str)):
        return None
    if isinstance(count, bool) or not isinstance(count, int) or count < 0:
        return None
    seen = _finite(seen_at)
    first = None if oldest is None else _finite(oldest)
    if seen is None or (oldest is not None and first is None):
        return None
    return SpoolReport(host, path, count, first, seen)


def _finite(value: object) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return None
