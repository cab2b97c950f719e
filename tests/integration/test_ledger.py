"""The ledger's operations on SQLite and (when configured) PostgreSQL."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import sqlite3
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import create_engine, insert, text
from sqlalchemy.exc import OperationalError

from harness.processes import wait_until
from harness.services import sqlite_ledger
from producers.quarantine import KEEP_BYTES, Poison
from producers.wire import content_sha256
from worker.coordination.outage import LEDGER_DOWN
from worker.ledger import engine as engine_module
from worker.ledger.core import AttemptRecord, NewEvent, new_rows, order_lock_key
from worker.ledger.deadletters import DeadLetters
from worker.ledger.engine import create_ledger_engine
from worker.ledger.models import EventRow
from worker.ledger.repository import Ledger
from worker.ledger.schema import LedgerNotMigratedError, ensure_migrated
from worker.ledger.statements import LOCK_CLASS, LOCK_ORDER
from worker.rules.outcomes import Outcome, OutcomeKind, Reason
from worker.rules.retry import Transition
from worker.rules.states import DeadReason, EventState

pytestmark = pytest.mark.integration
NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
LEASE = NOW + timedelta(seconds=60)


def event(
    event_id: str, kind: str = "paid", order_id: str | None = "O", minutes: int = 0
) -> NewEvent:
    return NewEvent(event_id, kind, order_id, "c", "{}", NOW + timedelta(minutes=minutes), None)


def attempt(kind: OutcomeKind, code: int | None = None) -> AttemptRecord:
    return AttemptRecord(1, "w", NOW, 0.05, Outcome(kind, Reason.ACCEPTED, "m", 200, code))


def test_ingest_is_idempotent(ledger: Ledger) -> None:
    """The same event ingested twice is one row."""
    assert ledger.ingest([event("paid:O"), event("paid:O")], NOW) == 1
    assert ledger.ingest([event("paid:O")], NOW) == 0
    assert ledger.counts_by_state() == {"pending": 1}


def test_claim_is_exclusive_under_concurrency(ledger: Ledger) -> None:
    """Eight workers race for one event: exactly one gets the lease."""
    ledger.ingest([event("paid:O")], NOW)
    with ThreadPoolExecutor(8) as pool:
        claims = list(pool.map(lambda n: ledger.claim("paid:O", f"w{n}", NOW, LEASE), range(8)))
    assert sum(claim is not None for claim in claims) == 1


def test_claim_respects_next_attempt_and_leases(ledger: Ledger) -> None:
    """Not before the retry time; a live lease blocks others, an expired one does not."""
    ledger.ingest([event("paid:O")], NOW)
    assert ledger.claim("paid:O", "a", NOW, LEASE) is not None
    assert ledger.claim("paid:O", "b", NOW + timedelta(seconds=30), LEASE) is None
    later = LEASE + timedelta(seconds=1)
    assert ledger.claim("paid:O", "b", later, later + timedelta(seconds=60)) is not None
    # the first holder's late result is kept as history but changes nothing
    retry = Transition(EventState.SCHEDULED, next_attempt_at=NOW + timedelta(hours=1))
    assert not ledger.record_attempt("paid:O", "a", attempt(OutcomeKind.RETRY), retry, later)
    assert len(ledger.attempts_of("paid:O")) == 1
    row = ledger.get("paid:O")
    assert row is not None
    assert (row.state, row.lease_owner) == ("in_flight", "b")


def test_record_attempt_applies_the_transition(ledger: Ledger) -> None:
    """The holder's result updates state, counters and Gameball's answer."""
    ledger.ingest([event("paid:O")], NOW)
    ledger.claim("paid:O", "a", NOW, LEASE)
    retry_at = NOW + timedelta(seconds=5)
    transition = Transition(EventState.SCHEDULED, next_attempt_at=retry_at)
    assert ledger.record_attempt("paid:O", "a", attempt(OutcomeKind.RETRY, 5000), transition, NOW)
    row = ledger.get("paid:O")
    assert row is not None
    assert (row.state, row.attempts, row.next_attempt_at, row.last_code, row.first_attempt_at) == (
        "scheduled",
        1,
        retry_at,
        5000,
        NOW,
    )
    assert row.lease_owner is None
    assert ledger.claim("paid:O", "a", NOW, LEASE) is None  # not due yet


def test_scheduler_takes_are_bounded_and_oldest_first(ledger: Ledger) -> None:
    """Due retries come back oldest first, no more than asked."""
    ledger.ingest([event(f"paid:{n}", order_id=str(n)) for n in range(5)], NOW)
    for n in range(5):
        ledger.claim(f"paid:{n}", "a", NOW, LEASE)
        ledger.record_attempt(
            f"paid:{n}",
            "a",
            attempt(OutcomeKind.RETRY),
            Transition(EventState.SCHEDULED, next_attempt_at=NOW + timedelta(seconds=10 - n)),
            NOW,
        )
    later = NOW + timedelta(seconds=20)
    assert ledger.take_due(later, 2) == ["paid:4", "paid:3"]
    assert sorted(ledger.take_due(later, 10)) == ["paid:0", "paid:1", "paid:2"]
    assert ledger.take_due(later, 10) == []


def test_a_closing_breaker_wakes_its_deferrals_in_publish_order(ledger: Ledger) -> None:
    """Events the breaker held back in different cool-downs, some already due: all come
    back at once, oldest published first; other deferrals keep their time."""
    ledger.ingest(
        [
            dataclasses.replace(
                event(f"paid:{n}", order_id=str(n)), published_at=NOW + timedelta(seconds=n)
            )
            for n in range(5)
        ],
        NOW,
    )
    # published 0..4; deferred by the breaker until 2, 1, 30, 20 s (and one rate-limited)
    deferrals = [(2, "breaker_open"), (1, "breaker_open"), (30, "breaker_open")]
    deferrals += [(20, "breaker_open"), (40, "rate_limited")]
    for n, (seconds, reason) in enumerate(deferrals):
        ledger.claim(f"paid:{n}", "a", NOW, LEASE)
        until = NOW + timedelta(seconds=seconds)
        ledger.defer(f"paid:{n}", "a", until=until, reason=reason, message="m", now=NOW)
    woken_at = NOW + timedelta(seconds=10)
    assert ledger.wake_deferred("breaker_open", woken_at) == 4
    assert ledger.take_due(woken_at, 10) == ["paid:0", "paid:1", "paid:2", "paid:3"]
    assert ledger.take_due(NOW + timedelta(seconds=40), 10) == ["paid:4"]


def test_expired_leases_and_stale_pending_are_taken(ledger: Ledger) -> None:
    """A dead worker's event and an event whose message was lost come back."""
    ledger.ingest([event("paid:A", order_id="A"), event("paid:B", order_id="B")], NOW)
    ledger.claim("paid:A", "dead-worker", NOW, NOW + timedelta(seconds=5))
    assert ledger.take_expired_leases(NOW + timedelta(seconds=1), 10) == []
    assert ledger.take_expired_leases(NOW + timedelta(seconds=6), 10) == ["paid:A"]
    assert ledger.take_stale_pending(NOW, NOW, 10) == []
    later = NOW + timedelta(seconds=60)
    assert sorted(ledger.take_stale_pending(later, later, 10)) == ["paid:A", "paid:B"]
    assert ledger.take_stale_pending(later, later, 10) == []  # re-sent now, not stale


def test_waiting_release_and_blocking(ledger: Ledger) -> None:
    """Waiting events are released for their order; a dead paid event blocks the rest."""
    ledger.ingest(
        [
            event("refunded:O:R", "refunded", minutes=1),
            event("cancelled:O", "cancelled", minutes=2),
            event("refunded:P:R", "refunded", order_id="P"),
        ],
        NOW,
    )
    for event_id in ("refunded:O:R", "cancelled:O", "refunded:P:R"):
        ledger.claim(event_id, "a", NOW, LEASE)
        order = "P" if event_id.endswith(":P:R") else "O"
        assert ledger.park(event_id, "a", NOW, NOW + timedelta(seconds=30), order_id=order)
    assert sorted(ledger.release_waiting("O", NOW)) == ["cancelled:O", "refunded:O:R"]
    assert ledger.block_order("P", NOW) == ["refunded:P:R"]
    row = ledger.get("refunded:P:R")
    assert row is not None
    assert (row.state, row.dead_reason) == ("dead", DeadReason.BLOCKED)


def test_a_settle_takes_its_orders_lock_before_its_row_and_then_sees_what_the_holder_parked(
    ledger: Ledger,
) -> None:
    """PostgreSQL records the attempt in one statement that takes the order's lock first.
    While another transaction holds the lock (parking a refund of the order), the settle
    waits without locking its event's row, and once the holder commits, the release that
    follows sees the parked refund: no lost wakeup."""
    # An order id of its own: advisory locks are the database's, shared by the schemas of
    # the tests running beside this one, and the count below must be this test's alone
    if ledger.engine.dialect.name != "postgresql":
        pytest.skip("the order lock is PostgreSQL's (SQLite runs one writer at a time)")
    ledger.ingest(
        [event("paid:OSL", order_id="OSL"), event("refunded:OSL:R", "refunded", "OSL", minutes=1)],
        NOW,
    )
    assert ledger.claim("paid:OSL", "a", NOW, LEASE) is not None
    assert ledger.claim("refunded:OSL:R", "b", NOW, LEASE) is not None
    delivered = Transition(EventState.DELIVERED)
    with ThreadPoolExecutor(1) as pool, ledger.engine.connect() as holder:
        holder.execute(LOCK_ORDER, {"b_key": order_lock_key("OSL")})
        holder.execute(
            text(
                "UPDATE gbq_events SET state = 'waiting', lease_owner = NULL, "
                "lease_expires_at = NULL WHERE event_id = 'refunded:OSL:R'"
            )
        )
        settling = pool.submit(
            ledger.record_and_settle,
            "paid:OSL",
            "a",
            attempt(OutcomeKind.DELIVERED),
            delivered,
            NOW,
            order_id="OSL",
            paid=True,
        )
        with ledger.engine.connect() as observer:
            waiting = text(  # this order's lock only: other tests' schemas take theirs
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted "
                "AND classid = :class AND objid = :objid AND objsubid = 2"
            )
            key = {"class": LOCK_CLASS, "objid": order_lock_key("OSL") & 0xFFFFFFFF}
            wait_until(
                lambda: observer.execute(waiting, key).scalar() == 1,
                timeout_s=10,
                what="the settle waiting on the order's lock",
            )
            row_lock = text(
                "SELECT 1 FROM gbq_events WHERE event_id = 'paid:OSL' FOR UPDATE NOWAIT"
            )
            assert observer.execute(row_lock).scalar() == 1  # the row is not locked yet
            observer.rollback()
            assert not settling.done()
        holder.commit()
        recorded = settling.result(timeout=10)
    assert (recorded.applied, recorded.released) == (True, ["refunded:OSL:R"])
    assert [a.attempt_no for a in ledger.attempts_of("paid:OSL")] == [1]
    assert ledger.states_of(["paid:OSL", "refunded:OSL:R"]) == {
        "paid:OSL": "delivered",
        "refunded:OSL:R": "pending",
    }


def test_a_first_step_takes_its_orders_lock_in_its_insert_and_finds_a_row_committed_meanwhile(
    ledger: Ledger,
) -> None:
    """PostgreSQL: a first step's insert takes the order's lock itself. While another
    transaction holds the lock, the insert waits; the holder then commits the same event
    (as the inbox sweep might): the insert, begun before that commit, finds the row, and
    the step claims it with the holder's transaction time."""
    if ledger.engine.dialect.name != "postgresql":
        pytest.skip("the order lock is PostgreSQL's (SQLite runs one writer at a time)")
    first = event("paid:O")
    with ThreadPoolExecutor(1) as pool, ledger.engine.connect() as holder:
        holder.execute(LOCK_ORDER, {"b_key": order_lock_key("O")})
        stepping = pool.submit(ledger.ingest_and_claim, first, "a", NOW, LEASE)
        waiting = text(
            "SELECT a.query FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
            "WHERE l.locktype = 'advisory' AND NOT l.granted "
            "AND l.classid = :class AND l.objid = :objid AND l.objsubid = 2"
        )
        key = {"class": LOCK_CLASS, "objid": order_lock_key("O") & 0xFFFFFFFF}

        def waiting_statement() -> str | None:
            # pg_stat_activity is read once per transaction: a new one each time
            with ledger.engine.connect() as observer:
                found: str | None = observer.execute(waiting, key).scalar()
                return found

        wait_until(
            lambda: waiting_statement() is not None,
            timeout_s=10,
            what="the first step waiting on the order's lock",
        )
        query = waiting_statement() or ""
        assert "INSERT INTO gbq_events" in query  # the insert waits, not a statement before
        earlier = NOW - timedelta(seconds=1)
        row = {**new_rows([first], NOW)[0], "transaction_time": earlier}
        holder.execute(insert(EventRow).values(**row))
        holder.commit()
        claimed = stepping.result(timeout=10)
    assert claimed is not None
    assert (claimed.event_id, claimed.transaction_time) == ("paid:O", earlier)
    assert ledger.counts_by_state() == {"in_flight": 1}


def test_malformed_input_is_kept_byte_for_byte(ledger: Ledger) -> None:
    """Unreadable input is a dead letter with its exact bytes (NUL and invalid UTF-8 too,
    which PostgreSQL text cannot hold), length and hash; the same bytes give one letter."""
    raw = b"{garbage\x00\xff\xfe" + b"x" * (KEEP_BYTES + 10)
    first = ledger.dead_letter_poison(Poison.of("queue gbq", "not JSON", raw), NOW)
    assert ledger.dead_letter_poison(Poison.of("spool", "other words", raw), NOW) == first
    row = ledger.get(first)
    assert row is not None
    assert (row.state, row.dead_reason) == ("dead", "malformed")
    assert row.raw == raw[:KEEP_BYTES]
    assert (row.raw_length, row.raw_sha256) == (len(raw), hashlib.sha256(raw).hexdigest())
    assert row.payload.startswith("{garbage\\x00\\xff\\xfe")
    assert row.last_message == "queue gbq: not JSON"


def test_an_unmigrated_ledger_is_refused_with_the_command_to_run(tmp_path: object) -> None:
    """A process facing an empty database says to run `gbq migrate`."""
    engine = create_engine(f"sqlite:///{tmp_path}/empty.db")
    with pytest.raises(LedgerNotMigratedError, match="run `gbq migrate`"):
        ensure_migrated(engine)


def test_a_malformed_dead_letter_holding_an_event_is_retried_as_that_event(
    ledger: Ledger,
) -> None:
    """A dead letter of any reason can be retried: a malformed one whose bytes hold a valid
    event (here, one an older worker buried as "in the future" by its own clock) is
    replaced by that event, pending; one without an event is skipped with the reason."""
    future = {
        "kind": "paid",
        "order_id": "FUT",
        "customer_id": "c",
        "occurred_at": (NOW + timedelta(minutes=10)).isoformat(),
        "total_price": "5",
        "total_paid": "5",
    }
    holding = json.dumps({"args": [], "kwargs": {"event_id": "paid:FUT", "event": future}})
    buried = ledger.dead_letter_poison(Poison.of("task", "is in the future", holding), NOW)
    garbage = ledger.dead_letter_poison(Poison.of("queue gbq", "not JSON", b"\x00"), NOW)
    result = DeadLetters(ledger).requeue([buried, garbage], NOW)
    assert result.recovered == [(buried, "paid:FUT")]
    assert result.to_send == ["paid:FUT"]
    assert [event_id for event_id, _ in result.skipped] == [garbage]
    assert ledger.get(buried) is None
    row = ledger.get("paid:FUT")
    assert row is not None
    assert (row.state, row.kind, row.order_id) == ("pending", "paid", "FUT")
    again = DeadLetters(ledger).requeue([garbage], NOW)
    assert "no event in its bytes" in again.skipped[0][1]


def test_other_content_under_a_known_id_is_a_recorded_conflict(ledger: Ledger) -> None:
    """The first content stays; each distinct other content is counted once, the latest
    kept; the same content again is no conflict (a duplicate)."""
    first, other, third = (
        dataclasses.replace(event("paid:O"), payload=text)
        for text in ('{"a":1}', '{"a":2}', '{"a":3}')
    )
    assert ledger.ingest([first], NOW) == 1
    assert ledger.ingest([first, first], NOW) == 0
    row = ledger.get("paid:O")
    assert row is not None
    assert (row.conflicts, row.content_sha256) == (0, content_sha256('{"a":1}'))
    ledger.ingest([other], NOW)
    ledger.ingest([other], NOW)
    ledger.ingest([third], NOW + timedelta(seconds=5))
    row = ledger.get("paid:O")
    assert row is not None
    assert (row.payload, row.conflicts, row.conflict_payload) == ('{"a":1}', 2, '{"a":3}')
    assert row.conflict_at == NOW + timedelta(seconds=5)


def test_one_customer_at_one_instant_gets_distinct_times_one_event_at_a_time(
    ledger: Ledger,
) -> None:
    """Events of one customer at the same instant, ingested one by one (each read of the
    instants taken sees a short window only): each gets the next free millisecond."""
    for n in range(6):
        ledger.ingest([event(f"cashback:{n}", kind="cashback", order_id=None)], NOW)
    times = sorted(row.transaction_time for n in range(6) if (row := ledger.get(f"cashback:{n}")))
    assert times == [NOW + timedelta(milliseconds=n) for n in range(6)]


def test_a_first_step_claims_a_new_event_as_the_claim_statement_would(ledger: Ledger) -> None:
    """A new event is inserted claimed (no CLAIM statement): what the worker gets, and
    what the row holds, is what ingest then claim give; a duplicate message finds it
    leased; once the lease expired, the known event is claimed by the statement."""
    lines = '{"lines":[1]}'
    first = dataclasses.replace(event("refunded:R1", kind="refunded"), payload=lines)
    second = dataclasses.replace(event("refunded:R2", kind="refunded", minutes=1), payload=lines)
    inserted = ledger.ingest_and_claim(first, "w", NOW, LEASE)
    ledger.ingest([second], NOW)
    claimed = ledger.claim("refunded:R2", "w", NOW, LEASE)
    assert inserted is not None
    assert claimed is not None
    assert dataclasses.replace(
        inserted, event_id="-", occurred_at=NOW, transaction_time=NOW
    ) == dataclasses.replace(claimed, event_id="-", occurred_at=NOW, transaction_time=NOW)
    assert inserted.transaction_time == NOW
    for event_id in ("refunded:R1", "refunded:R2"):
        row = ledger.get(event_id)
        assert row is not None
        assert (row.state, row.lease_owner, row.lease_expires_at) == ("in_flight", "w", LEASE)
    assert ledger.counts_by_state() == {"in_flight": 2}
    assert ledger.ingest_and_claim(first, "other", NOW, LEASE) is None  # a duplicate message
    later = LEASE + timedelta(seconds=1)
    again = ledger.ingest_and_claim(first, "other", later, later + timedelta(seconds=60))
    assert again is not None
    assert dataclasses.replace(again, event_id="-") == dataclasses.replace(inserted, event_id="-")
    row = ledger.get("refunded:R1")
    assert row is not None
    assert (row.lease_owner, row.attempts) == ("other", 0)


def test_one_customer_at_one_instant_gets_distinct_times_first_step_by_first_step(
    ledger: Ledger,
) -> None:
    """The first step takes the event's own instant without reading which are taken; an
    instant another event holds makes it read and move on, and a duplicate message of a
    known event (its own instant taken by itself) is no clash."""
    for n in range(6):
        new = event(f"cashback:{n}", kind="cashback", order_id=None)
        assert ledger.ingest_and_claim(new, "w", NOW, LEASE) is not None
        assert ledger.ingest_and_claim(new, "w", NOW, LEASE) is None
    times = [row.transaction_time for n in range(6) if (row := ledger.get(f"cashback:{n}"))]
    assert times == [NOW + timedelta(milliseconds=n) for n in range(6)]


def test_a_batch_with_events_already_ingested_leaves_no_instant_unused(ledger: Ledger) -> None:
    """A sweep's batch that holds events the ledger has already (their own messages came
    first) gives only the new ones instants, the next free ones, with no gap between."""
    same = [event(f"paid:{n}", order_id=f"O{n}") for n in range(4)]
    ledger.ingest(same[:2], NOW)
    assert ledger.ingest(same, NOW) == 2
    times = [row.transaction_time for n in range(4) if (row := ledger.get(f"paid:{n}"))]
    assert times == [NOW + timedelta(milliseconds=n) for n in range(4)]


def test_a_first_step_ingests_the_orders_other_events_and_reads_what_the_gate_needs(
    ledger: Ledger,
) -> None:
    """One transaction: the order's other published events are ingested with the event,
    the order's facts (those just ingested included) and whether an order has the
    refund's id are read after the claim."""
    ledger.ingest([event("paid:X", order_id="X")], NOW)
    refund = event("refunded:R", kind="refunded", minutes=2)
    paid = event("paid:O")
    cancel = event("cancelled:O", kind="cancelled", minutes=3)
    claimed = ledger.ingest_and_claim(
        refund, "w", NOW, LEASE, also=[paid, cancel], read_order=True, order_with_id="X"
    )
    assert claimed is not None
    assert claimed.order_facts is not None
    facts = {(f.event_id, f.kind, f.state, f.occurred_at) for f in claimed.order_facts}
    assert facts == {
        ("paid:O", "paid", "pending", NOW),
        ("refunded:R", "refunded", "in_flight", NOW + timedelta(minutes=2)),
        ("cancelled:O", "cancelled", "pending", NOW + timedelta(minutes=3)),
    }
    assert claimed.id_held_by_order == ("X", True)
    assert ledger.counts_by_state() == {"pending": 3, "in_flight": 1}
    later = ledger.ingest_and_claim(
        event("refunded:R3", kind="refunded", minutes=4), "w", NOW, LEASE, order_with_id="Y"
    )
    assert later is not None
    assert (later.order_facts, later.id_held_by_order) == (None, ("Y", False))


def test_the_migrations_build_exactly_what_the_models_declare(database_url: str) -> None:
    """Every column, index and table of worker/ledger/models.py comes from a migration
    (the outbox table is the publisher's, declared in producers/outbox.py)."""
    from alembic.autogenerate import compare_metadata  # noqa: PLC0415 - only here
    from alembic.migration import MigrationContext  # noqa: PLC0415

    from producers.outbox import outbox_table  # noqa: PLC0415
    from worker.ledger.models import Base  # noqa: PLC0415

    engine = create_ledger_engine(database_url)
    try:
        ensure_migrated(engine)
        with engine.connect() as connection:
            differences = compare_metadata(MigrationContext.configure(connection), Base.metadata)
    finally:
        engine.dispose()
    ours = [
        difference
        for difference in differences
        if not (difference[0] == "remove_table" and difference[1].name == outbox_table.name)
    ]
    assert ours == []


def test_a_locked_sqlite_ledger_fails_as_sqlalchemy_does_and_recovers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Write transactions take SQLite's lock at BEGIN, straight through the driver; when
    another writer holds it past the busy timeout, the failure is SQLAlchemy's
    OperationalError (the worker's "ledger unavailable" path), and the pooled connection
    works once the lock is gone."""
    monkeypatch.setattr(engine_module, "SQLITE_BUSY_TIMEOUT_MS", 50)
    url = sqlite_ledger(tmp_path)
    ledger = Ledger(create_ledger_engine(url))
    other = sqlite3.connect(url.removeprefix("sqlite:///"), isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    with pytest.raises(OperationalError, match="database is locked"):
        ledger.ingest([event("paid:L", "paid", order_id="L")], NOW)
    other.execute("ROLLBACK")
    other.close()
    assert ledger.ingest([event("paid:L", "paid", order_id="L")], NOW) == 1
    assert ledger.counts_by_state() == {"pending": 1}
    ledger.engine.dispose()


def test_a_postgresql_connection_idle_past_the_ping_window_is_checked_before_use(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No ping for a connection returned moments ago (a round trip per transaction saved):
    if the server ended it meanwhile, that one transaction fails as a ledger outage and the
    next one works. One idle past the window is pinged, and replaced unseen if dead."""
    if not database_url.startswith("postgresql"):
        pytest.skip("pinging pooled connections is the PostgreSQL engine's")
    ledger = Ledger(create_ledger_engine(database_url))
    ledger.ingest([event("paid:P", "paid", order_id="P")], NOW)

    def end_the_pooled_session() -> None:
        with ledger.engine.connect() as connection:
            pid = connection.execute(text("SELECT pg_backend_pid()")).scalar()
        killer = create_ledger_engine(database_url)
        with killer.connect() as connection:
            connection.execute(text("SELECT pg_terminate_backend(:p)"), {"p": pid})
        killer.dispose()

    end_the_pooled_session()
    with pytest.raises(LEDGER_DOWN):
        ledger.has_order("P")  # returned moments ago: used without a ping
    assert ledger.has_order("P")
    monkeypatch.setattr(engine_module, "PING_IDLE_S", 0.0)  # every connection is idle now
    end_the_pooled_session()
    assert ledger.has_order("P")  # pinged, found dead, replaced
    ledger.engine.dispose()
