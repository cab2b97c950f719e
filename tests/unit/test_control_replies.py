"""Remote-control replies (``celery inspect ping``, the compose health check) pass the
transport's screen when kombu can read them; anything else is dropped, not raised."""

from __future__ import annotations

import json

import pytest

from worker.process.transport import REPLY_QUEUE_SUFFIX, _readable_reply

QUEUE = b"5c1d.reply" + REPLY_QUEUE_SUFFIX.removeprefix(".reply").encode()


def test_the_reply_queue_name_is_celerys() -> None:
    assert QUEUE.endswith(b".reply.celery.pidbox")


def test_a_readable_reply_passes() -> None:
    reply = {"body": "e30=", "headers": {}, "properties": {"delivery_tag": "x"}}
    assert _readable_reply(json.dumps(reply).encode(), QUEUE)


@pytest.mark.parametrize(
    "item",
    [b"\xff\xfe garbage", b"[1, 2]", b'"text"', b"{" * 10_000, b"x" * 3_000_000, b""],
)
def test_an_unreadable_reply_is_dropped_with_a_warning(
    item: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    assert not _readable_reply(item, QUEUE)
    assert "dropped an unreadable control reply" in caplog.text
