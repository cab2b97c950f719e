"""Reading gbq.deliver messages: good ones parse, bad ones are named malformed."""

from __future__ import annotations

from typing import Any

import pytest

from worker.flows.delivery import MalformedMessageError, parse_message

EVENT = {
    "kind": "cashback",
    "transaction_id": "T-1",
    "customer_id": "c",
    "occurred_at": "2026-01-01T00:00:00Z",
    "amount": "5",
}


def test_message_with_event() -> None:
    """The publisher's message: id, event and publish time."""
    message = parse_message((), {"event_id": "cashback:T-1", "event": EVENT, "published_at": 1.5})
    assert message.event is not None
    assert (message.event_id, message.event.event_id, message.published_at) == (
        "cashback:T-1",
        "cashback:T-1",
        1.5,
    )


def test_message_with_id_only() -> None:
    """The scheduler's re-send: the ledger already has the event."""
    assert parse_message((), {"event_id": "paid:O"}).event is None


@pytest.mark.parametrize(
    ("args", "kwargs", "problem"),
    [
        ((1,), {"event_id": "x"}, "keyword arguments only"),
        ((), {}, "event_id"),
        ((), {"event_id": 7}, "event_id"),
        ((), {"event_id": ""}, "event_id"),
        ((), {"event_id": "x", "extra": 1}, "unknown arguments: extra"),
        ((), {"event_id": "x", "event": "text"}, "JSON object"),
        ((), {"event_id": "x", "event": {**EVENT, "amount": "-1"}}, "amount"),
        ((), {"event_id": "cashback:OTHER", "event": EVENT}, "does not match"),
        ((), {"event_id": "x", "published_at": "soon"}, "published_at"),
    ],
)
def test_malformed_messages_are_named(
    args: tuple[Any, ...], kwargs: dict[str, Any], problem: str
) -> None:
    """Each way a message can be unusable gets a message saying which."""
    with pytest.raises(MalformedMessageError, match=problem):
        parse_message(args, kwargs)
