"""The worker's screen: any raw queue item is accepted as a canonical gbq.deliver request
or refused with a reason; it never raises, and no execution header survives."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from producers.wire import task_envelope, task_message
from tests.poison import deeply_nested, forged_headers, message, queue_poisons, with_body
from worker.rules.intake import MAX_MESSAGE_BYTES, Accepted, Refused, recover, screen

EVENT = {"kind": "paid", "order_id": "A", "customer_id": "c", "total_paid": "1"}


@pytest.mark.parametrize("poison", queue_poisons(), ids=lambda poison: poison.name)
def test_every_kind_of_poison_is_refused_with_a_reason(poison: Any) -> None:
    """Each catalogued poison is refused, and the reason is one readable line."""
    verdict = screen(poison.raw)
    assert isinstance(verdict, Refused)
    assert verdict.problem
    assert "\n" not in verdict.problem
    assert len(verdict.problem) < 300


@pytest.mark.parametrize(
    ("published", "why"),
    [
        (task_message("paid:A", EVENT, 1.5), "a fresh publish"),
        (task_message("paid:A"), "a re-send by the scheduler (no event)"),
    ],
)
def test_what_this_project_writes_is_accepted_unchanged(published: bytes, why: str) -> None:
    """Messages from producers.transport pass the screen as the same message."""
    verdict = screen(published)
    assert isinstance(verdict, Accepted), why
    assert {**verdict.message, "properties": None} == {
        **json.loads(published),
        "properties": None,
    }  # only the delivery tag (a fresh uuid) differs
    assert verdict.event_id == "paid:A"


@pytest.mark.parametrize("forge", forged_headers(), ids=range(len(forged_headers())))
def test_execution_headers_are_dropped_not_obeyed(forge: Any) -> None:
    """time limits, ETA, expiry, retries and callbacks/chains never reach Celery."""
    verdict = screen(forge("paid:A", EVENT))
    assert isinstance(verdict, Accepted)
    canonical = task_envelope("paid:A", EVENT, 1.0)
    assert verdict.message["headers"] == canonical["headers"]
    assert verdict.message["body"] == canonical["body"]


def test_a_message_sent_by_celery_itself_is_accepted() -> None:
    """Celery's send_task adds headers of its own (stamps, replaced_task_nesting…); the
    request is what counts."""
    sent = message(headers={"stamped_headers": None, "stamps": {}, "replaced_task_nesting": 0})
    assert isinstance(screen(json.dumps(sent)), Accepted)


def test_size_and_nesting_limits_are_exact() -> None:
    """The limits are what the constants say, not what the stack happens to allow."""
    padding = MAX_MESSAGE_BYTES - len(json.dumps(message(headers={"p": ""})))
    at_limit = json.dumps(message(headers={"p": "x" * padding}))
    assert len(at_limit) == MAX_MESSAGE_BYTES
    assert isinstance(screen(at_limit), Accepted)
    assert isinstance(screen(at_limit.replace('"p": "', '"p": "x', 1)), Refused)
    nested_ok = json.loads(deeply_nested(28))
    assert isinstance(screen(json.dumps(message(headers={"x": nested_ok}))), Accepted)
    assert isinstance(screen(json.dumps(message(headers={"x": [nested_ok] * 5}))), Accepted)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=20,
)


def _consistent(verdict: Accepted | Refused) -> None:
    if isinstance(verdict, Accepted):  # only ever the canonical shape
        body = json.loads(base64.b64decode(verdict.message["body"]))
        args, kwargs, _ = body
        assert args == []
        assert verdict.message == {
            **task_envelope(verdict.event_id, kwargs.get("event"), kwargs.get("published_at")),
            "properties": verdict.message["properties"],
        }
    else:
        assert verdict.problem


@settings(max_examples=300)
@given(st.binary(max_size=2000))
def test_random_bytes_never_raise(raw: bytes) -> None:
    """Random bytes as a queue item: refused, never an exception."""
    _consistent(screen(raw))


@settings(max_examples=300)
@given(json_values)
def test_random_json_items_never_raise(value: Any) -> None:
    """Random JSON as the whole item."""
    _consistent(screen(json.dumps(value)))


@settings(max_examples=300)
@given(json_values, st.sampled_from(["headers", "properties", "body", "content-type"]))
def test_random_json_in_any_envelope_field_never_raises(value: Any, field: str) -> None:
    """A well-formed envelope with one field replaced by random JSON."""
    _consistent(screen(json.dumps({**message(), field: value})))


@settings(max_examples=300)
@given(json_values | st.binary(max_size=200))
def test_random_bodies_never_raise(body: Any) -> None:
    """Random JSON (or bytes) as the message body, inside a valid envelope."""
    raw = with_body(body if isinstance(body, bytes) else json.dumps(body))
    _consistent(screen(raw))


@settings(max_examples=300)
@given(json_values, json_values, json_values)
def test_random_arguments_never_raise(args: Any, kwargs: Any, embed: Any) -> None:
    """Random [args, kwargs, embed] parts, and random values for the task's arguments."""
    _consistent(screen(with_body(json.dumps([args, kwargs, embed]))))
    arguments = {"event_id": kwargs, "event": args, "published_at": embed}
    _consistent(screen(with_body(json.dumps([[], arguments, None]))))


FUTURE_EVENT = {**EVENT, "occurred_at": "2099-01-01T00:00:00Z", "total_price": "1"}


@pytest.mark.parametrize(
    ("raw", "where"),
    [
        (task_message("paid:A", FUTURE_EVENT, 1.0), "a queue item"),
        (json.dumps({"args": [], "kwargs": {"event_id": "paid:A", "event": FUTURE_EVENT}}), "task"),
        (json.dumps([json.loads(task_message("paid:A", FUTURE_EVENT)), "", "gbq"]), "unacked"),
        (json.dumps({"event": FUTURE_EVENT, "published_at": 1}), "an inbox envelope"),
        (json.dumps(FUTURE_EVENT), "an event"),
    ],
)
def test_the_event_in_a_malformed_dead_letter_is_found_wherever_it_was(
    raw: bytes | str, where: str
) -> None:
    """`gbq dlq retry` reads a malformed letter's bytes again: the event is found in any of
    the shapes the pipeline keeps (a worker used to bury future-dated events this way)."""
    data = raw.encode() if isinstance(raw, str) else raw
    assert recover(data) == FUTURE_EVENT, where


@pytest.mark.parametrize(
    "raw", [b"\x00garbage", b"[1, 2, 3]", b'{"kwargs": 5}', b'{"event": "x"}', b"null"]
)
def test_bytes_that_hold_no_event_recover_nothing(raw: bytes) -> None:
    assert recover(raw) is None
