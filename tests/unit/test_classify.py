"""classify(): every row of its table, plus the odd answers a real network produces."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import httpx
import pytest

from worker.gameball.outcomes import HttpAnswer, classify, parse_retry_after
from worker.gameball.payloads import CallKind
from worker.rules.outcomes import OutcomeKind, Reason

DELIVERED, WAITING, RETRY = OutcomeKind.DELIVERED, OutcomeKind.WAITING, OutcomeKind.RETRY
PAUSED, DEAD, UNSETTLED = OutcomeKind.PAUSED, OutcomeKind.DEAD, OutcomeKind.UNSETTLED
NOW = datetime(2026, 11, 22, 12, 0, 0, tzinfo=UTC)


def error(status: int, code: int | str | None, message: str = "msg") -> HttpAnswer:
    return HttpAnswer(status, json.dumps({"code": code, "message": message}).encode())


ANSWERS: list[tuple[HttpAnswer, CallKind, OutcomeKind, Reason]] = [
    # 2xx with Gameball's JSON body: accepted.
    (
        HttpAnswer(200, b'{"playerUniqueId":"c","rewardedPoints":10}'),
        "order",
        DELIVERED,
        Reason.ACCEPTED,
    ),
    # 2xx with an empty body (Gameball's SDKs accept it): accepted.
    (HttpAnswer(200, b""), "cashback", DELIVERED, Reason.ACCEPTED),
    # 201/204 are 2xx too.
    (HttpAnswer(204, b""), "partial_refund", DELIVERED, Reason.ACCEPTED),
    # 2xx with HTML (a proxy or a wrong URL answering): retry, which is safe since a real
    # acceptance answers 305 on the next attempt.
    (HttpAnswer(200, b"<html>hello</html>"), "order", RETRY, Reason.UNEXPECTED_BODY),
    # 2xx with a JSON array: not Gameball's shape either.
    (HttpAnswer(200, b"[1, 2]"), "order", RETRY, Reason.UNEXPECTED_BODY),
    # 305 transaction id exists (v3): ours or another's, settled by reading the records.
    (error(422, 305), "order", OutcomeKind.UNSETTLED, Reason.ID_TAKEN),
    # 9004 is the same in v4.
    (error(422, 9004), "partial_refund", OutcomeKind.UNSETTLED, Reason.ID_TAKEN),
    # The code may come as a numeric string, under the v2-style 402 status.
    (error(402, "305"), "cashback", OutcomeKind.UNSETTLED, Reason.ID_TAKEN),
    # ... but a points hold carries no transaction id: its 305 is the hold already made.
    (error(422, 9004), "hold", DELIVERED, Reason.ALREADY_APPLIED),
    # 302 on a cancel: the order is already cancelled, which is what we wanted.
    (error(422, 302), "cancel", DELIVERED, Reason.ALREADY_APPLIED),
    # 9001 on a full refund: same effect.
    (error(422, 9001), "full_refund", DELIVERED, Reason.ALREADY_APPLIED),
    # 302 on a *partial* refund: the order was cancelled; whether by this refund's later
    # cancellation (then nothing is missing) the delivery flow settles from the ledger.
    (error(422, 302), "partial_refund", UNSETTLED, Reason.ORDER_CANCELLED),
    (error(422, 9001), "partial_refund", UNSETTLED, Reason.ORDER_CANCELLED),
    # 306 original not found on a refund: wait for the paid event.
    (error(404, 306), "partial_refund", WAITING, Reason.PREDECESSOR_MISSING),
    # 9005 (v4) on a cancel: same.
    (error(404, 9005), "cancel", WAITING, Reason.PREDECESSOR_MISSING),
    # 101 player not found on a refund: the order (which creates the player) is not in yet.
    (error(404, 101), "full_refund", WAITING, Reason.PREDECESSOR_MISSING),
    # 7000 (v4) on a refund: same.
    (error(404, 7000), "partial_refund", WAITING, Reason.PREDECESSOR_MISSING),
    # 101 on an order cannot be waited out (orders create players): dead.
    (error(404, 101), "order", DEAD, Reason.REJECTED),
    # 429 without Retry-After (Gameball's documented behaviour): retry with backoff.
    (HttpAnswer(429, b""), "order", RETRY, Reason.RATE_LIMITED),
    # 500: retry.
    (error(500, 5000), "order", RETRY, Reason.SERVER_ERROR),
    # 503 with an HTML body from a load balancer: retry.
    (HttpAnswer(503, b"<html>down</html>"), "cashback", RETRY, Reason.SERVER_ERROR),
    # 502 with no body at all: retry.
    (HttpAnswer(502, b""), "cancel", RETRY, Reason.SERVER_ERROR),
    # 408 request timeout: transient.
    (HttpAnswer(408, b""), "order", RETRY, Reason.TRANSIENT_REJECTION),
    # 2001 concurrent request in progress (v4, a 422): transient.
    (error(422, 2001), "order", RETRY, Reason.TRANSIENT_REJECTION),
    # 401 with an empty body (v2 docs): paused for everyone.
    (HttpAnswer(401, b"{}"), "order", PAUSED, Reason.UNAUTHORIZED),
    # 403 APIKey missing: paused.
    (HttpAnswer(403, b""), "cashback", PAUSED, Reason.UNAUTHORIZED),
    # 1001 secret key required, even under another status: paused.
    (error(400, 1001), "order", PAUSED, Reason.UNAUTHORIZED),
    # 50 Gameball is disabled: paused.
    (error(400, 50), "order", PAUSED, Reason.ACCOUNT_DISABLED),
    # 51 cashback is disabled: paused.
    (error(422, 51), "cashback", PAUSED, Reason.ACCOUNT_DISABLED),
    # 6000 (v4 of 50): paused.
    (error(422, 6000), "order", PAUSED, Reason.ACCOUNT_DISABLED),
    # 404 without a Gameball code (wrong base URL or version): paused, not dead.
    (HttpAnswer(404, b"<html>Not Found</html>"), "order", PAUSED, Reason.MISCONFIGURED_ENDPOINT),
    # A redirect (http→https, moved host): paused.
    (HttpAnswer(301, b""), "order", PAUSED, Reason.MISCONFIGURED_ENDPOINT),
    # 4 missing arguments: dead with Gameball's code.
    (error(400, 4), "order", DEAD, Reason.REJECTED),
    # 5 null arguments: dead.
    (error(422, 5), "cashback", DEAD, Reason.REJECTED),
    # 7 invalid value: dead.
    (error(422, 7), "partial_refund", DEAD, Reason.REJECTED),
    # 13 / 4500 "something wrong": Gameball's general processing error, retried within
    # the window (status-error-codes.mdx: "unexpected failure during transaction").
    (error(400, 13), "order", RETRY, Reason.TRANSIENT_REJECTION),
    (error(400, 4500), "partial_refund", RETRY, Reason.TRANSIENT_REJECTION),
    # 9007 transaction time not valid ("Future timestamp"): publish allows 5 minutes ahead,
    # so Gameball's clock catches up: retried, not dead.
    (error(422, 9007), "order", RETRY, Reason.TRANSIENT_REJECTION),
    (error(422, 9007), "cashback", RETRY, Reason.TRANSIENT_REJECTION),
    (error(400, 308), "order", RETRY, Reason.TRANSIENT_REJECTION),  # v3's 9007, inferred
    # 303 / 9002 transaction not found, on a refund: its order is not there yet, like 306.
    (error(404, 303), "partial_refund", WAITING, Reason.PREDECESSOR_MISSING),
    (error(404, 9002), "cancel", WAITING, Reason.PREDECESSOR_MISSING),
    # ... but on an order it is a verdict.
    (error(404, 9002), "order", DEAD, Reason.REJECTED),
    # 304 / 9003 transaction time already exists: settled by reading the records.
    (error(422, 304), "cashback", OutcomeKind.UNSETTLED, Reason.TIME_TAKEN),
    (error(422, 9003), "order", OutcomeKind.UNSETTLED, Reason.TIME_TAKEN),
    # 400 without any body: dead.
    (HttpAnswer(400, b""), "order", DEAD, Reason.REJECTED),
]


@pytest.mark.parametrize(("answer", "call", "kind", "reason"), ANSWERS)
def test_classify_answers(
    answer: HttpAnswer, call: CallKind, kind: OutcomeKind, reason: Reason
) -> None:
    """Each answer gets the outcome the table gives it."""
    outcome = classify(answer, call, now=NOW)
    assert (outcome.kind, outcome.reason) == (kind, reason)
    assert outcome.status == answer.status


def test_dead_outcome_keeps_gameballs_code_and_message() -> None:
    """A dead letter carries Gameball's code and message for the operator."""
    outcome = classify(error(422, 7, "Invalid Value: totalPaid"), "order")
    assert (outcome.code, outcome.message) == (7, "Invalid Value: totalPaid")
    assert "Invalid Value" in outcome.body_excerpt


def test_body_excerpt_is_bounded() -> None:
    """A huge body is kept only as a short excerpt."""
    outcome = classify(HttpAnswer(500, b"x" * 100_000), "order")
    assert len(outcome.body_excerpt) == 500


REQUEST = httpx.Request("POST", "http://127.0.0.1:1/api/v3.0/integrations/order")
EXCEPTIONS: list[tuple[BaseException, Reason]] = [
    # Connect timeout: nothing was sent.
    (httpx.ConnectTimeout("timed out", request=REQUEST), Reason.TIMEOUT),
    # Read timeout: sent, maybe applied; the retry's same ids make it safe.
    (httpx.ReadTimeout("timed out", request=REQUEST), Reason.TIMEOUT),
    # Pool timeout: no free connection.
    (httpx.PoolTimeout("no connection", request=REQUEST), Reason.TIMEOUT),
    # Connection refused.
    (httpx.ConnectError("refused", request=REQUEST), Reason.CONNECTION_ERROR),
    # Reset while writing the request.
    (httpx.WriteError("reset", request=REQUEST), Reason.CONNECTION_ERROR),
    # Peer closed without a (complete) response: the response was lost.
    (httpx.RemoteProtocolError("peer closed", request=REQUEST), Reason.RESPONSE_LOST),
    # Connection reset while reading the response.
    (httpx.ReadError("connection reset by peer", request=REQUEST), Reason.RESPONSE_LOST),
    # A raw reset that escaped httpx's mapping.
    (ConnectionResetError(104, "Connection reset by peer"), Reason.RESPONSE_LOST),
    # Any other OS-level error.
    (OSError(101, "Network is unreachable"), Reason.CONNECTION_ERROR),
    # A protocol error of ours (e.g. an invalid header): retried, visible, ends as expired.
    (httpx.LocalProtocolError("Illegal header value"), Reason.CONNECTION_ERROR),
    # Anything else: retried with its type named, never an exception loop.
    (RuntimeError("boom"), Reason.UNEXPECTED_ERROR),
]


@pytest.mark.parametrize(("exception", "reason"), EXCEPTIONS)
def test_classify_exceptions_are_retried(exception: BaseException, reason: Reason) -> None:
    """Every transport failure is a retry with a named reason; none escapes."""
    outcome = classify(exception, "order")
    assert (outcome.kind, outcome.reason) == (OutcomeKind.RETRY, reason)
    assert type(exception).__name__ in outcome.message


def test_429_keeps_retry_after_seconds() -> None:
    """A server-chosen delay is passed on for the retry policy to use as a floor."""
    outcome = classify(HttpAnswer(429, b"", retry_after="7"), "order", now=NOW)
    assert outcome.retry_after_s == 7.0


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        ("12", 12.0),  # delta-seconds
        ("1.5", 1.5),  # fractional seconds (lenient)
        (" 3 ", 3.0),  # surrounding spaces
        ("-5", 0.0),  # negative: no wait, never a negative delay
        ("Sun, 22 Nov 2026 12:00:30 GMT", 30.0),  # HTTP-date 30 s ahead
        ("Sun, 22 Nov 2026 11:59:00 GMT", 0.0),  # HTTP-date in the past
        ("soon", None),  # garbage: ignored
        ("", None),  # empty
        ("inf", None),  # not a real delay
        ("nan", None),
        (None, None),  # absent: Gameball's normal case
    ],
)
def test_parse_retry_after(header: str | None, seconds: float | None) -> None:
    """Retry-After in both of its HTTP forms, and rubbish ignored."""
    assert parse_retry_after(header, NOW) == seconds
