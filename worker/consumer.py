"""The worker's Celery consumer: it keeps unreadable messages as dead letters, and it
reconnects to Redis quickly.

Celery logs and acks (or rejects) a message it cannot decode, or whose task it does not
know: the message is gone. Here the raw body goes to the ledger as a dead letter
``malformed`` first, so ``gbq dlq`` can show it.

After losing Redis, Celery's consumer retries at 2, 4, 6 … up to 30 s apart (kombu's
defaults, not configurable in Celery): a 3 s Redis restart stopped every worker for about
20 s in the soak. Here it retries every 0.5 s, then every 1 s, at most 2 s apart.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from celery.worker.consumer import Consumer

log = logging.getLogger(__name__)


def _raw(body: Any, message: Any) -> str:
    raw = getattr(message, "body", body)
    if isinstance(raw, bytes):
        return raw.decode("utf-8", "replace")
    return str(raw)


def _keep(body: Any, message: Any, problem: str) -> None:
    from worker.runtime import runtime  # noqa: PLC0415 - the ledger is built on first need

    try:
        runtime().ledger.dead_letter_malformed(_raw(body, message), problem, datetime.now(UTC))
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
        _keep(None, message, f"cannot decode the message: {exc}")
        super().on_decode_error(message, exc)

    def on_unknown_message(self, body: Any, message: Any) -> None:
        _keep(body, message, "not a Celery task message")
        super().on_unknown_message(body, message)

    def on_unknown_task(self, body: Any, message: Any, exc: Exception) -> None:
        _keep(body, message, f"unknown task: {exc}")
        super().on_unknown_task(body, message, exc)

    def on_invalid_task(self, body: Any, message: Any, exc: Exception) -> None:
        _keep(body, message, f"invalid task message: {exc}")
        super().on_invalid_task(body, message, exc)
