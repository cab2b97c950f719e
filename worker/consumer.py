"""A Celery consumer that keeps unreadable messages as dead letters instead of dropping them.

Celery logs and acks (or rejects) a message it cannot decode, or whose task it does not
know: the message is gone. Here the raw body goes to the ledger as a dead letter
``malformed`` first, so ``gbq dlq`` can show it.
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


class DeadLetteringConsumer(Consumer):  # type: ignore[misc]
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
