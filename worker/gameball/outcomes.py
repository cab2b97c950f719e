"""``classify()``: one pure function turns every answer or exception into an outcome.

Every answer, as a table (v3 code / v4 code); docs/gameball-contract.md gives the sources:

    2xx with a JSON object or an empty body      delivered  accepted
    2xx with any other body                      retry      unexpected_body (a retry is safe:
                                                            an applied call answers 305 next)
    305 / 9004 transaction id exists             unsettled  id_taken: ours or another's? The
                                                            delivery flow reads Gameball's
                                                            records: ours → delivered
                                                            already_applied, else dead rejected
    304 / 9003 transaction time exists           unsettled  time_taken: ours → delivered
                                                            already_applied, else retry at
                                                            the next millisecond
    305 / 9004 to a points hold                  delivered  already_applied (no transaction id)
    302 / 9001 on a cancel or full refund        delivered  already_applied
    302 / 9001 on a partial refund               unsettled  order_cancelled: the delivery
                                                            flow reads the order's events:
                                                            its later cancellation applied →
                                                            delivered already_applied (it
                                                            took the refund's share back);
                                                            in flight → retry; else → dead
                                                            rejected
    306 / 9005, 303 / 9002 and 101 / 7000        waiting    predecessor_missing
      on a refund (the order is not there yet)
    429                                          retry      rate_limited (Retry-After kept)
    5xx, 408, 425, code 2001 / 5000 / 5003       retry      server_error / transient_rejection
    13 / 4500 "Something Wrong" (a general       retry      transient_rejection (within the
      processing error: status-error-codes.mdx)             retry window, then expired)
    9007 a time in Gameball's future             retry      transient_rejection (its clock
                                                            catches up within minutes)
    timeout                                      retry      timeout
    connection refused or reset before sending   retry      connection_error
    connection dropped after sending             retry      response_lost
    401 / 403, codes 1000–1002                   paused     unauthorized
    codes 50 / 51, 6000 / 6001                   paused     account_disabled
    3xx, or 404 / 405 without a Gameball code    paused     misconfigured_endpoint
    any other 4xx (4, 5, 7, 13, …)               dead       rejected (Gameball's code, message)

The retry *schedule* (backoff, jitter, retry window → ``expired``) is decided elsewhere
from this outcome; classify only says what kind of answer it was.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from http import HTTPStatus
from typing import Final

import httpx

from worker.gameball.payloads import REFUND_CALLS, CallKind
from worker.rules.outcomes import Outcome, OutcomeKind, Reason

BODY_EXCERPT_CHARS: Final = 500


@dataclass(frozen=True)
class HttpAnswer:
    """What came back over HTTP, as plain values."""

    status: int
    body: bytes = b""
    retry_after: str | None = None  # the raw Retry-After header

    @classmethod
    def from_response(cls, response: httpx.Response) -> HttpAnswer:
        return cls(response.status_code, response.content, response.headers.get("retry-after"))


_ID_TAKEN: Final = frozenset({305, 9004})  # "Transaction ID Already Exists"
_TAKEN: Final = {
    **dict.fromkeys(_ID_TAKEN, Reason.ID_TAKEN),
    **dict.fromkeys((304, 9003), Reason.TIME_TAKEN),  # "Transaction Time Already Exists"
}
_ALREADY_CANCELLED: Final = frozenset({302, 9001})
_ORIGINAL_MISSING: Final = frozenset(
    {306, 9005, 303, 9002}
)  # on refunds: the order is not there yet
_PLAYER_MISSING: Final = frozenset({101, 7000})
_UNAUTHORIZED: Final = frozenset({1000, 1001, 1002})
_DISABLED: Final = frozenset({50, 51, 6000, 6001})
# 13 / 4500 "Something Wrong": Gameball's general processing error ("unexpected failure
# during transaction", status-error-codes.mdx), not a verdict on the request: retried.
_TRANSIENT_CODES: Final = frozenset({2001, 5000, 5003, 13, 4500})
_TRANSIENT_STATUSES: Final = frozenset({408, 425})
# 9007 "Transaction Time Not Valid" (status-error-codes.mdx: "Future timestamp"): publish
# accepts times up to 5 minutes ahead of the producer's clock, so Gameball may find one in
# its future. Not a verdict on the event: retried (with backoff, within the retry window)
# until Gameball's clock has caught up. 308 is v3.0's number for it as our notes infer it
# (no source shows it: docs/gameball-contract.md, decisions no public source settles).
_FUTURE_TIME: Final = frozenset({9007, 308})
_FULL_REVERSALS: Final[frozenset[CallKind]] = frozenset({"cancel", "full_refund"})


def classify(
    answer: HttpAnswer | BaseException, call: CallKind, *, now: datetime | None = None
) -> Outcome:
    """Classify ``answer`` to a ``call``; ``now`` resolves an HTTP-date Retry-After."""
    if isinstance(answer, BaseException):
        return _classify_exception(answer)
    status, excerpt = answer.status, _excerpt(answer.body)
    code, message = _error_envelope(answer.body)

    def outcome(kind: OutcomeKind, reason: Reason, text: str | None = None) -> Outcome:
        return Outcome(
            kind, reason, text or message or _status_text(status), status, code, None, excerpt
        )

    if 200 <= status < 300:
        if _is_json_object_or_empty(answer.body):
            return outcome(OutcomeKind.DELIVERED, Reason.ACCEPTED, "accepted")
        return outcome(
            OutcomeKind.RETRY,
            Reason.UNEXPECTED_BODY,
            f"HTTP {status} with a body that is not a JSON object",
        )
    if status == 429:
        retry_after = parse_retry_after(answer.retry_after, now or datetime.now(UTC))
        return Outcome(
            OutcomeKind.RETRY,
            Reason.RATE_LIMITED,
            message or "rate limited",
            status,
            code,
            retry_after,
            excerpt,
        )
    if status in (401, 403) or code in _UNAUTHORIZED:
        return outcome(OutcomeKind.PAUSED, Reason.UNAUTHORIZED)
    if code in _DISABLED:
        return outcome(OutcomeKind.PAUSED, Reason.ACCOUNT_DISABLED)
    if status >= 500 or status in _TRANSIENT_STATUSES or code in _TRANSIENT_CODES:
        reason = Reason.SERVER_ERROR if status >= 500 else Reason.TRANSIENT_REJECTION
        return outcome(OutcomeKind.RETRY, reason)
    if code in _FUTURE_TIME:
        return outcome(OutcomeKind.RETRY, Reason.TRANSIENT_REJECTION)
    if code in _TAKEN and call != "hold":  # a hold carries no transaction id or time
        return outcome(OutcomeKind.UNSETTLED, _TAKEN[code])
    if code in _ID_TAKEN or (code in _ALREADY_CANCELLED and call in REFUND_CALLS):
        # A hold's id, a cancellation or a full refund: Gameball has what was asked for. A
        # partial refund: it depends on the order (the delivery flow reads it).
        partial = code in _ALREADY_CANCELLED and call not in _FULL_REVERSALS
        return (
            outcome(OutcomeKind.UNSETTLED, Reason.ORDER_CANCELLED)
            if partial
            else outcome(OutcomeKind.DELIVERED, Reason.ALREADY_APPLIED)
        )
    if call in REFUND_CALLS and (code in _ORIGINAL_MISSING or code in _PLAYER_MISSING):
        return outcome(OutcomeKind.WAITING, Reason.PREDECESSOR_MISSING)
    if code is None and (300 <= status < 400 or status in (404, 405)):
        # Not Gameball talking: a wrong base URL or API version would otherwise kill
        # every event; pausing keeps their budget until the configuration is fixed.
        return outcome(
            OutcomeKind.PAUSED,
            Reason.MISCONFIGURED_ENDPOINT,
            f"HTTP {status} without a Gameball error: check the base URL and version",
        )
    return outcome(OutcomeKind.DEAD, Reason.REJECTED)


def _classify_exception(error: BaseException) -> Outcome:
    summary = f"{type(error).__name__}: {error}".rstrip(": ")
    if isinstance(error, httpx.TimeoutException):
        return Outcome(OutcomeKind.RETRY, Reason.TIMEOUT, summary)
    if isinstance(error, httpx.ConnectError | httpx.WriteError | ConnectionRefusedError):
        return Outcome(OutcomeKind.RETRY, Reason.CONNECTION_ERROR, summary)
    if isinstance(error, httpx.RemoteProtocolError | httpx.ReadError | ConnectionResetError):
        # The request went out; Gameball may have applied it. The retry sends the same
        # ids, so an applied request comes back as 305 and counts as delivered.
        return Outcome(OutcomeKind.RETRY, Reason.RESPONSE_LOST, summary)
    if isinstance(error, httpx.TransportError | OSError):
        return Outcome(OutcomeKind.RETRY, Reason.CONNECTION_ERROR, summary)
    return Outcome(OutcomeKind.RETRY, Reason.UNEXPECTED_ERROR, summary)


def parse_retry_after(value: str | None, now: datetime) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or HTTP-date), or None."""
    if value is None or not value.strip():
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            moment = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        return max(0.0, (moment - now).total_seconds())
    if not math.isfinite(seconds):
        return None
    return max(0.0, seconds)


def _error_envelope(body: bytes) -> tuple[int | None, str | None]:
    """Gameball's ``{code, message}`` (v3) or ``{code, type, message, …}`` (v4), if present."""
    try:
        parsed = json.loads(body) if body else None
    except (ValueError, UnicodeDecodeError):
        return None, None
    if not isinstance(parsed, dict):
        return None, None
    raw_code, raw_message = parsed.get("code"), parsed.get("message")
    code: int | None = None
    if isinstance(raw_code, int) and not isinstance(raw_code, bool):
        code = raw_code
    elif isinstance(raw_code, str) and raw_code.strip().isdigit():
        code = int(raw_code)
    message = raw_message.strip() if isinstance(raw_message, str) and raw_message else None
    return code, message


def _is_json_object_or_empty(body: bytes) -> bool:
    if not body.strip():
        return True
    try:
        return isinstance(json.loads(body), dict)
    except (ValueError, UnicodeDecodeError):
        return False


def _excerpt(body: bytes) -> str:
    return body[: BODY_EXCERPT_CHARS * 4].decode("utf-8", "replace")[:BODY_EXCERPT_CHARS]


def _status_text(status: int) -> str:
    try:
        return f"HTTP {status} {HTTPStatus(status).phrase}"
    except ValueError:
        return f"HTTP {status}"
