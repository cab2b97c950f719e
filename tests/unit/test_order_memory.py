"""The compact order memory: what retention keeps of removed events gives the same
reversal as the events themselves, survives encoding, reads 0005's rows, and is small."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from hypothesis import given
from hypothesis import strategies as st

from producers.events import LineItem, OrderCancelled, OrderPaid, OrderRefunded, event_to_json
from worker.gameball.payloads import RefundLine, lines_left, reversal_lines
from worker.ledger.order_memory import OrderBasis, OrderMemory, order_basis, reversal_basis

T0 = datetime(2026, 3, 1, 9, 30, 15, tzinfo=UTC)
PRODUCTS = ("mat", "bottle", "strap")


def paid_with(lines: list[tuple[str, int, int]]) -> OrderPaid:
    items = tuple(LineItem(product_id=p, quantity=q, price=Decimal(v)) for p, q, v in lines)
    total = sum((Decimal(q * v) for _, q, v in lines), Decimal(0))
    return OrderPaid(
        order_id="O",
        customer_id="c",
        occurred_at=T0,
        total_price=total,
        total_paid=total,
        line_items=items,
    )


def refund_of(number: int, lines: list[tuple[str, int]]) -> OrderRefunded:
    return OrderRefunded(
        order_id="O",
        refund_id=f"O-R{number}",
        customer_id="c",
        occurred_at=T0 + timedelta(minutes=number + 1),
        amount=Decimal(1),
        line_items=tuple(LineItem(product_id=p, quantity=q, price=Decimal(1)) for p, q in lines),
    )


paid_lines = st.lists(
    st.tuples(st.sampled_from(PRODUCTS), st.integers(1, 5), st.integers(1, 50)),
    min_size=1,
    max_size=5,
)
refund_lines = st.lists(
    st.lists(st.tuples(st.sampled_from(PRODUCTS), st.integers(1, 6)), min_size=1, max_size=3),
    max_size=4,
)


def sequential(paid: OrderPaid, refunds: list[OrderRefunded]) -> tuple[RefundLine, ...]:
    """The reversal as first written: each refunded line taken, in turn, from the first
    paid lines of its product that have some left."""
    left = [RefundLine(i.product_id, i.quantity, i.price) for i in paid.line_items]
    for refund in refunds:
        for item in refund.line_items:
            wanted = item.quantity
            for index, line in enumerate(left):
                if line.product_id == item.product_id and wanted > 0:
                    taken = min(wanted, line.quantity)
                    left[index] = RefundLine(line.product_id, line.quantity - taken, line.price)
                    wanted -= taken
    return tuple(line for line in left if line.quantity > 0)


@given(paid_lines, refund_lines, st.data())
def test_any_split_between_ledger_and_memory_gives_the_reversal_of_the_events(
    lines: list[tuple[str, int, int]],
    refunds_lines: list[list[tuple[str, int]]],
    data: st.DataObject,
) -> None:
    """Whichever of the order's events retention removed (the paid one or not, any
    refunds), the memory (through its encoding) and the rows left give the lines that
    the events themselves give."""
    paid = paid_with(lines)
    refunds = [refund_of(number, items) for number, items in enumerate(refunds_lines)]
    expected = sequential(paid, refunds)
    assert reversal_lines(paid, refunds) == expected
    events = [paid, *refunds]
    removed = [event for event in events if data.draw(st.booleans())]
    memory = OrderMemory().with_removed((event, event.occurred_at) for event in removed)
    memory = OrderMemory.decode("O", memory.encode("O"))
    live = [
        (event.event_id, event.kind, "delivered", event.model_dump_json(), 200)
        for event in events
        if event not in removed
    ]
    basis, taken = reversal_basis(live, memory)
    assert basis is not None
    assert lines_left((RefundLine(p, q, Decimal(v)) for p, q, v in basis), taken) == expected


def test_refunds_not_delivered_take_nothing_and_no_paid_event_means_no_lines() -> None:
    paid, refund = paid_with([("mat", 3, 10)]), refund_of(0, [("mat", 2)])
    live = [
        (paid.event_id, "paid", "delivered", paid.model_dump_json(), 200),
        (refund.event_id, "refunded", "pending", refund.model_dump_json(), None),
    ]
    basis, taken = reversal_basis(live, OrderMemory())
    assert (basis, dict(taken)) == ((("mat", 3, "10"),), {})
    assert reversal_basis(live[1:], OrderMemory()) == (None, {})


def test_an_event_remembered_twice_counts_once_and_times_keep_to_the_second() -> None:
    refund = refund_of(0, [("mat", 2)])
    at = T0 + timedelta(microseconds=123_456)
    memory = OrderMemory().with_removed([(refund, at)]).with_removed([(refund, at)])
    decoded = OrderMemory.decode("O", memory.encode("O"))
    assert dict(decoded.refunded) == {"mat": 2}
    [event] = decoded.events
    assert (event.event_id, event.kind, event.transaction_id) == (
        "refunded:O:O-R0",
        "refunded",
        "O-R0",
    )
    assert event.occurred_at == T0
    assert decoded.paid_lines is None


def test_the_memory_0005_wrote_is_read_and_is_about_ten_times_larger() -> None:
    """0005 stored each removed event's full content; the same order's memory now keeps
    what later events need, and is several times smaller."""
    paid = paid_with([("mat", 3, 10), ("bottle", 2, 5)])
    refund, cancel = (
        refund_of(0, [("mat", 1)]),
        OrderCancelled(order_id="O", customer_id="c", occurred_at=T0 + timedelta(days=2)),
    )
    legacy = json.dumps(
        [
            {
                "event_id": event.event_id,
                "kind": event.kind,
                "occurred_at": event.occurred_at.isoformat(),
                "payload": event.model_dump_json(),
            }
            for event in (paid, refund, cancel)
        ]
    )
    memory = OrderMemory.decode("O", legacy)
    assert memory == OrderMemory().with_removed((e, e.occurred_at) for e in (paid, refund, cancel))
    assert memory.paid_lines == (("mat", 3, "10"), ("bottle", 2, "5"))
    assert [e.transaction_id for e in memory.events] == ["O", "O-R0", cancel.transaction_id]
    assert len(memory.encode("O")) * 4 < len(legacy)


def test_the_orders_currency_and_total_are_known_from_the_ledger_or_the_memory() -> None:
    """A refund checks its currency against its order's, months later too, and may be
    a full refund when it returns the whole paid total."""
    paid = paid_with([("mat", 1, 30)]).model_copy(update={"currency": "KWD"})
    live = [(paid.event_id, "paid", "delivered", event_to_json(paid), None)]
    assert order_basis(live, OrderMemory()) == OrderBasis("KWD", Decimal(30))
    memory = OrderMemory().with_removed([(paid, T0)])
    again = OrderMemory.decode("O", memory.encode("O"))
    assert (again.currency, again.total_paid) == ("KWD", "30")
    assert order_basis([], again) == OrderBasis("KWD", Decimal(30))
    assert order_basis([], OrderMemory()) is None  # no paid event known: not judged
