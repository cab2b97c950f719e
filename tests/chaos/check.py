"""The exact end-of-soak check: pure functions over the history, the ledger's final rows,
and the sandbox's state and request log. Each returns divergences, first one first."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from math import floor
from typing import Any

from producers.events import CashbackAwarded, Event, OrderCancelled, OrderPaid, OrderRefunded
from tests.chaos.histories import PROMO, PROMO_MULTIPLIER, SEED_PREFIX, History
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
        elif invalid and not (row.state == "dead" and row.last_code in (302, 9001)):
            problems.append(
                f"{event.event_id}: a refund after its cancellation must die with 302/9001, "
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


def expected_wallets(
    events: Iterable[Event], delivered: set[str], seeded: Mapping[str, int] | None = None
) -> dict[str, int]:
    """Balances computed from the delivered events alone: the savers' seeded points; 1 point
    per unit paid (base), plus the bonus of a double-points campaign on promo lines, less
    the points an order redeemed; a refund takes back the cashback of the paid part it
    refunds and the bonus of the units it names, then returns redeemed points for the rest
    (how-refunds-work.mdx); a cancellation whatever the order has left, both ways."""
    balance: dict[str, int] = defaultdict(int, seeded or {})
    base_left: dict[str, Decimal] = {}
    redeemed_left: dict[str, int] = {}
    bonus: dict[str, dict[str, Decimal]] = {}  # order → product → bonus per unit
    units: dict[str, dict[str, int]] = {}  # order → product → units not refunded
    for event in sorted(events, key=lambda e: e.occurred_at):
        if event.event_id not in delivered:
            continue
        if isinstance(event, OrderPaid):
            base_left[event.order_id] = _base_points(event)
            redemption = event.redemption
            spent = 0 if redemption is None else int(redemption.redeemed_amount or 0)
            redeemed_left[event.order_id] = spent
            bonus[event.order_id] = {
                line.product_id: line.price * (PROMO_MULTIPLIER - 1)
                if PROMO in line.category
                else Decimal(0)
                for line in event.line_items
            }
            units[event.order_id] = {line.product_id: line.quantity for line in event.line_items}
            earned = base_left[event.order_id] + sum(
                (
                    bonus[event.order_id][line.product_id] * line.quantity
                    for line in event.line_items
                ),
                Decimal(0),
            )
            balance[event.customer_id] += int(earned) - spent
        elif isinstance(event, OrderRefunded):
            assert event.amount is not None  # the histories refund with amounts
            cash = min(event.amount, base_left[event.order_id])
            base_left[event.order_id] -= cash
            reversed_points = cash
            for line in event.line_items:
                taken = min(line.quantity, units[event.order_id][line.product_id])
                units[event.order_id][line.product_id] -= taken
                reversed_points += taken * bonus[event.order_id][line.product_id]
            returned = min(redeemed_left[event.order_id], int(event.amount - cash))
            redeemed_left[event.order_id] -= returned
            balance[event.customer_id] += returned - int(reversed_points)
        elif isinstance(event, OrderCancelled):
            left = base_left.pop(event.order_id) + sum(
                (
                    bonus[event.order_id][product] * count
                    for product, count in units.pop(event.order_id).items()
                ),
                Decimal(0),
            )
            balance[event.customer_id] += redeemed_left.pop(event.order_id) - int(left)
        elif isinstance(event, CashbackAwarded):
            balance[event.customer_id] += int(event.amount)
    return dict(balance)


def _base_points(paid: OrderPaid) -> Decimal:
    """1 point per unit paid; when the lines are worth more than what was paid (points
    paid part of it), each line earns its share of the paid total, floored line by line
    (the sandbox's rules: an order-level discount spread over the lines)."""
    values = [max(Decimal(0), line.gross - line.discount) for line in paid.line_items]
    covered = sum(values, Decimal(0))
    if covered <= paid.total_paid:
        return paid.total_paid
    return sum((floor(value * paid.total_paid / covered) for value in values), Decimal(0))


def _cancelled_by_refunds(events: Iterable[Event], applied: Mapping[str, int]) -> set[str]:
    """Cancellations of orders whose applied refunds had already returned the whole paid
    amount: Gameball counts such an order cancelled, and answers the cancellation 302."""
    paid: dict[str, Decimal] = {}  # the order's value: paid in money and in points
    refunded: dict[str, Decimal] = defaultdict(Decimal)
    for event in events:
        if isinstance(event, OrderPaid):
            points = event.redemption.redeemed_amount if event.redemption else None
            paid[event.order_id] = event.total_paid + (points or Decimal(0))
        elif isinstance(event, OrderRefunded) and event.event_id in applied:
            refunded[event.order_id] += event.amount or Decimal(0)
    return {
        event.event_id
        for event in events
        if isinstance(event, OrderCancelled)
        and event.order_id in paid
        and refunded[event.order_id] >= paid[event.order_id]
    }


def _reached_after_cancellation(events: Iterable[Event], applied: Mapping[str, int]) -> set[str]:
    """Refunds applied nowhere whose order's later cancellation was applied: one that
    reached Gameball after that cancellation (from a host's spool, say) is answered
    "already cancelled", and the cancellation took its share back."""
    events = list(events)  # read twice
    cancellation = {  # its position in its order, as ordering compares them
        event.order_id: (event.occurred_at, event.event_id)
        for event in events
        if isinstance(event, OrderCancelled) and event.event_id in applied
    }
    return {
        event.event_id
        for event in events
        if isinstance(event, OrderRefunded)
        and event.event_id not in applied
        and event.order_id in cancellation
        and (event.occurred_at, event.event_id) < cancellation[event.order_id]
    }


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
    by_transaction = {
        build_request(event, "v3.0").transaction_id: event for event in history.events
    }
    problems: list[str] = []
    applied: dict[str, int] = {}  # event_id -> seq of its applied call
    for call in log:
        if not call["applied"] or str(call["path"]).lower().endswith("/hold"):
            continue  # a hold is no transaction: the order that names it is
        if str(call["transaction_id"]).startswith(SEED_PREFIX):
            continue  # the savers' balances, seeded before the soak
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
    already = _cancelled_by_refunds(history.events, applied) | _reached_after_cancellation(
        history.events, applied
    )
    for event in history.events:
        row = rows.get(event.event_id)
        in_ledger = row is not None and row.state == "delivered"
        if event.event_id in already and in_ledger and row.last_code in (302, 9001):
            continue  # answered "already cancelled" (302): delivered, rightly not applied
        if in_ledger != (event.event_id in applied):
            problems.append(
                f"{event.event_id}: ledger says {row.state if row else 'nothing'}, sandbox "
                f"{'applied it' if event.event_id in applied else 'never applied it'}"
            )
    return problems
