"""Reconciliation: the ledger's view of an order against Gameball's own records (pure).

Per event, and per Gameball transaction the ledger does not know:

    agreed                 delivered here, and Gameball holds it (or answered "already
                           cancelled" to a cancellation it has no record of)
    missing_at_gameball    delivered here, but Gameball holds no such transaction: re-drive
    applied_not_recorded   Gameball holds it, the ledger does not say delivered yet (in
                           progress: the next attempt's "already exists" settles it; dead:
                           the dead letter was in fact applied)
    not_sent               neither: in progress, or dead and not applied (consistent)
    unknown_to_us          a transaction of the order gbq never sent
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from enum import StrEnum

from producers.events import CashbackAwarded, Event, InvalidEventError, parse_event
from worker.gameball.payloads import transaction_id_of
from worker.gameball.records import GameballRecord
from worker.ledger.order_memory import OrderMemory, OrderRow

_ANSWERED_CANCELLED = frozenset({302, 9001})


class Verdict(StrEnum):
    AGREED = "agreed"
    MISSING_AT_GAMEBALL = "missing_at_gameball"
    APPLIED_NOT_RECORDED = "applied_not_recorded"
    NOT_SENT = "not_sent"
    UNKNOWN_TO_US = "unknown_to_us"


CONSISTENT = frozenset({Verdict.AGREED, Verdict.NOT_SENT})


@dataclass(frozen=True)
class LedgerView:
    """What the ledger knows of one event of the order."""

    event_id: str
    kind: str
    state: str
    transaction_id: str
    last_code: int | None = None


@dataclass(frozen=True)
class Finding:
    order_id: str | None  # None: a cashback (no order)
    transaction_id: str
    event_id: str | None  # None: a transaction gbq does not know
    ledger_state: str | None
    at_gameball: bool
    verdict: Verdict


def ledger_view(
    event_id: str, kind: str, state: str, payload: str, last_code: int | None
) -> LedgerView | None:
    """The view of a ledger row (None for a row that holds no readable event)."""
    try:
        event = parse_event(payload, accepted=True)
    except InvalidEventError:
        return None
    return LedgerView(event_id, kind, state, transaction_id_of(event), last_code)


def order_views(live: Sequence[OrderRow], memory: OrderMemory) -> list[LedgerView]:
    """The views of an order's rows in the ledger, and of those retention removed
    (delivered, from the order's memory)."""
    views = [view for row in live if (view := ledger_view(*row))]
    held = {row[0] for row in live}
    return views + [
        LedgerView(event.event_id, event.kind, "delivered", event.transaction_id)
        for event in memory.events
        if event.event_id not in held
    ]


def reconcile(
    order_id: str | None, ledger: Sequence[LedgerView], records: Sequence[GameballRecord]
) -> list[Finding]:
    held = {record.transaction_id for record in records}
    findings = []
    for view in ledger:
        at = view.transaction_id in held
        if view.state == "delivered":
            cancelled = (
                view.kind in ("cancelled", "refunded") and view.last_code in _ANSWERED_CANCELLED
            )
            verdict = Verdict.AGREED if at or cancelled else Verdict.MISSING_AT_GAMEBALL
        else:
            verdict = Verdict.APPLIED_NOT_RECORDED if at else Verdict.NOT_SENT
        findings.append(
            Finding(order_id, view.transaction_id, view.event_id, view.state, at, verdict)
        )
    known = {view.transaction_id for view in ledger}
    findings += [
        Finding(order_id, record.transaction_id, None, None, True, Verdict.UNKNOWN_TO_US)
        for record in records
        if record.transaction_id not in known
    ]
    return findings


def holds_ours(event: Event, records: Sequence[GameballRecord]) -> bool:
    """Whether Gameball's ``records`` show the event's own transaction (its id answered
    "already exists"): for an order's events, the id among the order's transactions, of
    the event's customer; for a cashback (no order to read), also its amount. Otherwise another
    transaction holds the id (Gameball's order, refund and cashback ids share one
    namespace), and the event was never applied."""
    ours = transaction_id_of(event)
    return any(
        record.transaction_id == ours
        and record.customer_id in ("", event.customer_id)
        and (not isinstance(event, CashbackAwarded) or _same_amount(record.amount, event.amount))
        for record in records
    )


def _same_amount(value: object, amount: Decimal) -> bool:
    if value is None:
        return True  # not shown: the id and the customer decide
    try:
        return Decimal(str(value)) == amount
    except InvalidOperation:
        return False
