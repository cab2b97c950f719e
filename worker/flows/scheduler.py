"""``gbq scheduler``: the sweeps that make the pipeline lose nothing
(docs/architecture.md, "The data path").

Several may run; one leads through a Redis lock (renewed every tick, expiring after
``3 × tick`` if its holder dies), and each says every turn of its loop that it is alive
(``worker.coordination.scheduler_liveness``: metrics, alerts, the health check). Each tick,
the leader runs every sweep, each bounded by
``GBQ_SCHEDULER_BATCH`` rows:

1. due retries → ``pending``, and a delivery message each (only a few per tick while the
   breaker holds calls back: the probe that closes it sends the rest, oldest first);
2. expired leases (a worker died mid-delivery) → ``pending``, and a message each;
3. the quarantine (poison that workers and publishers found) → dead letters ``malformed``;
4. inbox entries no worker ingested within ``GBQ_REDRIVE_AFTER_S`` → into the ledger;
   with ``GBQ_LEDGER_STANDBYS``, kept entries are forgotten once the ledger's standbys
   have their events, and ingested again if the ledger lost them (a failover);
5. ``pending`` events whose message nobody took within ``GBQ_REDRIVE_AFTER_S`` → a new
   message, once the queue is empty (with anything queued, the message is most likely
   still there);
6. the spool → Redis; the outbox → the ledger, with a message each (with
   ``GBQ_LEDGER_STANDBYS``, the outbox → the inbox, whose kept entries outlive a ledger
   failover: an outbox row, once deleted, does not);
7. ``waiting`` events due for a re-check → released, blocked, or expired.

Sending an event twice is always harmless (claims are conditional, Gameball ids are
stable); losing one is not. So every doubt is settled by sending again.

Every sweep reads its input as hostile (anyone with access to Redis, the spool file or
the outbox table can write there): an entry that cannot be read becomes a dead letter
``malformed`` with its raw bytes and leaves the place it sat, in the same tick, and the
entries behind it go on. A sweep that fails for another reason (the ledger is down, say)
fails alone and says so once.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import redis
from sqlalchemy import Engine

from producers.events import InvalidEventError, parse_event
from producers.keys import BREAKER_KEY, CONFLICTS_KEY, QUEUE
from producers.quarantine import Poison, forget_oldest, oldest, oldest_quarantined
from producers.spool import Spool
from producers.spool_report import report as report_spool
from producers.transport import push_to_inbox
from producers.untrusted import UnreadableError, load_json
from producers.wire import MAX_ENVELOPE_BYTES, InboxEntry, checked_event_id
from worker.coordination.leader import LeaderLock
from worker.coordination.liveness import gone
from worker.coordination.queue import RedisQueue
from worker.coordination.scheduler_liveness import SchedulerBeat
from worker.ledger import outbox
from worker.ledger.core import NewEvent, new_event
from worker.ledger.counters import fold_gone_shards
from worker.ledger.engine import checkpoint_wal
from worker.ledger.repository import Ledger
from worker.ledger.standbys import standby_positions
from worker.rules.breaker import Breaker, due_batch
from worker.rules.kept_inbox import Sample, forget_before, still_needed
from worker.rules.ordering import Gate, gate
from worker.settings import Settings

log = logging.getLogger(__name__)
FOLD_COUNTERS_EVERY_S = 30.0
KEPT_SAMPLES = 600  # WAL positions remembered: ten minutes of a standby's lag at 1 s ticks


@dataclass
class TickReport:
    """What one tick did (counts per sweep) and which sweeps failed (with why)."""

    counts: dict[str, int] = field(default_factory=dict)
    failures: dict[str, str] = field(default_factory=dict)

    def add(self, sweep: str, count: int) -> None:
        if count:
            self.counts[sweep] = self.counts.get(sweep, 0) + count


def _event_id_of(envelope: object) -> str:
    """The id an inbox envelope's event will have (checked again once it is parsed)."""
    if not isinstance(envelope, dict) or not isinstance(envelope.get("event"), dict):
        raise UnreadableError("not an inbox envelope")
    try:
        return parse_event(envelope["event"], accepted=True).event_id
    except InvalidEventError as error:
        raise UnreadableError(str(error)) from None


def _text(value: object) -> str:
    if not isinstance(value, str):
        raise UnreadableError(f"a {type(value).__name__}, not text")
    return value


def _readable(entry: InboxEntry, *, published: bool = True) -> NewEvent:
    """The event an inbox (or outbox) entry holds, or UnreadableError saying why not."""
    try:
        event = entry.event()
    except UnreadableError:
        raise
    except Exception as error:  # noqa: BLE001 - whatever the cause, it is this entry's
        raise UnreadableError(f"could not be read ({type(error).__name__})") from None
    return new_event(event, entry.published_at if published else None)


class Scheduler:
    """Runs the sweeps; ``tick()`` once, or ``run()`` until stopped."""

    def __init__(
        self,
        settings: Settings,
        *,
        ledger: Ledger,
        redis_client: redis.Redis,
        spool: Spool,
        outbox_engine: Engine | None,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.settings, self.ledger, self.spool = settings, ledger, spool
        self.redis = redis_client
        self.queue = RedisQueue(redis_client, keep_done=settings.ledger_standbys > 0)
        self._samples: list[Sample] = []  # (Redis time, WAL position): worker.rules.kept_inbox
        self._positions_hidden = False  # said once: pg_stat_replication hides its LSNs
        self.outbox_engine = outbox_engine
        self.clock = clock or ledger.clock.now  # one clock for all processes (ledger.clock)
        self.owner = f"scheduler:{uuid.uuid4().hex[:12]}"
        self.lock = LeaderLock(redis_client, self.owner, 3 * settings.scheduler_tick_s + 1)
        self.heartbeat = SchedulerBeat(redis_client, self.owner, 3 * settings.scheduler_tick_s + 1)
        self._failing: dict[str, str] = {}  # sweep → why it failed last tick
        self._next_fold = 0.0  # monotonic time of the next counters fold

    # --- the loop ----------------------------------------------------------------------------

    def run(self, stop: threading.Event) -> None:
        leading = False
        while not stop.is_set():
            try:
                now_leading = self.lock.hold()
                if now_leading != leading:
                    log.info("scheduler %s %s", self.owner, "leads" if now_leading else "stands by")
                    leading = now_leading
                if leading:
                    report = self.tick()
                    if report.counts:
                        log.info("scheduler tick: %s", report.counts)
                # After the tick: a leader's heartbeat says its loop finished one.
                self.heartbeat.beat(leads=leading, ticked=leading)
            except (redis.RedisError, OSError) as error:
                log.warning("scheduler tick skipped, Redis: %s", error)
            except Exception:
                log.exception("scheduler tick failed")
            stop.wait(self.settings.scheduler_tick_s)
        if leading:
            with contextlib.suppress(redis.RedisError):  # the lock lapses by itself anyway
                self.lock.release()

    def tick(self) -> TickReport:
        """Run every sweep once. Each runs on its own: one that fails (its cause logged
        once, not every tick) holds back none of the others, and a bad entry never fails a
        sweep: it becomes a dead letter ``malformed`` and the rest go on."""
        report = TickReport()
        now = self.clock()
        for name, sweep in self._sweeps():
            try:
                for counted, count in sweep(now).items():
                    report.add(counted, count)
            except Exception as error:  # isolate the sweep; say why once
                report.failures[name] = f"{type(error).__name__}: {error}"
                if self._failing.get(name) != report.failures[name]:
                    log.exception("scheduler sweep %s failed (retried every tick)", name)
        for name in set(self._failing) - set(report.failures):
            log.info("scheduler sweep %s works again", name)
        self._failing = report.failures
        return report

    def _sweeps(self) -> list[tuple[str, Callable[[datetime], dict[str, int]]]]:
        batch = self.settings.scheduler_batch
        return [
            (
                "due",
                lambda now: {
                    "due": self.queue.enqueue(self.ledger.take_due(now, self._due_batch()))
                },
            ),
            (
                "expired_leases",
                lambda now: {
                    "expired_leases": self.queue.enqueue(
                        self.ledger.take_expired_leases(now, batch)
                    )
                },
            ),
            ("gone_workers", lambda now: {"gone_workers": self._gone_workers(now)}),
            ("quarantine", lambda now: {"malformed": self._quarantine(now)}),
            ("conflicts", lambda now: {"conflicts": self._conflicts(now)}),
            ("inbox", lambda now: {"inbox": self._inbox(now)}),
            ("kept_inbox", self._kept_inbox),
            ("stale_pending", lambda now: {"stale_pending": self._stale_pending(now)}),
            ("spool", lambda _: {"spool": self._spool(batch)}),
            ("outbox", lambda now: {"outbox": self._outbox(now)}),
            ("waiting", self._waiting),
            ("retention", self._retention),
            ("counters", lambda _: {"counters_folded": self._fold_counters()}),
            ("wal_checkpoint", lambda _: self._checkpoint()),
        ]

    # --- sweeps ---------------------------------------------------------------------------

    def _gone_workers(self, now: datetime) -> int:
        """In-flight events of worker processes whose heartbeat lapsed (a host lost, a
        whole worker killed): back to pending and sent at once, not after the lease."""
        handed = 0
        for owner in gone(self.redis, self.ledger.lease_owners()):
            released = self.ledger.release_leases_of(owner, now)
            if released:
                log.warning(
                    "worker process %s stopped beating: handed back %d lease(s)",
                    owner,
                    len(released),
                )
                handed += self.queue.enqueue(released)
        return handed

    def _fold_counters(self) -> int:
        """Now and then, the counters of database backends that have gone into one row
        each (``ledger/counters.py``): status and metrics read stays a few rows."""
        if time.monotonic() < self._next_fold:
            return 0
        self._next_fold = time.monotonic() + FOLD_COUNTERS_EVERY_S
        return fold_gone_shards(self.ledger.engine)

    def _checkpoint(self) -> dict[str, int]:
        """SQLite: the WAL copied into the database here, not in a delivery's commit
        (``engine.SQLITE_WAL_BACKSTOP_PAGES``). Not counted in the tick's report: it is
        not work the log should mention every second."""
        checkpoint_wal(self.ledger.engine)
        return {}

    def _retention(self, now: datetime) -> dict[str, int]:
        """One small batch of retention per tick (nothing when GBQ_RETENTION_DAYS is 0)."""
        settings = self.settings
        if not settings.retention_days:
            return {}
        result = self.ledger.prune(
            cutoff=now - timedelta(days=settings.retention_days),
            limit=settings.scheduler_batch,
            archive_dir=settings.archive_dir,
            forget_before=now - timedelta(days=settings.order_memory_days)
            if settings.order_memory_days
            else None,
        )
        return {"pruned": result.events, "orders_forgotten": result.orders_forgotten}

    def _spool(self, batch: int) -> int:
        """Relay this host's spool (shared with its publishers) and report what is left,
        as a publisher's own relay does (``producers.spool_report``)."""
        moved = self.spool.relay(self.redis, batch)
        if moved:
            report_spool(self.redis, self.spool)
        return moved

    def _quarantine(self, now: datetime) -> int:
        """Poison that workers and publishers found (they have no ledger): dead letters."""
        poisons = oldest_quarantined(self.redis, self.settings.scheduler_batch)
        for poison in poisons:
            self._bury(poison, now)
        forget_oldest(self.redis, len(poisons))
        return len(poisons)

    def _conflicts(self, now: datetime) -> int:
        """Events a spool relay found published earlier with other content. The first
        accepted content wins: if only the inbox has it yet, it is ingested first; the
        other content is then recorded on the event (``Ledger.ingest``), never dropped."""
        records = oldest(self.redis, CONFLICTS_KEY, self.settings.scheduler_batch)
        for raw in records:
            try:
                envelope = load_json(raw, max_bytes=MAX_ENVELOPE_BYTES)
                entry = InboxEntry.of(_event_id_of(envelope), envelope["event"], now.timestamp())
                event = _readable(entry)
            except UnreadableError as error:
                self._bury(Poison.of("conflicts", str(error), raw), now)
                continue
            if not self.ledger.known([event.event_id]):
                first = self.queue.inbox_entry(event.event_id)
                if first is not None and self.ledger.ingest([_readable(first)], now):
                    self.queue.enqueue([first.event_id])
            if self.ledger.ingest([event], now):  # the first is gone: this one is the event
                self.queue.enqueue([event.event_id])
        forget_oldest(self.redis, len(records), CONFLICTS_KEY)
        return len(records)

    def _bury(self, poison: Poison, now: datetime) -> None:
        dead_id = self.ledger.dead_letter_poison(poison, now)
        log.warning("kept unreadable input as dead letter %s (%s)", dead_id, poison.problem[:300])

    def _inbox(self, now: datetime) -> int:
        older_than = now.timestamp() - self.settings.redrive_after_s
        entries, unreadable = self.queue.inbox_older_than(older_than, self.settings.scheduler_batch)
        if not entries and not unreadable:
            return 0
        for entry in unreadable:
            self._bury(entry.poison, now)
        self._ingest(entries, now)
        self.queue.inbox_done(
            [(entry.event_id, entry.order_id) for entry in entries]
            + [(entry.event_id, None) for entry in unreadable]
        )
        return len(entries) + len(unreadable)

    def _kept_inbox(self, now: datetime) -> dict[str, int]:
        """With GBQ_LEDGER_STANDBYS: forget the kept inbox entries the ledger's standbys
        have; ingest again those the ledger does not know (a failover lost them), and keep
        them until their new rows reach the standbys."""
        required = self.settings.ledger_standbys
        if not required:
            return {}
        at = self.queue.time()  # before the position: see worker.rules.kept_inbox
        positions = standby_positions(self.ledger.engine)
        if None in positions.flushed and not self._positions_hidden:
            log.warning(
                "cannot see the ledger's standbys' WAL positions (grant the gbq user "
                "pg_monitor): the inbox keeps every event until it can"
            )
        self._positions_hidden = None in positions.flushed
        self._samples.append(Sample(at, positions.current))
        before = forget_before(self._samples, positions, required)
        self._samples = still_needed(self._samples, before)[-KEPT_SAMPLES:]
        # Entries kept long enough to have been ingested, the oldest first; each is looked
        # at again GBQ_REDRIVE_AFTER_S after it was last marked.
        checked_before = at - self.settings.redrive_after_s
        kept, unreadable = self.queue.kept_before(checked_before, self.settings.scheduler_batch)
        if not kept and not unreadable:
            return {}
        known = self.ledger.known([entry.event_id for entry, _ in kept])
        lost = [entry for entry, _ in kept if entry.event_id not in known]
        if lost:
            log.warning(
                "the ledger lacks %d event(s) it had ingested (a failover lost its last "
                "commits): ingested again from the inbox",
                len(lost),
            )
            self._ingest(lost, now)
        safe = [
            entry
            for entry, marked in kept
            if entry.event_id in known and before is not None and marked < before
        ]
        self.queue.forget_kept(
            [(entry.event_id, entry.order_id) for entry in safe]
            + [(event_id, None) for event_id in unreadable]
        )
        forgotten = {entry.event_id for entry in safe}
        self.queue.keep_again([e.event_id for e, _ in kept if e.event_id not in forgotten])
        return {"kept_forgotten": len(safe), "kept_ingested_again": len(lost)}

    def _ingest(self, entries: list[InboxEntry], now: datetime) -> None:
        """Ingest inbox entries; what cannot be read or stored becomes a dead letter."""
        events, poisons = [], []
        for entry in entries:
            try:
                events.append(_readable(entry))
            except UnreadableError as error:
                poisons.append(Poison.of("inbox", str(error), entry.envelope or entry.event_json))
        poisons += [
            Poison.of("inbox", why, event.payload)
            for event, why in self.ledger.ingest_isolated(events, now)
        ]
        for poison in poisons:
            self._bury(poison, now)

    def _due_batch(self) -> int:
        pipe = self.redis.pipeline(transaction=False)  # one round trip per tick
        pipe.get(BREAKER_KEY)
        pipe.time()  # the breaker's clock
        raw, (seconds, micros) = pipe.execute()
        try:
            breaker = Breaker.from_json(raw)
        except (ValueError, KeyError, TypeError):  # unreadable: the workers' problem, not ours
            breaker = Breaker()
        return due_batch(breaker, self.settings.scheduler_batch, seconds + micros / 1_000_000)

    def _stale_pending(self, now: datetime) -> int:
        if self.redis.llen(QUEUE):
            # Anything queued: their messages are most likely among it, not lost. Re-sent
            # now, they went to the front, ahead of older events (a backlog drained out of
            # order); a lost message is re-sent once the queue has drained.
            return 0
        sent_before = now - timedelta(seconds=self.settings.redrive_after_s)
        stale = self.ledger.take_stale_pending(sent_before, now, self.settings.scheduler_batch)
        return self.queue.enqueue(stale)

    def _outbox(self, now: datetime) -> int:
        if self.outbox_engine is None:
            return 0
        rows = outbox.staged(self.outbox_engine, self.settings.scheduler_batch)
        if not rows:
            return 0
        entries: list[InboxEntry] = []
        events: list[NewEvent] = []
        poisons: list[Poison] = []
        for row_id, event_id, event_json in rows:
            try:
                entry = InboxEntry(checked_event_id(event_id), _text(event_json), time.time())
                events.append(_readable(entry, published=False))
                entries.append(entry)
            except UnreadableError as error:
                raw = event_json if isinstance(event_json, str | bytes) else repr(event_json)
                poisons.append(Poison.of("outbox", f"row {row_id}: {error}", raw))
        if self.settings.ledger_standbys:
            # Through the inbox: a ledger failover can lose the ingest, and the deleted
            # rows could not bring it back (the outbox may live in another database).
            push_to_inbox(self.redis, entries, poisons, replication=self.settings.replication)
            outbox.forget(self.outbox_engine, [row_id for row_id, _, _ in rows])
            return len(rows)
        refused = self.ledger.ingest_isolated(events, now)
        poisons += [Poison.of("outbox", why, event.payload) for event, why in refused]
        for poison in poisons:
            self._bury(poison, now)
        refused_ids = {event.event_id for event, _ in refused}
        self.queue.enqueue(event.event_id for event in events if event.event_id not in refused_ids)
        outbox.forget(self.outbox_engine, [row_id for row_id, _, _ in rows])
        return len(rows)

    def _waiting(self, now: datetime) -> dict[str, int]:
        counts = {"released": 0, "blocked": 0, "expired_waiting": 0}
        due = self.ledger.waiting_due(now, self.settings.scheduler_batch)
        too_old = now - timedelta(seconds=self.settings.waiting_window_s)
        later: list[str] = []
        decided: set[str] = set()
        facts_of = self.ledger.order_facts_many(order_id for _, order_id, _ in due if order_id)
        for event_id, order_id, created_at in due:
            if order_id is None or order_id in decided:
                continue
            if created_at < too_old:
                counts["expired_waiting"] += self.ledger.expire_waiting(event_id, now)
                continue
            facts = facts_of.get(order_id, [])
            fact = next((f for f in facts if f.event_id == event_id), None)
            verdict = Gate.WAIT if fact is None else gate(fact, facts)
            if verdict is Gate.PROCEED:
                decided.add(order_id)
                released = self.ledger.release_waiting(order_id, now)
                counts["released"] += self.queue.enqueue(released)
            elif verdict is Gate.BLOCK:
                decided.add(order_id)
                counts["blocked"] += len(self.ledger.block_order(order_id, now))
            else:
                later.append(event_id)
        self.ledger.recheck_later(
            later, now + timedelta(seconds=self.settings.redrive_after_s), now
        )
        return counts
