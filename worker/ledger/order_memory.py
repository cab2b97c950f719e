"""What the ledger remembers of an order whose delivered events retention removed.

Only what later events of the order need, not the events' content:

- each removed event's id, kind, time and Gameball transaction id: ordering needs to know
  the paid event was delivered (a refund may come months later), and `gbq reconcile`
  matches Gameball's records against them;
- the paid event's lines (product, quantity, unit price), once it is removed: a
  cancellation or full refund names the lines not yet refunded;
- the quantities per product of the removed delivered refunds, which those lines lose.

- the paid event's currency and total paid, once it is removed: a refund in another
  currency is not sent, one of the whole paid total may be a full refund.

Encoded as one small JSON object per order (``{"e": [[id, kind, epoch s, tx?]], "l":
[[product, quantity, price]], "r": {product: quantity}, "c": currency, "p": total
paid}``; ``tx`` is left out when it is the order id): about a tenth of the content it
replaces. Pure: no I/O.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from producers.events import Event, OrderPaid, OrderRefunded, parse_event
from worker.gameball.payloads import refunded_quantities, transaction_id_of
from worker.rules.states import EventState

DEFAULT_CURRENCY = "USD"  # an event without one (producers.events)

Line = tuple[str, int, str]  # product id, quantity, unit price (decimal text)
OrderRow = tuple[str, str, str, str, int | None]  # event_id, kind, state, payload, last_code


@dataclass(frozen=True)
class RememberedEvent:
    event_id: str
    kind: str
    occurred_at: datetime
    transaction_id: str


@dataclass(frozen=True)
class OrderMemory:
    events: tuple[RememberedEvent, ...] = ()
    paid_lines: tuple[Line, ...] | None = None  # None: the paid event was not removed
    refunded: Mapping[str, int] = field(default_factory=dict)
    currency: str | None = None  # the paid event's, once it is removed
    total_paid: str | None = None  # the paid event's (decimal text), once it is removed

    def with_removed(self, removed: Iterable[tuple[Event, datetime]]) -> OrderMemory:
        """This memory and the removed (event, occurred_at) pairs; an event it holds
        already is not counted twice."""
        known = {event.event_id for event in self.events}
        events, paid_lines, refunded = list(self.events), self.paid_lines, Counter(self.refunded)
        currency, total_paid = self.currency, self.total_paid
        for event, occurred_at in removed:
            if event.event_id in known:
                continue
            known.add(event.event_id)
            events.append(
                RememberedEvent(event.event_id, event.kind, occurred_at, transaction_id_of(event))
            )
            if isinstance(event, OrderPaid):
                paid_lines, currency = _lines(event), event.currency
                total_paid = str(event.total_paid)
            elif isinstance(event, OrderRefunded):
                refunded.update(refunded_quantities([event]))
        return OrderMemory(tuple(events), paid_lines, dict(refunded), currency, total_paid)

    def encode(self, order_id: str) -> str:
        data: dict[str, Any] = {
            "e": [
                [e.event_id, e.kind, int(e.occurred_at.timestamp())]
                + ([] if e.transaction_id == order_id else [e.transaction_id])
                for e in self.events
            ]
        }
        if self.paid_lines is not None:
            data["l"] = [list(line) for line in self.paid_lines]
        if self.refunded:
            data["r"] = dict(self.refunded)
        if self.currency is not None:
            data["c"] = self.currency
        if self.total_paid is not None:
            data["p"] = self.total_paid
        return json.dumps(data, separators=(",", ":"))

    @classmethod
    def decode(cls, order_id: str, text: str) -> OrderMemory:
        """Read a memory; also the full-content list that migration 0005 wrote (0008
        rewrites those, this reads any a running older worker adds meanwhile)."""
        data = json.loads(text)
        if isinstance(data, list):
            return _from_content(data)
        events = tuple(
            RememberedEvent(
                item[0],
                item[1],
                datetime.fromtimestamp(item[2], UTC),
                item[3] if len(item) > 3 else order_id,
            )
            for item in data["e"]
        )
        lines = data.get("l")
        paid_lines = None if lines is None else tuple((p, int(q), str(v)) for p, q, v in lines)
        refunded = {p: int(q) for p, q in data.get("r", {}).items()}
        return cls(events, paid_lines, refunded, data.get("c"), data.get("p"))


def reversal_basis(
    live: Iterable[OrderRow], memory: OrderMemory
) -> tuple[tuple[Line, ...] | None, Counter[str]]:
    """What a full reversal starts from: the paid lines (None: no paid event known) and the
    quantities per product the order's delivered refunds took back, from the ledger's rows
    (event_id, kind, state, payload, last_code) and the memory of those removed."""
    paid, taken = memory.paid_lines, Counter(memory.refunded)
    for _, kind, state, payload, _ in live:
        if kind == "paid":
            event = parse_event(payload, accepted=True)
            if isinstance(event, OrderPaid):
                paid = _lines(event)
        elif kind == "refunded" and state == EventState.DELIVERED:
            event = parse_event(payload, accepted=True)
            if isinstance(event, OrderRefunded):
                taken.update(refunded_quantities([event]))
    return paid, taken


@dataclass(frozen=True)
class OrderBasis:
    """What a refund is judged against: its order's currency and total paid."""

    currency: str
    total_paid: Decimal | None  # None: not remembered (removed before it was kept)


def order_basis(live: Iterable[OrderRow], memory: OrderMemory) -> OrderBasis | None:
    """The order's currency and total paid (None: no paid event known). Read off the
    payload's JSON (validated at ingest), not re-validated: a refund reads it each time."""
    for _, kind, _, payload, _ in live:
        if kind == "paid":
            data = json.loads(payload)
            paid = data.get("total_paid")
            return OrderBasis(
                str(data.get("currency") or DEFAULT_CURRENCY),
                None if paid is None else Decimal(str(paid)),
            )
    if memory.currency is None:
        return None
    paid = None if memory.total_paid is None else Decimal(memory.total_paid)
    return OrderBasis(memory.currency, paid)


def _from_content(items: list[dict[str, Any]]) -> OrderMemory:
    """A memory from 0005's list of removed events with their content."""
    return OrderMemory().with_removed(
        (
            parse_event(item["payload"], accepted=True),
            datetime.fromisoformat(item["occurred_at"]),
        )
        for item in items
    )


def _lines(paid: OrderPaid) -> tuple[Line, ...]:
    return tuple((item.product_id, item.quantity, str(item.price)) for item in paid.line_items)
