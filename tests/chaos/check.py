"""The exact end-of-soak check: pure functions over the history, the ledger's final rows,
and the sandbox's state and request log. Each returns divergences, first one first."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from producers.events import CashbackAwarded, Event, OrderCancelled, OrderPaid, OrderRefunded
from tests.chaos.histories import History
from worker.gameball.payloads import build_request


@dataclass(frozen=True)
class Row:
    """What the check needs of one ledger row."""

    event_id: str
    state: str
    dead_reason: str | None
    last_code: int | None


def check_settled(history: History, rows: Mapping[str, Row]) -> list[str]:
    """Every event is in the ledger; delivered, or dead only if the generator made it
    invalid (and then dead with Gameball's 302); nothing else is in the ledger."""
    problems = []
    for event in history.events:
        row = rows.get(event.event_id)
        invalid = event.event_id in history.invalid
        if row is None:
            problems.append(f"{event.event_id}: lost (not in the ledger)")
        elif invalid and not (row.state == "dead" and row.last_code == 302):
            problems.append(
                f"{event.event_id}: a refund after its cancellation must die with 302, "
                f"got {row.state}/{row.dead_reason}/{row.last_code}"
            )
        elif not invalid and row.state != "delivered":
            problems.append(
                f"{event.event_id}: {row.state} ({row.dead_reason}, code {row.last_code})"
            )
    known = {event.event_id for event in history.events}
    problems += [
        f"{event_id}: in the ledger but never published" for event_id in rows.keys() - known
    ]
    return problems


def expected_wallets(events: Iterable[Event], delivered: set[str]) -> dict[str, int]:
    """Balances computed from the delivered events alone: 1 point per unit paid, refunds
    take back their amount, a cancellation takes back what the order still had."""
    balance: dict[str, int] = defaultdict(int)
    left: dict[str, Decimal] = {}
    for event in sorted(events, key=lambda e: e.occurred_at):
        if event.event_id not in delivered:
            continue
        if isinstance(event, OrderPaid):
            left[event.order_id] = event.total_paid
            balance[event.customer_id] += int(event.total_paid)
        elif isinstance(event, OrderRefunded):
            left[event.order_id] -= event.amount
            balance[event.customer_id] -= int(event.amount)
        elif isinstance(event, OrderCancelled):
            balance[event.customer_id] -= int(left.pop(event.order_id))
        elif isinstance(event, CashbackAwarded):
            balance[event.customer_id] += int(event.amount)
    return dict(balance)


def check_wallets(expected: Mapping[str, int], wallets: Mapping[str, int]) -> list[str]:
    players = sorted(set(expected) | set(wallets))
    return [
        f"wallet {player}: sandbox {wallets.get(player, 0)}, expected {expected.get(player, 0)}"
        for player in players
        if wallets.get(player, 0) != expected.get(player, 0)
    ]


def check_calls(history: History, rows: Mapping[str, Row], log: list[dict[str, Any]]) -> list[str]:
    """From the sandbox's request log: no transaction applied twice; per order, the paid
    event applied before its refunds and cancellation, and those in the order they
    happened; the ledger and the sandbox agree on what was applied, event by event."""
    by_transaction = {build_request(event).transaction_id: event for event in history.events}
    problems: list[str] = []
    applied: dict[str, int] = {}  # event_id -> seq of its applied call
    for call in log:
        if not call["applied"]:
            continue
        event = by_transaction.get(str(call["transaction_id"]))
        if event is None:
            problems.append(f"sandbox applied unknown transaction {call['transaction_id']}")
            continue
        if event.event_id in applied:
            first = applied[event.event_id]
            problems.append(f"{event.event_id}: applied twice (calls {first} and {call['seq']})")
            continue
        applied[event.event_id] = int(call["seq"])
    orders: dict[str, list[Event]] = defaultdict(list)
    for event in history.events:
        if not isinstance(event, CashbackAwarded):
            orders[event.order_id].append(event)
    for order_id, events in orders.items():
        done = sorted(
            (e for e in events if e.event_id in applied), key=lambda e: applied[e.event_id]
        )
        happened = sorted(done, key=lambda e: e.occurred_at)
        if done != happened:
            problems.append(
                f"order {order_id}: applied as {[e.event_id for e in done]}, "
                f"happened as {[e.event_id for e in happened]}"
            )
    for event in history.events:
        row = rows.get(event.event_id)
        in_ledger = row is not None and row.state == "delivered"
        if in_ledger != (event.event_id in applied):
            problems.append(
                f"{event.event_id}: ledger says {row.state if row else 'nothing'}, sandbox "
                f"{'applied it' if event.event_id in applied else 'never applied it'}"
            )
    return problems
