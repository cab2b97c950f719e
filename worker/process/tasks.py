"""The one task, ``gbq.deliver``: a thin adapter from Celery to ``worker.flows.delivery``.

``DeliveryRequest`` runs in the worker's main process. When a pool child dies mid-delivery
(SIGKILL, the OOM killer), Celery requeues its message at once (``reject_on_worker_lost``),
but the event's lease would still be held by the dead child for up to ``GBQ_LEASE_S``. The
main process knows that child is gone, so it hands the child's leases back first and the
requeued message is delivered in seconds. A whole worker killed (a host crash) still
waits for the lease.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from billiard.exceptions import WorkerLostError
from celery.signals import worker_process_init, worker_ready
from celery.worker.request import Request

from producers.wire import DELIVER_TASK
from worker.coordination.outage import LEDGER_DOWN, REDIS_DOWN, OutageLog
from worker.process.app import app
from worker.process.runtime import owner_prefix, runtime

log = logging.getLogger(__name__)
_ledger_outage = OutageLog("the ledger", log)
_redis_outage = OutageLog("Redis", log)


class DeliveryRequest(Request):  # type: ignore[misc]
    def on_failure(
        self, exc_info: Any, send_failed_event: bool = True, return_ok: bool = False
    ) -> Any:
        exc = getattr(exc_info.exception, "exc", exc_info.exception)
        if isinstance(exc, WorkerLostError) and self.worker_pid:
            _release_leases_of_dead_child(self.worker_pid)
        return super().on_failure(exc_info, send_failed_event, return_ok)


def _release_leases_of_dead_child(pid: int) -> None:
    try:
        ledger = runtime().ledger
        released = ledger.release_leases_of(owner_prefix(pid), ledger.clock.now())
    except Exception:  # the lease will expire anyway; never break Celery's bookkeeping
        log.exception("could not release the leases of dead pool process %d", pid)
        return
    if released:
        log.warning("pool process %d died: released %d lease(s) at once", pid, len(released))


def _start_runtime() -> None:
    """Build this process's runtime now, so its heartbeat says it is alive while it is
    still idle (``gbq status``, the console and ``gbq publish`` look for one).

    In a thread of its own: the first beat waits for Redis (up to its timeout), and a pool
    process that does not report for duty within Celery's ``worker_proc_alive_timeout``
    (4 s) is killed. A first task meanwhile waits on ``runtime()``'s lock, so it still
    claims nothing before the first beat. A failure is only logged: that task builds it."""

    def build() -> None:
        try:
            runtime()
        except Exception:  # never keep a process from starting: its first task retries
            log.exception("could not start this process's runtime (its first task will)")

    threading.Thread(target=build, name="gbq-runtime-start", daemon=True).start()


@worker_process_init.connect  # type: ignore[untyped-decorator]
def _announce_pool_process(**_: object) -> None:
    _start_runtime()


@worker_ready.connect  # type: ignore[untyped-decorator]
def _announce_main_process(sender: Any = None, **_: object) -> None:
    """The threads and solo pools deliver in the main process; prefork's children each
    announce themselves (a runtime here would only be inherited by them)."""
    pool = getattr(sender, "pool", None)
    if pool is not None and not type(pool).__module__.endswith(".prefork"):
        _start_runtime()


@app.task(
    name=DELIVER_TASK,
    acks_late=True,
    reject_on_worker_lost=True,
    ignore_result=True,
    Request=DeliveryRequest,
)  # type: ignore[untyped-decorator]
def deliver(*args: Any, **kwargs: Any) -> str:
    """Deliver one event (see ``worker.flows.delivery.Deliverer.handle``); during a ledger or
    Redis outage, say so once and leave the message to the scheduler's sweeps."""
    try:
        result = runtime().deliverer.handle(args, kwargs)
    except LEDGER_DOWN as error:
        _ledger_outage.failed(error)
        return "ledger unavailable"
    except REDIS_DOWN as error:
        _redis_outage.failed(error)
        return "redis unavailable"
    _ledger_outage.succeeded()
    _redis_outage.succeeded()
    return result
