"""Gameball's own records: what reconciliation compares the ledger with, and what the
worker reads to settle an ambiguous answer.

- An order's transactions: ``GET /api/v3.0/integrations/order/{orderId}/transactions``
  (v3.0) and ``GET /api/v4.x/integrations/orders/{orderId}/transactions`` (v4.0, v4.1) →
  ``{transactions: [{transactionDate, gameballTransactionId, transactionType, amount,
  transactionId, equivalentPoints}], count}`` (openapi.json).
- Transactions by id or by customer (a cashback has no order to read it by): v3.0
  ``GET /api/v3.0/integrations/transaction/list?transactionId=…`` (the official Python and
  PHP SDKs' filter); v4.x ``GET /api/v4.x/integrations/transactions?customerId=…
  &startAfter=…&limit=…`` → ``{transactions: [{transactionId, gameballTransactionId, type,
  points, amount, transactionTime, …}], count, hasMore}`` (openapi.json; ``startAfter`` is
  the last row's ``gameballTransactionId``, ``limit`` at most 200).
- A customer's balance: v3.0 ``player/{id}/balance``; v4.x ``customers/{id}/balance`` →
  ``{totalPointsBalance, availablePointsBalance, pendingPoints, …Value, currency, …}``.

Parsed leniently, under either API's names: only ``transactionId`` is needed, the rest is
shown and compared.

    GameballReadError(RuntimeError)   the read failed (transport, 5xx, refused): ask later
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final, Protocol
from urllib.parse import quote, urlencode

from worker.gameball.client import GameballReadError
from worker.gameball.versions import ApiVersion

_NOT_FOUND: Final = frozenset({303, 9002, 4004, 101, 7000})
PAGE_SIZE: Final = 100  # v3.0's list
V4_PAGE_SIZE: Final = 200  # the most v4's GET /transactions gives per page (openapi.json)
MAX_PAGES: Final = 100  # 20,000 transactions of one customer: beyond that, ask by order


@dataclass(frozen=True)
class GameballRecord:
    """One transaction Gameball holds."""

    transaction_id: str
    type: str
    amount: Any
    points: Any
    customer_id: str = ""
    date: str = ""
    gameball_id: str = ""  # Gameball's own id: v4's list pages by it


class Reader(Protocol):
    def get_json(self, path: str) -> tuple[int, object]: ...


def _base(version: ApiVersion) -> str:
    return f"/api/{version}/integrations"


def order_records_path(order_id: str, version: ApiVersion) -> str:
    noun = "order" if version == "v3.0" else "orders"
    return f"{_base(version)}/{noun}/{quote(order_id, safe='')}/transactions"


def order_records(reader: Reader, order_id: str, version: ApiVersion) -> list[GameballRecord]:
    """The order's transactions at Gameball (empty: Gameball does not know the order)."""
    body = _read(reader, order_records_path(order_id, version), f"order {order_id!r}")
    return [] if body is None else _rows(body)


def transaction_records(
    reader: Reader, transaction_id: str, customer_id: str, version: ApiVersion
) -> list[GameballRecord]:
    """Every transaction Gameball holds under ``transaction_id`` (any customer in v3.0,
    where the list filters by id; ``customer_id``'s in v4.x, where it lists by customer)."""
    if version == "v3.0":
        query = urlencode({"transactionId": transaction_id, "limit": PAGE_SIZE})
        body = _read(reader, f"{_base(version)}/transaction/list?{query}", repr(transaction_id))
        rows = [] if body is None else _rows(body)
    else:
        rows = customer_records(reader, customer_id, version)
    return [row for row in rows if row.transaction_id == transaction_id]


def customer_records(reader: Reader, customer_id: str, version: ApiVersion) -> list[GameballRecord]:
    """All of a customer's transactions (v4.x; v3.0 has no list by customer), page by
    page: each page starts after the last row's ``gameballTransactionId`` until Gameball
    says ``hasMore`` is false."""
    if version == "v3.0":
        raise GameballReadError("v3.0 lists transactions by id only, not by customer")
    rows: list[GameballRecord] = []
    start_after = 0
    what = f"customer {customer_id!r}"
    for _ in range(MAX_PAGES):
        query = {"customerId": customer_id, "limit": V4_PAGE_SIZE}
        if start_after:
            query["startAfter"] = start_after
        body = _read(reader, f"{_base(version)}/transactions?{urlencode(query)}", what)
        batch = [] if body is None else _rows(body)
        rows += batch
        if body is None or not batch or body.get("hasMore") is not True:
            return rows
        last = _gameball_id(batch[-1])
        if last is None or last <= start_after:
            raise GameballReadError(f"reading {what}: a page ends without a later position")
        start_after = last
    raise GameballReadError(f"{what} has over {MAX_PAGES * V4_PAGE_SIZE} transactions")


def _gameball_id(record: GameballRecord) -> int | None:
    try:
        return int(record.gameball_id)
    except ValueError:
        return None


def customer_balance(
    reader: Reader, customer_id: str, version: ApiVersion
) -> dict[str, Any] | None:
    """The customer's balance as Gameball answers it (None: Gameball does not know them)."""
    noun = "player" if version == "v3.0" else "customers"
    path = f"{_base(version)}/{noun}/{quote(customer_id, safe='')}/balance"
    return _read(reader, path, f"customer {customer_id!r}")


def _read(reader: Reader, path: str, what: str) -> dict[str, Any] | None:
    status, body = reader.get_json(path)
    if status == 200 and isinstance(body, dict):
        return body
    code = body.get("code") if isinstance(body, dict) else None
    if status == 404 or code in _NOT_FOUND:
        return None
    raise GameballReadError(f"reading {what} answered HTTP {status} (code {code})")


def _rows(body: dict[str, Any]) -> list[GameballRecord]:
    rows = body.get("transactions")
    if not isinstance(rows, list):
        return []
    return [_record(row) for row in rows if isinstance(row, dict)]


def _record(row: dict[str, Any]) -> GameballRecord:
    """A row of either shape: an order's transactions (``transactionType``,
    ``equivalentPoints``, ``transactionDate``) or v4's list (``type``, ``points``,
    ``transactionTime``)."""
    return GameballRecord(
        transaction_id=str(row.get("transactionId") or ""),
        type=str(row.get("transactionType") or row.get("type") or ""),
        amount=row.get("amount"),
        points=row.get("equivalentPoints", row.get("points")),
        customer_id=str(row.get("customerId") or row.get("playerUniqueId") or ""),
        date=str(row.get("transactionDate") or row.get("transactionTime") or ""),
        gameball_id=str(row.get("gameballTransactionId") or ""),
    )
