"""kombu's Redis transport, hardened for hostile bytes and for Redis restarts.

**Hostile bytes.** Celery trusts what its broker hands it; kombu's Redis transport parses
each raw item (``loads``, base64) before Celery's consumer sees it. A raw item that breaks
either raises inside the worker's event loop and ends the worker, and, left in kombu's
unacked hash, comes back after the visibility timeout to end the restarted worker too.
Here every raw item is screened (``worker.rules.intake.screen``) at the first point we can
reach it: the reply of the ``BRPOP`` (event loop) or ``RPOP`` (synchronous loop) that
took it, through redis-py's per-client response callbacks, so kombu's own reading code
is untouched. An accepted item goes on rebuilt in canonical form; a refused one is
quarantined (``producers.quarantine``: the scheduler makes it a dead letter ``malformed``)
and kombu sees an empty poll. Entries of the unacked hash are screened the same way
before they are restored, and broadcast (pub/sub) messages that kombu cannot read are
dropped with a warning instead of ending the worker.

**Redis Sentinel.** A ``redis+sentinel://`` URL (which Celery's broker URL cannot carry:
``worker.process.app`` passes it as a transport option) gets a pool that asks the sentinels
for the primary on every new connection (``producers.redis_connect``), the event loop's
included: after a failover, kombu's reconnect lands on the new primary.

**Redis restarts.** Two things go wrong in kombu 5.x when the broker connection drops
(kombu#970, #582; both seen here on a Redis restart), each killing the worker's consumer:

1. On close, the channel pushes its unacknowledged messages back onto the queue. That
   needs a fresh client while the connection is being torn down, and raises
   AttributeError ('NoneType' object has no attribute 'hostname').
2. After the reconnect, a late ack for a message of the old channel goes through that
   channel, whose connection is gone: AttributeError ('... no attribute client').

Fix for 2: a channel without a connection raises ``redis.ConnectionError``, which kombu
expects there and merely logs ("Couldn't ack"). Fix for 1: no restore on close. Neither
loses anything: an event whose message is unacknowledged is ``pending`` or ``in_flight``
in the ledger, and the scheduler re-sends it (stale pending, expired lease); the message
left in kombu's unacked hash comes back after the visibility timeout and finds nothing
to do.
"""

from __future__ import annotations

import json
import logging
from queue import Empty
from typing import Any

import redis
import redis.connection
from kombu.transport import redis as kombu_redis
from redis.sentinel import SentinelManagedConnection, SentinelManagedSSLConnection

from producers.keys import QUEUE
from producers.quarantine import Poison, quarantine
from producers.redis_connect import sentinel_pool, server_kwargs
from producers.redis_url import is_sentinel_url, parse_sentinel_url
from producers.untrusted import UnreadableError, load_json, printable
from worker.rules.intake import MAX_MESSAGE_BYTES, Accepted, screen

SENTINEL_OPTION = "gbq_secret_redis_url"  # the transport option worker.process.app sets

log = logging.getLogger(__name__)
REPLY_QUEUE_SUFFIX = ".reply.celery.pidbox"  # where workers answer remote-control calls


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _readable_reply(item: Any, queue: Any) -> bool:
    """A control reply kombu can read (a bounded JSON object); anything else is dropped
    with a warning, so hostile bytes cannot end the control client either."""
    try:
        readable = isinstance(load_json(item, max_bytes=MAX_MESSAGE_BYTES), dict)
    except UnreadableError:
        readable = False
    if not readable:
        log.warning("dropped an unreadable control reply on %s", printable(queue, 100))
    return readable


def _reporting_disconnects(connection_class: type[Any], channel: Channel) -> type[Any]:
    """The event loop's connection class: a disconnect takes it off the poller (kombu)."""

    class Connection(connection_class):  # type: ignore[misc]
        def disconnect(self, *args: Any, **kwargs: Any) -> None:
            super().disconnect(*args, **kwargs)
            if channel._registered:
                channel._on_connection_disconnect(self)  # type: ignore[no-untyped-call]

    return Connection


class QoS(kombu_redis.QoS):
    def restore_by_tag(self, tag: Any, client: Any = None, leftmost: bool = False) -> None:
        """kombu's restore of one unacked message, with the entry screened first."""

        def restore_transaction(pipe: Any) -> None:
            entry = pipe.hget(self.unacked_key, tag)
            pipe.multi()
            self._remove_from_indices(tag, pipe)  # type: ignore[no-untyped-call]
            if entry:
                self.channel.restore_entry(entry, pipe, leftmost)

        with self.channel.conn_or_acquire(client) as connection:
            connection.transaction(restore_transaction, self.unacked_key)


class Channel(kombu_redis.Channel):
    QoS = QoS
    do_restore = False
    # A Sentinel URL, which Celery's broker URL cannot carry (worker.process.app)
    from_transport_options = (*kombu_redis.Channel.from_transport_options, SENTINEL_OPTION)  # type: ignore[assignment]
    gbq_secret_redis_url: str | None = None

    def _redis_url(self) -> str:
        """The URL this channel connects to: the Sentinel one, or the broker URL's."""
        if self.gbq_secret_redis_url:
            return self.gbq_secret_redis_url
        client = None if self.connection is None else self.connection.client
        return (client.hostname if client is not None else None) or ""

    def _connparams(self, asynchronous: bool = False) -> Any:
        """kombu's socket settings, then the URL as redis-py reads it (``Publisher`` does the
        same), so that every form (``redis://``, ``rediss://``, ``unix://``, its query
        options, Sentinel's) means one server and one database to checkout and worker
        alike."""
        if self.connection is None or self.connection.client is None:
            raise redis.ConnectionError("the broker connection of this channel is closed")
        url = self._redis_url()
        if "://" not in url:  # a hostname given without our broker URL: kombu's reading
            return super()._connparams(asynchronous=asynchronous)  # type: ignore[no-untyped-call]
        params: dict[str, Any] = {
            "max_connections": self.max_connections,
            "socket_timeout": self.socket_timeout,
            "socket_connect_timeout": self.socket_connect_timeout,
            "socket_keepalive": self.socket_keepalive,
            "socket_keepalive_options": self.socket_keepalive_options,
            "health_check_interval": self.health_check_interval,
            "retry_on_timeout": self.retry_on_timeout,
            "client_name": self.client_name,
            "db": 0,
        }
        if is_sentinel_url(url):
            target = parse_sentinel_url(url)
            params.update(server_kwargs(target))
            connection_class: type[Any] = (
                SentinelManagedSSLConnection
                if params.pop("ssl", False)
                else SentinelManagedConnection
            )
        else:
            params.update(redis.connection.parse_url(url))  # type: ignore[no-untyped-call]
            connection_class = params.get("connection_class") or redis.Connection
        if issubclass(connection_class, redis.UnixDomainSocketConnection):
            params.pop("socket_keepalive", None)  # TCP only
            params.pop("socket_keepalive_options", None)
        if asynchronous:
            connection_class = _reporting_disconnects(connection_class, self)
        params["connection_class"] = connection_class
        return params

    def _get_pool(self, asynchronous: bool = False) -> Any:
        """kombu's pool, or for a Sentinel URL one that follows the primary the sentinels
        name (``producers.redis_connect``)."""
        url = self._redis_url()
        if not is_sentinel_url(url):
            return super()._get_pool(asynchronous)  # type: ignore[no-untyped-call]
        params = self._connparams(asynchronous=asynchronous)
        self.keyprefix_fanout = self.keyprefix_fanout.format(db=params["db"])
        target = parse_sentinel_url(url)
        params.pop("host", None)
        params.pop("port", None)
        return sentinel_pool(target, **params)

    # --- screening what the queue hands over --------------------------------------------

    _sync_client: Any = None

    def _create_client(self, asynchronous: bool = False) -> Any:
        """kombu's client, screening. kombu builds a new synchronous client for every ack
        (``conn_or_acquire``); building one (its callback table) cost about 3 % of a
        worker's CPU, so it is kept for as long as the channel keeps its pool."""
        if not asynchronous:
            cached = self._sync_client
            if cached is not None and cached.connection_pool is self.pool:
                return cached
        client = super()._create_client(asynchronous)  # type: ignore[no-untyped-call]
        client.set_response_callback("BRPOP", self._screen_brpop_reply)
        client.set_response_callback("RPOP", self._screen_rpop_reply)
        if not asynchronous:
            self._sync_client = client
        return client

    def _screen_brpop_reply(self, reply: Any, **_: Any) -> tuple[Any, bytes] | None:
        if not reply:
            return None
        queue, item = reply
        if _text(queue).endswith(REPLY_QUEUE_SUFFIX):
            # A remote-control client (``celery inspect ping``, the compose health check)
            # reading the workers' replies: not gbq.deliver messages, and not a worker.
            return (queue, item) if _readable_reply(item, queue) else None
        screened = self._screened(item, f"queue {printable(queue, 100)}")
        return None if screened is None else (queue, screened)

    def _screen_rpop_reply(self, reply: Any, **_: Any) -> bytes | None:
        return self._screened(reply, "queue") if reply else None

    def _screened(self, raw: bytes, source: str) -> bytes | None:
        """The canonical item for kombu, or None (the raw item is quarantined)."""
        verdict = screen(raw)
        if isinstance(verdict, Accepted):
            return json.dumps(verdict.message).encode()
        self.quarantine(Poison.of(source, verdict.problem, raw))
        return None

    def quarantine(self, poison: Poison) -> None:
        """Hand ``poison`` to the scheduler (through Redis). A connection error propagates:
        kombu reconnects. Anything else leaves the poison in this log only."""
        log.warning(
            "refused a message from %s (%s): quarantined as dead letter %s",
            poison.source,
            poison.problem,
            poison.dead_letter_id,
        )
        try:
            with self.conn_or_acquire() as client:
                quarantine(client, [poison])
        except redis.ConnectionError:
            log.error("lost with the connection: %s", printable(poison.raw, 2000))  # noqa: TRY400
            raise
        except redis.RedisError as error:
            log.error(  # noqa: TRY400 - the error is the point, not a traceback
                "could not quarantine %s (%s): %s",
                poison.dead_letter_id,
                error,
                printable(poison.raw, 2000),
            )

    # --- the unacked hash -------------------------------------------------------------------

    def restore_entry(self, entry: bytes, pipe: Any, leftmost: bool) -> None:
        """Put an unacked entry ``[message, exchange, routing key]`` back on its queue, as a
        canonical message, or quarantine it."""
        try:
            message, queue = self._unacked(entry)
        except UnreadableError as error:
            quarantine(pipe, [Poison.of("unacked", str(error), entry)])
            return
        verdict = screen(json.dumps(message))
        if not isinstance(verdict, Accepted):
            quarantine(pipe, [Poison.of("unacked", verdict.problem, entry)])
            return
        (pipe.lpush if leftmost else pipe.rpush)(queue, json.dumps(verdict.message))

    def _unacked(self, entry: bytes) -> tuple[Any, str]:
        parts = load_json(entry, max_bytes=MAX_MESSAGE_BYTES + 1024)
        if not isinstance(parts, list) or len(parts) != 3:
            raise UnreadableError("not [message, exchange, routing_key]")
        message, exchange, queue = parts
        if (
            exchange != ""
            or not isinstance(queue, str)
            or queue not in {QUEUE, *self.active_queues}
        ):
            raise UnreadableError(f"routed to exchange {exchange!r:.40}, queue {queue!r:.40}")
        return message, queue

    def _restore(self, message: Any, leftmost: bool = False) -> None:
        """kombu's channel-level restore, through the same screen."""
        tag = message.delivery_tag

        def restore_transaction(pipe: Any) -> None:
            entry = pipe.hget(self.unacked_key, tag)
            pipe.multi()
            pipe.hdel(self.unacked_key, tag)
            if entry:
                self.restore_entry(entry, pipe, leftmost)

        with self.conn_or_acquire() as client:
            client.transaction(restore_transaction, self.unacked_key)

    # --- broadcast (remote control) messages ---------------------------------------------

    def _receive(self) -> Any:
        try:
            return super()._receive()  # type: ignore[no-untyped-call]
        except RecursionError:
            log.warning("dropped a broadcast message nested too deeply to read")
            return False

    def _deliver_fanout_message(self, message: Any, exchange: Any) -> Any:
        try:
            self.Message(message, channel=self)  # type: ignore[no-untyped-call] # can kombu?
        except Exception as error:  # noqa: BLE001 - any failure means unreadable
            log.warning(
                "dropped an unreadable broadcast message on %s (%s: %s)",
                printable(str(exchange), 100),
                type(error).__name__,
                printable(str(error), 200),
            )
            raise Empty from None
        return super()._deliver_fanout_message(message, exchange)  # type: ignore[no-untyped-call]


class Transport(kombu_redis.Transport):
    Channel = Channel
