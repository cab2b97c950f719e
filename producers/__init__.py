"""What checkout code imports: the event contract (and, from Step 2, the publisher).

This package never imports the worker's delivery code: events travel by task *name*.
"""

from producers.events import (
    CashbackAwarded,
    Event,
    FieldProblem,
    InvalidEventError,
    LineItem,
    OrderCancelled,
    OrderPaid,
    OrderRefunded,
    as_event,
    event_to_json,
    parse_event,
)

__all__ = [
    "CashbackAwarded",
    "Event",
    "FieldProblem",
    "InvalidEventError",
    "LineItem",
    "OrderCancelled",
    "OrderPaid",
    "OrderRefunded",
    "as_event",
    "event_to_json",
    "parse_event",
]
