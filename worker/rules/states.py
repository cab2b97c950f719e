"""An event's states in the ledger, and why a dead one died.

``pending`` → ``in_flight`` (claimed with a lease) → ``delivered`` | ``scheduled`` (retry at
``next_attempt_at``) | ``waiting`` (an earlier event of its order is not delivered yet) |
``dead`` (with a :class:`DeadReason`). The ledger stores them; the rules decide them.
"""

from __future__ import annotations

from enum import StrEnum


class EventState(StrEnum):
    PENDING = "pending"
    IN_FLIGHT = "in_flight"
    SCHEDULED = "scheduled"
    WAITING = "waiting"
    DELIVERED = "delivered"
    DEAD = "dead"


# What can be sent now or is on its way (not waiting for an earlier event, not settled).
SENDABLE = (EventState.PENDING, EventState.IN_FLIGHT, EventState.SCHEDULED)


class DeadReason(StrEnum):
    REJECTED = "rejected"  # Gameball refused it for good (its code and message are kept)
    EXPIRED = "expired"  # the retry window (or the waiting window) ran out
    BLOCKED = "blocked"  # its order's paid event is dead
    MALFORMED = "malformed"  # the input could not be read as an event (raw bytes are kept)
    CURRENCY = "currency"  # a refund in another currency than its order's: not sent blind
