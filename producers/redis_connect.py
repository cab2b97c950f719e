"""Connection pools for every form of ``GBQ_REDIS_URL``: one server, or the primary that
Redis Sentinel names (``producers.redis_url``).

A Sentinel pool asks the sentinels for the primary's address each time it opens a
connection. When the primary fails over, a command on a connection to the old one fails
as any lost connection does (``ConnectionError``; ``READONLY`` from an old primary that
came back as a replica), the caller does what it does for a lost connection
(``publish()`` spools, a delivery is retried, kombu reconnects), and the next connection
goes to the primary the sentinels name then. No process needs a restart, and each says
once in its log that the primary moved.
"""

from __future__ import annotations

import logging
import threading
from typing import Any
from urllib.parse import urlencode

import redis
from redis.sentinel import Sentinel, SentinelConnectionPool

from producers.redis_url import SentinelTarget, is_sentinel_url, parse_sentinel_url

log = logging.getLogger("gbq.redis")

# What this process last heard as each service's primary, so that a move is logged once
# however many pools (publisher, queue, Celery's) notice it.
_primaries: dict[tuple[Any, ...], tuple[str, int]] = {}
_primaries_lock = threading.Lock()


def connection_pool(url: str, **connection_kwargs: Any) -> redis.ConnectionPool:
    """A pool for ``url``: redis-py's reading of ``redis://``, ``rediss://`` and
    ``unix://``, or a Sentinel-managed pool for the Sentinel forms."""
    if is_sentinel_url(url):
        return sentinel_pool(parse_sentinel_url(url), **connection_kwargs)
    return redis.ConnectionPool.from_url(url, **connection_kwargs)


def sentinel_pool(target: SentinelTarget, **connection_kwargs: Any) -> SentinelConnectionPool:
    """A pool of connections to the primary of ``target``'s service. ``connection_kwargs``
    are the primary's (timeouts, retry, a connection class); the sentinels get the same
    socket and TLS settings, with their own credentials."""
    primary = {**connection_kwargs, **server_kwargs(target)}
    primary.pop("host", None)
    primary.pop("port", None)
    sentinels = {
        key: value
        for key, value in primary.items()
        if key.startswith(("socket_", "ssl_", "retry")) or key == "ssl"
    }
    sentinels["username"] = target.sentinel_username
    sentinels["password"] = target.sentinel_password
    manager = _ReportingSentinel(list(target.sentinels), sentinel_kwargs=sentinels)  # type: ignore[no-untyped-call]
    return _ClosingSentinelPool(target.service, manager, **primary)  # type: ignore[no-untyped-call]


class _ClosingSentinelPool(SentinelConnectionPool):
    """Closing the pool closes its connections to the sentinels too: redis-py leaves them
    open until the garbage collector finds them (and warns of unclosed sockets)."""

    def disconnect(self, inuse_connections: bool = True) -> None:
        super().disconnect(inuse_connections)
        if inuse_connections:  # a close; a primary's move disconnects only idle ones
            for sentinel in self.sentinel_manager.sentinels:
                sentinel.connection_pool.disconnect()


def server_kwargs(target: SentinelTarget) -> dict[str, Any]:
    """What a connection to the primary needs from the URL: database, credentials, TLS."""
    kwargs: dict[str, Any] = {"db": target.db}
    if target.username is not None:
        kwargs["username"] = target.username
    if target.password is not None:
        kwargs["password"] = target.password
    if target.tls:
        kwargs["ssl"] = True
        # redis-py's own reading of the TLS options, as for a rediss:// URL
        query = urlencode(target.tls_options)
        parsed = redis.connection.parse_url(f"rediss://localhost/0?{query}")  # type: ignore[no-untyped-call]
        kwargs.update({k: v for k, v in parsed.items() if k.startswith("ssl_")})
    return kwargs


def primary_moved(key: tuple[Any, ...], address: tuple[str, int]) -> tuple[str, int] | None:
    """Record ``address`` as the primary for ``key``; the one it replaces, if it moved."""
    with _primaries_lock:
        before = _primaries.get(key)
        _primaries[key] = address
    return before if before is not None and before != address else None


class _ReportingSentinel(Sentinel):
    """redis-py's Sentinel client, logging once per process when the primary moves."""

    def discover_master(self, service_name: str) -> tuple[str, int]:
        address: tuple[str, int] = super().discover_master(service_name)  # type: ignore[no-untyped-call]
        key = (service_name, *self._addresses)
        before = primary_moved(key, (str(address[0]), int(address[1])))
        if before is not None:
            log.warning(
                "Redis primary of %r moved from %s:%s to %s:%s (a Sentinel failover): following it",
                service_name,
                *before,
                *address,
            )
        return address

    @property
    def _addresses(self) -> tuple[str, ...]:
        return tuple(
            sorted(
                f"{s.connection_pool.connection_kwargs.get('host')}:"
                f"{s.connection_pool.connection_kwargs.get('port')}"
                for s in self.sentinels
            )
        )
