"""The worker's Celery consumer: it keeps unreadable messages as dead letters, and it
reconnects to Redis quickly.

Celery logs and acks (or rejects) a message it cannot decode, or whose task it does not
know: the message is gone. ``worker.process.transport`` already screens every raw item, so these
hooks are a second line: should one fire anyway, the raw message is quarantined first
(the scheduler keeps it as a dead letter ``malformed``), so ``gbq dlq`` can show it.

After losing Redis, Celery's consumer retries at 2, 4, 6 … up to 30 s apart (kombu's
defaults, not configurable in Celery): a 3 s Redis restart stopped every worker for about
20 s in the soak. Here it retries every 0.5 s, then every 1 s, at most 2 s apart.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from celery.worker.consumer import Consumer

from producers.quarantine import Poison

log = logging.getLogger(__name__)


def _raw(message: Any) -> bytes:
    raw = getattr(message, "_raw", None)
    if raw is not None:  # kombu's envelope as read from Redis
        try:
            return json.dumps(raw).encode()
        except (TypeError, ValueError, RecursionError):
            pass
    body = getattr(message, "body", b"")
    return body if isinstance(body, bytes) else str(body).encode("utf-8", "surrogatepass")


def _keep(message: Any, problem: str) -> None:
    try:
        message.channel.quarantine(Poison.of("consumer", problem, _raw(message)))
    except Exception:
        log.exception("could not keep a malformed message as a dead letter")


RECONNECT = {"interval_start": 0.5, "interval_step": 0.5, "interval_max": 2.0}


class DeadLetteringConsumer(Consumer):  # type: ignore[misc]
    def ensure_connected(self, conn: Any) -> Any:
        ensure = conn.ensure_connection

        def quickly(*args: Any, **kwargs: Any) -> Any:
            return ensure(*args, **{**RECONNECT, **kwargs})

        conn.ensure_connection = quickly
        return super().ensure_connected(conn)

    def on_decode_error(self, message: Any, exc: Exception) -> None:
        _keep(message, f"cannot decode the message: {exc}")
        super().on_decode_error(message, exc)

    def on_unknown_message(self, body: Any, message: Any) -> None:
        _keep(message, "not a Celery task message")
        super().on_unknown_message(body, message)

    def on_unknown_task(self, body: Any, message: Any, exc: Exception) -> None:
        _keep(message, f"unknown task: {exc}")
        super().on_unknown_task(body, message, exc)

    def on_invalid_task(self, body: Any, message: Any, exc: Exception) -> None:
        _keep(message, f"invalid task message: {exc}")
        super().on_invalid_task(body, message, exc)
