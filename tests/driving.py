"""Deliveries driven by hand: a real Deliverer (``build_runtime``) handed one message at a
time, for tests that need exact control over attempts."""

from __future__ import annotations

from pathlib import Path

from pydantic import SecretStr

from harness.processes import SandboxProcess, wait_until
from producers.events import Event
from tests.conftest import settings_for
from worker.process.runtime import Runtime, build_runtime

SETTLED = frozenset({"delivered", "dead", "waiting"})


def runtime_for(
    sandbox: SandboxProcess, redis_url: str, database_url: str, home: Path, **overrides: object
) -> Runtime:
    """A worker's runtime against the sandbox: no rate limit, no scheduler re-checks, and
    retries due at once (so a retried event can be handed again straight away)."""
    values: dict[str, object] = {
        "redis_url": SecretStr(redis_url),
        "database_url": SecretStr(database_url),
        "home": home,
        "rate_limit_per_s": 0,
        "rate_limit_per_30s": 0,
        "redrive_after_s": 3600.0,
        "retry_base_s": 0.01,
        **overrides,
    }
    return build_runtime(settings_for(sandbox.url, **values))


def deliver(worker: Runtime, event: Event) -> str:
    """Hand ``event`` to the worker until its ledger row settles (delivered, dead or
    waiting); that state."""
    message = {"event_id": event.event_id, "event": event.model_dump(mode="json")}

    def settled() -> str | None:
        worker.deliverer.handle((), message)
        row = worker.ledger.get(event.event_id)
        return row.state if row is not None and row.state in SETTLED else None

    return wait_until(settled, timeout_s=30, what=f"{event.event_id} to settle")
