"""kombu's Redis transport, hardened for Redis restarts.

Two things go wrong in kombu 5.x when the broker connection drops (kombu#970, #582; both
seen here on a Redis restart), each killing the worker's consumer for good:

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

from typing import Any

import redis
from kombu.transport import redis as kombu_redis


class Channel(kombu_redis.Channel):
    do_restore = False

    def _connparams(self, asynchronous: bool = False) -> Any:
        if self.connection is None or self.connection.client is None:
            raise redis.ConnectionError("the broker connection of this channel is closed")
        return super()._connparams(asynchronous=asynchronous)  # type: ignore[no-untyped-call]


class Transport(kombu_redis.Transport):
    Channel = Channel
