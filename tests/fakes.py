"""In-memory stand-ins for the delivery path's collaborators (the Protocols
``worker.flows.delivery`` declares), so that its decisions are tested without Redis, a
worker process or a Gameball: a scripted Gameball, a queue, a breaker and permits. The
ledger stays real (SQLite in a temporary folder): the decisions are made with it."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from producers.keys import BREAKER_KEY
from producers.wire import InboxEntry
from worker.gameball.client import Attempt
from worker.gameball.payloads import GameballRequest
from worker.rules.breaker import Admission, Breaker, Signal, State
from worker.rules.outcomes import Outcome, OutcomeKind, Reason

ACCEPTED = Outcome(OutcomeKind.DELIVERED, Reason.ACCEPTED, "accepted", 200)


def answer(kind: OutcomeKind, reason: Reason, status: int, code: int | None = None) -> Outcome:
    """An outcome as ``classify()`` gives it for Gameball's ``status`` and ``code``."""
    return Outcome(kind, reason, f"HTTP {status} code {code}", status, code)


@dataclass
class ScriptedGameball:
    """Answers each call with the next scripted outcome (accepted once the script is
    spent) and each read with ``reads(path)``; keeps every request it was sent."""

    script: list[Outcome] = field(default_factory=list)
    reads: Callable[[str], tuple[int, object]] = lambda _path: (404, {"code": 404})
    sent: list[GameballRequest] = field(default_factory=list)
    read_paths: list[str] = field(default_factory=list)

    def send(self, request: GameballRequest) -> Attempt:
        self.sent.append(request)
        outcome = self.script.pop(0) if self.script else ACCEPTED
        return Attempt(outcome, 0.01)

    def get_json(self, path: str) -> tuple[int, object]:
        self.read_paths.append(path)
        return self.reads(path)


@dataclass
class MemoryQueue:
    """The queue and inbox as the delivery path sees them: what it enqueued, in order."""

    enqueued: list[str] = field(default_factory=list)
    inbox: dict[str, list[InboxEntry]] = field(default_factory=dict)
    breaker_json: bytes | None = None  # what a read of the breaker's key returns

    def enqueue(self, event_ids: list[str]) -> int:
        self.enqueued += list(event_ids)
        return len(event_ids)

    def inbox_done(self, done: list[tuple[str, str | None]]) -> None:
        for event_id, order_id in done:
            if order_id is not None:
                entries = self.inbox.get(order_id, [])
                self.inbox[order_id] = [e for e in entries if e.event_id != event_id]

    @contextmanager
    def get_meanwhile(self, key: str) -> Iterator[Callable[[], bytes | None]]:
        yield lambda: self.breaker_json if key == BREAKER_KEY else None

    def inbox_for_order(self, order_id: str) -> list[InboxEntry]:
        return list(self.inbox.get(order_id, []))


@dataclass
class FixedBreaker:
    """A breaker that stays as set: closed admits every call; open admits none and asks to
    come back after ``wait_s``. Keeps every signal observed."""

    state: State = State.CLOSED
    wait_s: float = 5.0
    observed: list[Signal] = field(default_factory=list)
    key: str = BREAKER_KEY

    def admit(self) -> Admission:
        if self.state is State.CLOSED:
            return Admission(True)
        return Admission(False, wait_s=self.wait_s)

    def admit_as_read(self, seen: Breaker) -> Admission:
        return self.admit()

    def observe(self, signal: Signal, detail: str = "") -> Breaker:
        self.observed.append(signal)
        return self.current()

    def current(self) -> Breaker:
        return Breaker(self.state, reason="set by the test")


@dataclass
class FixedPermits:
    """Every call allowed, or none (each told to come back after ``wait_s``)."""

    allowed: bool = True
    wait_s: float = 3.0
    penalized: list[str] = field(default_factory=list)

    def acquire(self, max_wait_s: float, bucket: Any = "orders") -> tuple[bool, float]:
        return (True, 0.0) if self.allowed else (False, self.wait_s)

    def penalize(self, now_us: int | None = None, bucket: Any = "orders") -> None:
        self.penalized.append(str(bucket))
