"""What an answer from Gameball meant, as plain values: the vocabulary the retry, breaker
and delivery rules decide over. ``worker.gameball.outcomes.classify`` is the one table
that turns an HTTP answer or an exception into an :class:`Outcome`."""

from __future__ import annotations

from dataclasses import dataclass, replace
from enum import StrEnum


class OutcomeKind(StrEnum):
    DELIVERED = "delivered"
    # Gameball holds a transaction under this event's id or at its instant: whether it is
    # ours (applied by an attempt whose answer was lost) decides, so the flow reads
    # Gameball's records and settles it as delivered, retry or dead before any rule sees it.
    # (Likewise a partial refund answered "already cancelled": the ledger's order decides.)
    UNSETTLED = "unsettled"
    WAITING = "waiting"
    RETRY = "retry"
    PAUSED = "paused"
    DEAD = "dead"


class Reason(StrEnum):
    ACCEPTED = "accepted"
    ALREADY_APPLIED = "already_applied"
    ID_TAKEN = "id_taken"  # 305 / 9004, until settled
    TIME_TAKEN = "time_taken"  # 304 / 9003, until settled
    ORDER_CANCELLED = "order_cancelled"  # 302 / 9001 to a partial refund, until settled
    PREDECESSOR_MISSING = "predecessor_missing"
    RATE_LIMITED = "rate_limited"
    SERVER_ERROR = "server_error"
    TRANSIENT_REJECTION = "transient_rejection"
    TIMEOUT = "timeout"
    CONNECTION_ERROR = "connection_error"
    RESPONSE_LOST = "response_lost"
    UNEXPECTED_BODY = "unexpected_body"
    UNEXPECTED_ERROR = "unexpected_error"
    UNAUTHORIZED = "unauthorized"
    ACCOUNT_DISABLED = "account_disabled"
    MISCONFIGURED_ENDPOINT = "misconfigured_endpoint"
    REJECTED = "rejected"


@dataclass(frozen=True)
class Outcome:
    """A classified answer: what happened and everything worth keeping about it."""

    kind: OutcomeKind
    reason: Reason
    message: str
    status: int | None = None
    code: int | None = None
    retry_after_s: float | None = None
    body_excerpt: str = ""

    def to_retry(self, message: str) -> Outcome:
        """This answer, settled as "try again" (its code and body kept) with ``message``."""
        return replace(
            self, kind=OutcomeKind.RETRY, reason=Reason.TRANSIENT_REJECTION, message=message
        )
