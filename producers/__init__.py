"""What checkout code imports: the event contract and the publisher.

``pip install gameball-queue`` installs this package with what it needs (pydantic, redis,
SQLAlchemy) and nothing of the worker: it never imports ``worker``, and events travel by
task *name*.
"""

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
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

# Imported on first use (PEP 562): ``import producers.keys`` or ``producers.settings``
# (the CLI, the worker) must not pay for the publisher, SQLAlchemy and every event model.
_WHERE = {
    "CashbackAwarded": "producers.events",
    "Event": "producers.events",
    "FieldProblem": "producers.events",
    "InvalidEventError": "producers.events",
    "LineItem": "producers.events",
    "OrderCancelled": "producers.events",
    "OrderPaid": "producers.events",
    "OrderRefunded": "producers.events",
    "as_event": "producers.events",
    "event_to_json": "producers.events",
    "parse_event": "producers.events",
    "ConflictingEventError": "producers.publisher",
    "Publisher": "producers.publisher",
    "PublishError": "producers.publisher",
    "SettingsError": "producers.settings",
}


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'producers' has no attribute {name!r}")
    from importlib import import_module  # noqa: PLC0415

    value = getattr(import_module(module), name)
    globals()[name] = value  # once: later lookups are plain attribute reads
    return value


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
