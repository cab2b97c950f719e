"""The delivery algorithm: one message in, at most one Gameball call out
(docs/architecture.md, "The data path").

    read the message ─ unreadable? ─► dead letter ``malformed``
    ingest into the ledger (idempotent) and claim with a lease, in one transaction (a
    refund's order read there, and its order's time and lines fixed) while Redis answers
    a read of the shared breaker ─ not claimable (delivered, leased, not due)? ─► nothing
    order check ─ wait? ─► ``waiting`` (parked in that transaction); paid is dead? ─►
    dead ``blocked``
    circuit breaker ─ open or paused? ─► deferred to the next probe (no attempt spent)
    rate limit ─ no token within a moment? ─► deferred (no attempt spent)
    call Gameball, classify ─ id or time taken (unsettled)? ─► read Gameball's records:
    ours, or another's; clear the inbox entries; tell the breaker (and the limiter, on
    429), record the attempt, apply the next state (lease holder only)
    settled (delivered or dead)? ─► wake the order's waiting events and deliver them here,
                                    oldest first (up to INLINE_RELEASED, while the task has
                                    run less than INLINE_BUDGET_S; the rest are queued)

Every decision is a pure function (``classify``, ``gate``, ``after_attempt``); this module
sequences them with the ledger, Redis and HTTP. Nothing here retries by itself or uses
Celery countdowns: a retry is a ``next_attempt_at`` that the scheduler acts on.

    MalformedMessageError(ValueError)   the message is not a delivery request
"""

from __future__ import annotations

import json
import logging
import random
import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, Protocol

from producers.events import (
    Event,
    InvalidEventError,
    OrderCancelled,
    OrderPaid,
    OrderRefunded,
    Redemption,
    parse_event,
)
from producers.quarantine import Poison
from producers.untrusted import UnreadableError
from producers.wire import DELIVER_TASK, InboxEntry
from worker.coordination.outage import LEDGER_DOWN, REDIS_DOWN
from worker.coordination.paced_reads import PacedReader
from worker.coordination.ratelimit import Bucket, Permits, bucket_of
from worker.flows.reconcile import holds_ours
from worker.flows.redeeming import PointsCourier, Prepared
from worker.gameball.client import Attempt, GameballReadError
from worker.gameball.payloads import (
    Fixed,
    GameballRequest,
    RefundLine,
    build_request,
    lines_left,
    transaction_id_of,
)
from worker.gameball.records import GameballRecord, order_records, transaction_records
from worker.gameball.versions import ApiVersion
from worker.ledger.core import AttemptRecord, Claimed, NewEvent, OrderHistory, new_event
from worker.ledger.delivery_path import OrderSteps
from worker.ledger.order_memory import OrderBasis, order_basis, reversal_basis
from worker.ledger.redemptions import Redemptions
from worker.ledger.repository import Ledger
from worker.rules.breaker import Admission, Breaker, Signal, signal_of
from worker.rules.ordering import (
    CancelledAnswer,
    Gate,
    OrderFact,
    after_cancelled_answer,
    gate,
    waits_on_order,
)
from worker.rules.outcomes import Outcome, OutcomeKind, Reason
from worker.rules.redemption import redeems_points
from worker.rules.retry import RetryPolicy, after_attempt
from worker.rules.states import DeadReason, EventState
from worker.settings import RefundAtPaid, RefundTime

log = logging.getLogger(__name__)
BREAKER_DEFERRAL = "breaker_open"  # last_outcome of an event the breaker held back
WAKE_SLACK = 500  # retries due while the breaker was open, sent with its deferrals (few)
SHARED_ID_KINDS = frozenset({"refunded", "cashback"})  # ids in the orders' namespace
# Events a settle released that its own task then delivers, instead of a message each: an
# order's refunds go one after another anyway (each waits for the one before), and a
# message each cost a Celery round trip and, for all but the oldest, a claim and a park
# again. Bounded in number and in time: a task that has run INLINE_BUDGET_S starts no
# other call and queues the rest (at the front), so that a pool process is free again
# within about one call however slow Gameball is, and work recovered from a dead host
# never waits behind a process's run of inline deliveries.
INLINE_RELEASED = 8
INLINE_BUDGET_S = 1.0


class MalformedMessageError(ValueError):
    """A message that cannot be a delivery request (kept as a dead letter)."""


@dataclass(frozen=True)
class Message:
    event_id: str
    event: Event | None
    published_at: float | None


def parse_message(args: Sequence[Any], kwargs: Mapping[str, Any]) -> Message:
    """Read ``gbq.deliver``'s arguments; raise :class:`MalformedMessageError` if unusable."""
    if args:
        raise MalformedMessageError("gbq.deliver takes keyword arguments only")
    unknown = set(kwargs) - {"event_id", "event", "published_at"}
    if unknown:
        raise MalformedMessageError(f"unknown arguments: {', '.join(sorted(unknown))}")
    event_id, raw_event, published_at = (
        kwargs.get("event_id"),
        kwargs.get("event"),
        kwargs.get("published_at"),
    )
    if not isinstance(event_id, str) or not event_id:
        raise MalformedMessageError("event_id must be a non-empty string")
    if published_at is not None and not isinstance(published_at, int | float):
        raise MalformedMessageError("published_at must be a number")
    event = None
    if raw_event is not None:
        if not isinstance(raw_event, dict):
            raise MalformedMessageError("event must be a JSON object")
        try:
            event = parse_event(raw_event, accepted=True)
        except InvalidEventError as error:
            raise MalformedMessageError(str(error)) from None
        if event.event_id != event_id:
            raise MalformedMessageError(
                f"event_id {event_id!r} does not match the event's {event.event_id!r}"
            )
    return Message(event_id, event, None if published_at is None else float(published_at))


class Sender(Protocol):
    def send(self, request: GameballRequest) -> Attempt: ...
    def get_json(self, path: str) -> tuple[int, object]: ...


class Queue(Protocol):
    def enqueue(self, event_ids: list[str]) -> int: ...
    def inbox_done(self, done: list[tuple[str, str | None]]) -> None: ...
    def inbox_for_order(self, order_id: str) -> list[InboxEntry]: ...
    def get_meanwhile(self, key: str) -> AbstractContextManager[Callable[[], bytes | None]]: ...


class Gatekeeper(Protocol):
    """The shared circuit breaker (``worker.coordination.shared_breaker.SharedBreaker``)."""

    @property
    def key(self) -> str:
        """Where Redis keeps its state."""

    def admit(self) -> Admission: ...
    def admit_as_read(self, seen: Breaker) -> Admission: ...
    def observe(self, signal: Signal, detail: str = "") -> Breaker: ...
    def current(self) -> Breaker: ...


def _must_wait(claimed: Claimed) -> bool:
    """Whether the gate holds a claimed event back, given its order's facts as read."""
    fact = OrderFact(claimed.event_id, claimed.kind, claimed.occurred_at, EventState.IN_FLIGHT)
    return gate(fact, claimed.order_facts or ()) is Gate.WAIT


class Deliverer:
    """Runs the algorithm for one process (one lease owner)."""

    def __init__(
        self,
        *,
        ledger: Ledger,
        gameball: Sender,
        queue: Queue,
        breaker: Gatekeeper,
        limiter: Permits,
        owner: str,
        policy: RetryPolicy,
        lease_s: float,
        recheck_s: float,
        api_version: ApiVersion,
        v3_refund_lines: bool,
        refund_time: RefundTime,
        refund_at_paid: RefundAtPaid,
        max_token_wait_s: float,
        clock: Callable[[], datetime] | None = None,
        rng: random.Random | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.ledger, self.gameball, self.queue = ledger, gameball, queue
        self.breaker, self.limiter, self.max_token_wait_s = breaker, limiter, max_token_wait_s
        self.reader = PacedReader(gameball, limiter, max_token_wait_s)  # records, paced too
        self.owner, self.api_version = owner, api_version
        self.clock = clock or ledger.clock.now  # one clock for all processes (ledger.clock)
        self.points = PointsCourier(
            redemptions=Redemptions(ledger),
            gameball=gameball,
            limiter=limiter,
            owner=owner,
            api_version=api_version,
            max_wait_s=max_token_wait_s,
            clock=self.clock,
        )
        self.policy = policy
        self.v3_refund_lines = v3_refund_lines
        self.refund_time, self.refund_at_paid = refund_time, refund_at_paid
        self.lease = timedelta(seconds=lease_s)
        self.recheck = timedelta(seconds=recheck_s)
        self.rng = rng or random.Random()  # noqa: S311 - jitter, not cryptography
        self.monotonic = monotonic  # this task's own running time (the inline budget)

    def handle(self, args: Sequence[Any], kwargs: Mapping[str, Any]) -> str:
        """Process one ``gbq.deliver`` message; returns what happened (for logs and tests)."""
        try:
            message = parse_message(args, kwargs)
        except MalformedMessageError as error:
            raw = json.dumps({"args": list(args), "kwargs": dict(kwargs)}, default=str)
            poison = Poison.of(f"task {DELIVER_TASK}", str(error), raw)
            dead_id = self.ledger.dead_letter_poison(poison, self.clock())
            log.warning("malformed message kept as dead letter %s: %s", dead_id, error)
            return "malformed"
        started = self.monotonic()
        now = self.clock()
        known: Event | None = None
        seen: Breaker | None = None  # the shared breaker, when read with other work
        ingested: list[tuple[str, str | None]] = []  # inbox entries the ledger now has
        if message.event is not None:  # the fast path: ingest and claim in one transaction
            row = new_event(message.event, message.published_at)
            claimed, seen, ingested = self._ingest_and_claim(message.event, row, now)
            # Parsed once: the ledger's content is the message's unless the ledger kept an
            # earlier content under this id (a conflicting re-publish), which is then sent.
            known = message.event if claimed and claimed.payload == row.payload else None
        else:
            claimed = self.ledger.claim(message.event_id, self.owner, now, now + self.lease)
        if claimed is None or claimed.parked:  # not claimable; or it waits already
            self._clear_inbox(ingested)
            return "skipped" if claimed is None else EventState.WAITING.value
        released: list[str] = []
        try:
            state = self._deliver(claimed, known, seen, released=released)
        except (*LEDGER_DOWN, *REDIS_DOWN):
            self._hand_back(claimed.event_id)
            self._clear_inbox(ingested)
            raise
        # After the call, not before it: nothing needs the entries gone meanwhile (one the
        # ledger has is only ingested again as a no-op), and the call need not wait.
        self._clear_inbox(ingested)
        self._deliver_released(released, started, claimed.order_id)
        return state

    def _clear_inbox(self, ingested: list[tuple[str, str | None]]) -> None:
        """Forget the inbox entries the ledger now has. Without Redis they stay, and the
        scheduler's inbox sweep forgets them later (after GBQ_REDRIVE_AFTER_S)."""
        try:
            self.queue.inbox_done(ingested)
        except REDIS_DOWN as error:
            log.debug("could not clear inbox entries %s: %s", ingested, error)

    def _deliver_released(self, released: list[str], started: float, order_id: str | None) -> None:
        """Deliver the events our settle released (pending, oldest first), each claimed as
        a message's would be, while this task has run less than INLINE_BUDGET_S (since
        ``started``, monotonic) and up to INLINE_RELEASED; queue what is left. If this
        process dies or the ledger fails on the way, the events not yet claimed are
        pending with ``enqueued_at`` set, and the scheduler re-sends them after
        GBQ_REDRIVE_AFTER_S, as it does a lost message."""
        for _ in range(INLINE_RELEASED):
            if not released:
                return
            if self.monotonic() - started >= INLINE_BUDGET_S:
                break
            event_id = released.pop(0)
            try:
                claimed = self._claim_released(event_id, order_id)
            except (*LEDGER_DOWN, *REDIS_DOWN):
                self._queue_left([event_id, *released])
                raise
            if claimed is None:  # taken meanwhile (a redrive's message): not ours to send
                continue
            if claimed.parked:  # an earlier event of its order came in meanwhile
                continue
            try:
                self._deliver(claimed, released=released)
            except (*LEDGER_DOWN, *REDIS_DOWN):
                self._hand_back(claimed.event_id)
                self._queue_left(released)
                raise
        if released:
            self.queue.enqueue(released)

    def _claim_released(self, event_id: str, order_id: str | None) -> Claimed | None:
        """Claim an event a settle of ``order_id`` released, reading its order (its
        published events first) in the claim's transaction, as a message's first step does."""
        now = self.clock()
        if order_id is None:
            return self.ledger.claim(event_id, self.owner, now, now + self.lease)
        others = self._order_inbox(order_id, event_id)
        claimed = self.ledger.claim_in_order(
            event_id,
            order_id,
            self.owner,
            now,
            now + self.lease,
            also=others,
            park=lambda claimed: now + self.recheck if _must_wait(claimed) else None,
            steps=self._order_steps(None),
        )
        if others:
            self.queue.inbox_done([(e.event_id, order_id) for e in others])
        return claimed

    def _order_steps(self, carried: tuple[Event, str] | None) -> OrderSteps:
        """What the claim's transaction does for a refund or cancellation that may go
        (``Ledger.ingest_and_claim``); ``carried``: the message's event and its payload,
        used when the ledger holds that content."""

        def lines(claimed: Claimed) -> str | None:
            same = carried is not None and carried[1] == claimed.payload
            event = carried[0] if carried is not None and same else None
            if not _fully_reverses(event or parse_event(claimed.payload, accepted=True)):
                return None
            return None if claimed.order_history is None else _lines_text(claimed.order_history)

        return OrderSteps(at_order_time=self.refund_time == "original", lines=lines)

    def _queue_left(self, event_ids: list[str]) -> None:
        """Queue released events this task will not deliver (best effort: without Redis
        the scheduler's redrive sends them)."""
        try:
            if event_ids:
                self.queue.enqueue(event_ids)
        except REDIS_DOWN as error:
            log.debug("could not queue released events %s: %s", event_ids, error)

    def _ingest_and_claim(
        self, event: Event, row: NewEvent, now: datetime
    ) -> tuple[Claimed | None, Breaker, list[tuple[str, str | None]]]:
        """The first step of a message that carries its event: one Redis read (the order's
        other published events, for an event that may wait on them), one ledger
        transaction (ingest them all, claim this one, read what the gate and the shared-id
        check need, and park it there if the gate says wait) while Redis answers a read of
        the shared breaker. Returns the claim, the breaker, and the inbox entries the
        ledger now has (the caller clears them)."""
        gated = row.order_id is not None and waits_on_order(row.kind)
        others = self._order_inbox(row.order_id, row.event_id) if row.order_id and gated else []
        with self.queue.get_meanwhile(self.breaker.key) as breaker_read:
            claimed = self.ledger.ingest_and_claim(
                row,
                self.owner,
                now,
                now + self.lease,
                also=others,
                read_order=gated,
                order_with_id=transaction_id_of(event) if row.kind in SHARED_ID_KINDS else None,
                park=lambda claimed: now + self.recheck if _must_wait(claimed) else None,
                steps=self._order_steps((event, row.payload)) if gated else None,
            )
            seen = Breaker.from_json(breaker_read())
        return claimed, seen, [(e.event_id, e.order_id) for e in (row, *others)]

    def _hand_back(self, event_id: str) -> None:
        """The ledger or Redis failed after our claim (down, or a deadlock's victim): give
        the event back now instead of holding its lease until it expires. If our call
        reached Gameball, the next attempt's "already exists" settles it."""
        try:
            if self.ledger.hand_back(event_id, self.owner, self.clock()):
                self.queue.enqueue([event_id])
        except (*LEDGER_DOWN, *REDIS_DOWN) as error:  # then the lease runs out, as before
            log.debug("could not hand %s back: %s", event_id, error)

    def _deliver(
        self,
        claimed: Claimed,
        known: Event | None = None,
        seen: Breaker | None = None,
        *,
        released: list[str],
    ) -> str:
        """Deliver a claimed event; the events its settle released are added to
        ``released`` (for :meth:`_deliver_released`)."""
        event = known or parse_event(claimed.payload, accepted=True)
        now = self.clock()
        held = self._gate(claimed, now)
        if held is not None:
            return held
        if self._refused_shared_id(claimed, event, now):
            return DeadReason.REJECTED.value
        basis = self._order_basis(claimed, event)
        if basis is not None and self._refused_currency(claimed, event, basis, now):
            return DeadReason.CURRENCY.value
        event = self._as_sent(event, basis)
        admission = self.breaker.admit() if seen is None else self.breaker.admit_as_read(seen)
        if not admission.allowed:
            breaker = self.breaker.current()
            return self._defer(
                claimed,
                _next_second(now + timedelta(seconds=max(0.0, admission.wait_s))),
                BREAKER_DEFERRAL,
                f"circuit breaker {breaker.state}: {breaker.reason}",
            )
        claimed = self._at_refund_time(claimed, event)  # only for a call about to be made
        started = self.clock()
        spend = redeems_points(event)  # an order that spends points (worker.rules.redemption)
        prepared = None if spend is None else self.points.prepare(claimed, *spend)
        if prepared is not None and prepared.wait_s is not None:
            return self._defer_for_rate_limit(claimed, now, prepared.wait_s)
        points = None if prepared is None else prepared.points
        fixed = Fixed(claimed.transaction_time, self._reversal_lines(claimed, event), points)
        request = build_request(
            event, self.api_version, fixed, v3_refund_lines=self.v3_refund_lines
        )
        bucket = bucket_of(request.method, request.path)
        sent = self._attempt(claimed, event, request, bucket=bucket, spend=spend, prepared=prepared)
        if not isinstance(sent, Attempt):  # the rate limit's wait, in seconds
            return self._defer_for_rate_limit(claimed, now, sent)
        attempt = sent
        finished = self.clock()
        outcome = attempt.outcome
        signal = signal_of(outcome)
        self.breaker.observe(signal, f"{outcome.reason}: {outcome.message[:200]}")
        if admission.probe and signal is Signal.SUCCESS:
            self._wake_deferred(finished)
        if outcome.reason is Reason.RATE_LIMITED:
            self.limiter.penalize(bucket=bucket)
        transition = after_attempt(
            attempt.outcome,
            attempt=claimed.attempts_since_retry + 1,
            first_attempt_at=claimed.first_attempt_at or started,
            window_credit_s=claimed.window_credit_s,
            now=finished,
            policy=self.policy,
            rng=self.rng,
        )
        record = AttemptRecord(
            claimed.attempts + 1, self.owner, started, attempt.duration_s, attempt.outcome
        )
        recorded = self.ledger.record_and_settle(
            claimed.event_id,
            self.owner,
            record,
            transition,
            finished,
            order_id=claimed.order_id,
            paid=claimed.kind == "paid",
        )
        applied = recorded.applied
        log.info(
            "event %s attempt %d: %s/%s -> %s%s",
            claimed.event_id,
            record.attempt_no,
            attempt.outcome.kind,
            attempt.outcome.reason,
            transition.state,
            "" if applied else " (lease lost: state left to its holder)",
            extra={
                "event_id": claimed.event_id,
                "order_id": claimed.order_id,
                "attempt": record.attempt_no,
                "outcome": attempt.outcome.reason.value,
            },
        )
        if recorded.blocked:
            log.warning("paid event %s is dead: blocked %s", claimed.event_id, recorded.blocked)
        released.extend(recorded.released)
        return transition.state.value

    def _attempt(
        self,
        claimed: Claimed,
        event: Event,
        request: GameballRequest,
        *,
        bucket: Bucket,
        spend: tuple[OrderPaid, Redemption] | None,
        prepared: Prepared | None,
    ) -> Attempt | float:
        """Send (or take the hold's attempt that ended this try) and settle what the answer
        leaves open; a float is how long the rate limit asks to wait instead."""
        if prepared is not None and prepared.hold_attempt is not None:
            attempt = prepared.hold_attempt  # the hold was not answered for good: try again
        else:
            allowed, wait_s = self.limiter.acquire(self.max_token_wait_s, bucket)
            if not allowed:
                return wait_s
            attempt = self.gameball.send(request)
        if spend is not None and prepared is not None:
            held = self.points.after_order(claimed, *spend, prepared, attempt.outcome)
            attempt = replace(attempt, outcome=held)
        if attempt.outcome.reason is Reason.TIME_TAKEN:
            return replace(attempt, outcome=self._settle_time_clash(claimed, event, attempt))
        if attempt.outcome.reason is Reason.ID_TAKEN:
            return replace(attempt, outcome=self._settle_id_taken(claimed, event, attempt))
        if attempt.outcome.reason is Reason.ORDER_CANCELLED:
            return replace(attempt, outcome=self._settle_order_cancelled(claimed, attempt))
        return attempt

    def _settle_time_clash(self, claimed: Claimed, event: Event, attempt: Attempt) -> Outcome:
        """304/9003: a transaction of the customer holds this instant. Ours, applied by an
        earlier attempt whose answer was lost (then it is delivered), or one gbq never sent
        (then ours moves on by a millisecond and goes again). Gameball's records say which:
        the order's for an order's events, the customer's (v4) or the id's (v3) for a
        cashback, which has no order to read it by."""
        outcome = attempt.outcome
        settled = self._if_ours(claimed, event, outcome)
        if settled is not None:
            return settled
        moved = self.ledger.move_transaction_time(claimed.event_id, self.owner)
        return outcome.to_retry(
            f"{outcome.message}: another transaction holds that instant; moved to {moved}"
        )

    def _if_ours(self, claimed: Claimed, event: Event, outcome: Outcome) -> Outcome | None:
        """``outcome`` settled when Gameball's records show the event's own transaction
        (delivered: an earlier attempt applied it) or cannot be read (retry); None when
        the transaction Gameball holds is another's."""
        try:
            records = self._records_of(claimed, event)
        except GameballReadError as error:
            return _unreadable(outcome, error)
        if not holds_ours(event, records):
            return None
        return replace(
            outcome,
            kind=OutcomeKind.DELIVERED,
            reason=Reason.ALREADY_APPLIED,
            message=f"{outcome.message}: Gameball holds this transaction (applied earlier)",
        )

    def _records_of(self, claimed: Claimed, event: Event) -> list[GameballRecord]:
        """What Gameball holds that could be this event's transaction. v4: the customer's
        own transactions (``GET transactions?customerId``), since v4's order records name
        no customer (openapi.json) and an id Gameball shares across customers would look
        ours; v3.0: the order's records (with the customer), or the id's for a cashback."""
        tid = transaction_id_of(event)
        if self.api_version != "v3.0" or claimed.order_id is None:
            return transaction_records(self.reader, tid, event.customer_id, self.api_version)
        return order_records(self.reader, claimed.order_id, self.api_version)

    def _gate(self, claimed: Claimed, now: datetime) -> str | None:
        """Per-order ordering: None if the event may go now; else it is parked (waiting)
        or buried (its paid event is dead), and what happened is returned."""
        if claimed.order_id is None or not waits_on_order(claimed.kind):
            return None
        facts = claimed.order_facts
        if facts is None:  # not read with the claim (a re-sent message)
            self._ingest_order_inbox(claimed.order_id, now)
            facts = tuple(self.ledger.order_facts(claimed.order_id))
        fact = OrderFact(claimed.event_id, claimed.kind, claimed.occurred_at, EventState.IN_FLIGHT)
        verdict = gate(fact, facts)
        if verdict is Gate.WAIT:
            self.ledger.park(
                claimed.event_id, self.owner, now, now + self.recheck, order_id=claimed.order_id
            )
            self._recheck_parked(fact, claimed.order_id, now)
            return EventState.WAITING.value
        if verdict is Gate.BLOCK:
            self.ledger.bury(
                claimed.event_id,
                self.owner,
                DeadReason.BLOCKED,
                "the order's paid event is dead",
                now,
            )
            return DeadReason.BLOCKED.value
        return None

    def _refused_shared_id(self, claimed: Claimed, event: Event, now: datetime) -> bool:
        """A refund or cashback whose id is an order's id: Gameball would answer "already
        exists" (one namespace for all ids) and it would never apply. Refused unsent."""
        if claimed.kind not in SHARED_ID_KINDS:
            return False
        taken = transaction_id_of(event)
        asked = claimed.id_held_by_order
        held = asked[1] if asked and asked[0] == taken else self.ledger.has_order(taken)
        if not held:
            return False
        self.ledger.bury(
            claimed.event_id,
            self.owner,
            DeadReason.REJECTED,
            f"id {taken!r} is also an order id: Gameball's order, refund and cashback ids "
            "share one namespace, so it would never apply; publish it under another id",
            now,
        )
        if claimed.order_id is not None:
            self._settled(claimed, EventState.DEAD, now)
        return True

    def _order_basis(self, claimed: Claimed, event: Event) -> OrderBasis | None:
        """A refund's order: its currency and total paid (None for other events, or when
        no paid event is known)."""
        if not isinstance(event, OrderRefunded):
            return None
        history = claimed.order_history or self.ledger.order_history(event.order_id)
        return order_basis(history.live, history.memory)

    def _refused_currency(
        self, claimed: Claimed, event: Event, basis: OrderBasis, now: datetime
    ) -> bool:
        """A refund in another currency than its order's: Gameball converts nothing and
        would take the amount as the order's currency (a refund of 100 JPY taken as 100
        USD). Not sent blind: dead with a reason of its own, for the operator."""
        if not isinstance(event, OrderRefunded) or basis.currency == event.currency:
            return False
        self.ledger.bury(
            claimed.event_id,
            self.owner,
            DeadReason.CURRENCY,
            f"the refund is in {event.currency} but order {event.order_id!r} was paid in "
            f"{basis.currency}: not sent (Gameball would take the amount as "
            f"{basis.currency}); publish it again in {basis.currency} under another refund id",
            now,
        )
        return True

    def _as_sent(self, event: Event, basis: OrderBasis | None) -> Event:
        """GBQ_GAMEBALL_REFUND_AT_PAID=full: a refund of exactly the order's total paid is
        a full refund (the OpenAPI), so it is sent as one, naming the order's lines."""
        if (
            self.refund_at_paid == "full"
            and isinstance(event, OrderRefunded)
            and basis is not None
            and event.amount is not None
            and event.amount == basis.total_paid
        ):
            return event.model_copy(update={"amount": None})
        return event

    def _at_refund_time(self, claimed: Claimed, event: Event) -> Claimed:
        """GBQ_GAMEBALL_REFUND_TIME=original: a refund or cancellation goes at its order's
        transaction time (the OpenAPI: "the timestamp of the original transaction"): just
        after it, a millisecond further for each earlier reversal of the order, at the first
        instant there its customer has free. Set before the first attempt, then kept: every
        attempt sends the same bytes."""
        if (
            self.refund_time != "original"
            or claimed.attempts
            or claimed.at_order_time  # moved in its claim's transaction
            or not isinstance(event, OrderRefunded | OrderCancelled)
        ):
            return claimed
        after = self.ledger.reversal_time(event.order_id, claimed.event_id)
        if after is None:
            return claimed
        moved = self.ledger.move_transaction_time(claimed.event_id, self.owner, after=after)
        return claimed if moved is None else replace(claimed, transaction_time=moved)

    def _settle_id_taken(self, claimed: Claimed, event: Event, attempt: Attempt) -> Outcome:
        """305/9004: a transaction holds the event's id. Ours, applied by an earlier attempt
        whose answer was lost (delivered), or another one: Gameball's order, refund and
        cashback ids share one namespace, so a refund or cashback id equal to some order's
        id is "taken" although this event was never applied. Gameball's records say which;
        counting the second case delivered would lose the event silently."""
        outcome = attempt.outcome
        settled = self._if_ours(claimed, event, outcome)
        if settled is not None:
            return settled
        return replace(
            outcome,
            kind=OutcomeKind.DEAD,
            reason=Reason.REJECTED,
            message=(
                f"{outcome.message}: id {transaction_id_of(event)!r} belongs to another "
                "transaction at Gameball (order, refund and cashback ids share one "
                "namespace); this event was not applied: publish it under another id"
            ),
        )

    def _settle_order_cancelled(self, claimed: Claimed, attempt: Attempt) -> Outcome:
        """302/9001 to a partial refund: Gameball's order is cancelled already. A refund
        that reached us after its order's later cancellation (from another host's spool,
        say) finds it so; that cancellation took back what the refund would have, so
        nothing is missing. The ledger's order says which (``after_cancelled_answer``)."""
        outcome = attempt.outcome
        fact = OrderFact(claimed.event_id, claimed.kind, claimed.occurred_at, EventState.IN_FLIGHT)
        order = [] if claimed.order_id is None else self.ledger.order_facts(claimed.order_id)
        answer = after_cancelled_answer(fact, order)
        if answer is CancelledAnswer.SUBSUMED:
            return replace(
                outcome,
                kind=OutcomeKind.DELIVERED,
                reason=Reason.ALREADY_APPLIED,
                message=f"{outcome.message}: the order's later cancellation reached Gameball "
                "first and took back what this refund would have",
            )
        if answer is CancelledAnswer.UNSETTLED:
            return outcome.to_retry(
                f"{outcome.message}: the order's later cancellation is being sent; asked again"
            )
        return replace(
            outcome,
            kind=OutcomeKind.DEAD,
            reason=Reason.REJECTED,
            message=f"{outcome.message}: the order was cancelled before this refund happened",
        )

    def _reversal_lines(self, claimed: Claimed, event: Event) -> tuple[RefundLine, ...] | None:
        """For a cancellation or a full refund: the order's lines not yet refunded, fixed at
        the first attempt (retries send the same bytes). Gameball reverses campaign and
        other bonus points only for the lines a refund names."""
        if not _fully_reverses(event) or claimed.order_id is None:
            return None
        if claimed.reversal_lines is None:
            history = claimed.order_history or self.ledger.order_history(claimed.order_id)
            text = _lines_text(history)
            if text is None:
                return None  # nothing to name: Gameball reverses the cashback
            stored = self.ledger.fix_reversal_lines(claimed.event_id, self.owner, text)
        else:
            stored = claimed.reversal_lines
        return tuple(
            RefundLine(line["productId"], int(line["quantity"]), Decimal(str(line["price"])))
            for line in json.loads(stored)
        )

    def _order_inbox(self, order_id: str, except_id: str | None = None) -> list[NewEvent]:
        """The order's published-but-not-ingested events (and, with GBQ_LEDGER_STANDBYS,
        the kept ones): the gate must see them, so that an earlier refund whose message is
        delayed (or held by a crashed worker, or whose ingest a ledger failover lost)
        still holds back a later cancellation."""
        events = []
        for entry in self.queue.inbox_for_order(order_id):
            if entry.event_id == except_id:
                continue
            try:
                events.append(new_event(entry.event(), entry.published_at))
            except UnreadableError:
                continue  # left for the scheduler's inbox sweep to dead-letter
        return events

    def _ingest_order_inbox(self, order_id: str, now: datetime) -> None:
        """Take the order's published-but-not-ingested events into the ledger first."""
        events = self._order_inbox(order_id)
        if events:
            self.ledger.ingest(events, now)
            self.queue.inbox_done([(event.event_id, order_id) for event in events])

    def _recheck_parked(self, fact: OrderFact, order_id: str, now: datetime) -> None:
        """Close the lost-wakeup window: what this event waited for may have settled after
        our read and before our park, and its ``release_waiting`` then ran too early to see
        us. Read again now that ``waiting`` is committed; if the way is clear, release the
        order's waiting events ourselves (the UPDATE hands each one to one releaser only).
        Without this, such an event sat until the scheduler's re-check (GBQ_REDRIVE_AFTER_S).
        """
        if gate(fact, self.ledger.order_facts(order_id)) is Gate.WAIT:
            return
        released = self.ledger.release_waiting(order_id, now)
        if released:
            self.queue.enqueue(released)

    def _wake_deferred(self, now: datetime) -> None:
        """Our probe succeeded, so the breaker closed: the events it held back are due now,
        not at the next probe time each was given (up to a cool-down later)."""
        woken = self.ledger.wake_deferred(BREAKER_DEFERRAL, now)
        if woken:
            log.info("breaker closed: %d deferred event(s) are due now", woken)
            # Sent now, at the front of the queue, oldest first: left to the scheduler's
            # next sweep, they went behind newer events whose first messages were still
            # queued, and the backlog drained newest first.
            # All of them, and the retries held back with them (``breaker.due_batch``): a
            # remainder left to the scheduler would go to the front, ahead of these.
            self.queue.enqueue(self.ledger.take_due(now, woken + WAKE_SLACK))

    def _defer_for_rate_limit(self, claimed: Claimed, now: datetime, wait_s: float) -> str:
        return self._defer(
            claimed,
            now + timedelta(seconds=wait_s),
            "rate_limited",
            "waiting for the shared rate limit",
        )

    def _defer(self, claimed: Claimed, until: datetime, reason: str, message: str) -> str:
        """Not now, and not Gameball's fault: come back later without spending budget."""
        now = self.clock()
        self.ledger.defer(
            claimed.event_id, self.owner, until=until, reason=reason, message=message, now=now
        )
        return "deferred"

    def _settled(self, claimed: Claimed, state: EventState, now: datetime) -> None:
        assert claimed.order_id is not None  # noqa: S101 - checked by the caller
        if claimed.kind == "paid" and state is EventState.DEAD:
            blocked = self.ledger.block_order(claimed.order_id, now)
            if blocked:
                log.warning("paid event %s is dead: blocked %s", claimed.event_id, blocked)
        released = self.ledger.release_waiting(claimed.order_id, now)
        if released:
            self.queue.enqueue(released)


def _fully_reverses(event: Event) -> bool:
    """A cancellation or a full refund: it names the order's lines not yet refunded."""
    return isinstance(event, OrderCancelled) or (isinstance(event, OrderRefunded) and event.is_full)


def _lines_text(history: OrderHistory) -> str | None:
    """A full reversal's lines (JSON): the paid lines its order's delivered refunds have
    not taken back; None when no paid event is known."""
    paid, taken = reversal_basis(history.live, history.memory)
    if paid is None:
        return None
    lines = lines_left((RefundLine(p, q, Decimal(v)) for p, q, v in paid), taken)
    return json.dumps([line.json() for line in lines])


def _unreadable(outcome: Outcome, error: GameballReadError) -> Outcome:
    """An ambiguous answer whose records could not be read: ask again later."""
    return outcome.to_retry(f"{outcome.message}; Gameball's records unreadable ({error})")


def _next_second(moment: datetime) -> datetime:
    """``moment`` rounded up to a whole second. The events the breaker holds back in one
    cool-down then share one due time, and come back oldest published first (the due
    sweep's tie-break), not in the order a worker happened to defer them."""
    whole = moment.replace(microsecond=0)
    return whole if whole == moment else whole + timedelta(seconds=1)
