"""Gameball's own records of an order: what reconciliation compares the ledger with.

``GET /api/v3.0/integrations/order/{orderId}/transactions`` (v3.0) and
``GET /api/v4.x/integrations/orders/{orderId}/transactions`` (v4.0, v4.1) list the order's
transactions: ``{transactions: [{transactionDate, gameballTransactionId, transactionType,
amount, transactionId, equivalentPoints}], count}`` (openapi.json). Parsed leniently: only
``transactionId`` is needed, the rest is shown.

    GameballReadError(RuntimeError)   the read failed (transport, 5xx, refused): ask later
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import quote

from worker.gameball.client import GameballReadError
from worker.settings import ApiVersion

_NOT_FOUND = frozenset({303, 9002, 4004})


@dataclass(frozen=True)
class GameballRecord:
    """One transaction Gameball holds for an order."""

    transaction_id: str
    type: str
    amount: Any
    points: Any


class Reader(Protocol):
    def get_json(self, path: str) -> tuple[int, object]: ...


def order_records_path(order_id: str, version: ApiVersion) -> str:
    ident = quote(order_id, safe="")
    if version == "v3.0":
        return f"/api/v3.0/integrations/order/{ident}/transactions"
    return f"/api/{version}/integrations/orders/{ident}/transactions"


def order_records(reader: Reader, order_id: str, version: ApiVersion) -> list[GameballRecord]:
    """The order's transactions at Gameball (empty: Gameball does not know the order)."""
    status, body = reader.get_json(order_records_path(order_id, version))
    if status == 200 and isinstance(body, dict):
        rows = body.get("transactions")
        return (
            [_record(row) for row in rows if isinstance(row, dict)]
            if isinstance(rows, list)
            else []
        )
    code = body.get("code") if isinstance(body, dict) else None
    if status == 404 or code in _NOT_FOUND:
        return []
    raise GameballReadError(f"reading order {order_id!r} answered HTTP {status} (code {code})")


def _record(row: dict[str, Any]) -> GameballRecord:
    return GameballRecord(
        transaction_id=str(row.get("transactionId") or ""),
        type=str(row.get("transactionType") or ""),
        amount=row.get("amount"),
        points=row.get("equivalentPoints"),
    )
