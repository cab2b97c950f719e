"""The one task, ``gbq.deliver``: a thin adapter from Celery to ``worker.delivery``."""

from __future__ import annotations

from typing import Any

from producers.transport import DELIVER_TASK
from worker.app import app
from worker.runtime import runtime


@app.task(name=DELIVER_TASK, acks_late=True, reject_on_worker_lost=True, ignore_result=True)  # type: ignore[untyped-decorator]
def deliver(*args: Any, **kwargs: Any) -> str:
    """Deliver one event (see ``worker.delivery.Deliverer.handle``)."""
    return runtime().deliverer.handle(args, kwargs)
