"""What checkout code imports: the event contract and the publisher.

``pip install gameball-queue`` installs this package with what it needs (pydantic, redis,
SQLAlchemy) and nothing of the worker: it never imports ``worker``, and events travel by
task *name*.
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
from producers.publisher import ConflictingEventError, Publisher, PublishError
from producers.settings import SettingsError

__all__ = [
    "CashbackAwarded",
    "ConflictingEventError",
    "Event",
    "FieldProblem",
    "InvalidEventError",
    "LineItem",
    "OrderCancelled",
    "OrderPaid",
    "OrderRefunded",
    "PublishError",
    "Publisher",
    "SettingsError",
    "as_event",
    "event_to_json",
    "parse_event",
]
