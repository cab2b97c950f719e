"""``gbq web`` in a child process for the console's tests, and dead letters made in the
ledger the way the worker leaves them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import httpx
from sqlalchemy import bindparam, text

from harness.processes import free_port, wait_until
from harness.stack import Process, Stack
from producers.events import OrderPaid
from worker.ledger.core import new_event
from worker.ledger.models import UtcDateTime

T0 = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)


class ConsoleProcess:
    def __init__(self, stack: Stack, name: str = "web", **env: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process = Process(
            name,
            ["web", "--port", str(self.port)],
            {**stack.env, **env},
            stack.folder / f"{name}.log",
        )
        stack.processes.append(self.process)
        wait_until(self._answers, timeout_s=30, what="gbq web answers")

    def _answers(self) -> bool:
        assert self.process.alive(), self.process.output()
        try:
            return httpx.get(self.url + "/dlq", timeout=2).status_code in (200, 401)
        except httpx.TransportError:
            return False


def paid(order_id: str, total: int = 10, customer: str = "c-web") -> OrderPaid:
    return OrderPaid(
        order_id=order_id,
        customer_id=customer,
        occurred_at=T0,
        total_price=Decimal(total),
        total_paid=Decimal(total),
    )


def bury(stack: Stack, events: list[OrderPaid], message: str = "refused", code: int = 7) -> None:
    """Events in the ledger as dead letters ``rejected`` with Gameball's code and message,
    each dying a second after the one before (ties in time are tested separately)."""
    stack.ledger.ingest([new_event(event, None) for event in events], T0)
    with stack.ledger.engine.begin() as connection:
        for number, event in enumerate(events):
            connection.execute(
                text(
                    "UPDATE gbq_events SET state = 'dead', dead_reason = 'rejected', "
                    "last_status = 400, last_code = :code, last_message = :message, "
                    "attempts = 1, updated_at = :at WHERE event_id = :id"
                ).bindparams(bindparam("at", type_=UtcDateTime())),
                {
                    "code": code,
                    "message": message,
                    "id": event.event_id,
                    "at": T0 + timedelta(seconds=number),
                },
            )
