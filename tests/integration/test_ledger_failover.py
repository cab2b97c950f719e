"""The ledger fails over: a PostgreSQL primary and its streaming standby (made with
``pg_basebackup``), real servers on loopback. The standby falls behind, the primary is
SIGKILLed mid-stream and the standby promoted: the new ledger lacks the last
transactions the old one committed (asynchronous replication). No customer is credited
twice (the same transaction ids are sent again and settled from Gameball's records) and
no event is lost (what the new ledger does not know comes back from the inbox)."""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Iterator, Sequence

import pytest
from sqlalchemy.exc import OperationalError

from harness.pacing import on_schedule
from harness.postgres_pair import PostgresPair, postgres_binaries
from harness.processes import SandboxProcess, wait_until
from harness.scenario import generate, wallets
from harness.stack import Stack
from producers.events import Event
from producers.publisher import Publisher
from producers.settings import multi_host_as_query
from worker.ledger.engine import create_ledger_engine
from worker.ledger.schema import migrate

pytestmark = pytest.mark.integration
RATE_PER_PRODUCER = 20  # events a second from each of two checkout hosts


@pytest.fixture
def pair() -> Iterator[PostgresPair]:
    if postgres_binaries() is None:
        note = "PostgreSQL's binaries are not installed: apt-get install postgresql"
        if os.environ.get("CI"):
            pytest.fail(note)
        pytest.skip(note)
    started = PostgresPair()
    yield started
    started.stop()


def ledger_url(pair: PostgresPair) -> str:
    """Both hosts, as gbq reads them (settings turn libpq's form into SQLAlchemy's)."""
    url = multi_host_as_query(pair.url.replace("postgresql://", "postgresql+psycopg://", 1))
    engine = create_ledger_engine(url)
    migrate(engine)
    engine.dispose()
    return url


def publish_steadily(
    publisher: Publisher, events: Sequence[Event], answers: dict[str, str]
) -> None:
    def publish(event: Event) -> None:
        answers[event.event_id] = publisher.publish(event)

    on_schedule(events, RATE_PER_PRODUCER, publish)


def states_after_failover(stack: Stack, event_ids: list[str]) -> dict[str, str] | None:
    """The ledger's states of ``event_ids``, once a connection reaches the new primary
    (the first use of a pooled connection to the old one fails, and is replaced)."""
    try:
        return stack.ledger.states_of(event_ids) or None
    except OperationalError:
        return None


@pytest.mark.slow(rank=3)
@pytest.mark.timeout(300)
def test_a_failover_that_loses_the_last_commits_loses_no_event_and_credits_no_one_twice(
    make_stack: type[Stack], sandbox: SandboxProcess, pair: PostgresPair
) -> None:
    scenario = generate(seed=43, orders=120, total_events=400)
    stack = make_stack(ledger_url(pair), GBQ_LEDGER_STANDBYS="1")
    stack.start_worker("w1", concurrency=2)
    stack.start_scheduler()
    publishers = [stack.checkout_host(f"checkout-{n}") for n in (1, 2)]
    answers: dict[str, str] = {}
    threads = [
        threading.Thread(target=publish_steadily, args=(p, half, answers), daemon=True)
        for p, half in zip(publishers, [scenario.events[0::2], scenario.events[1::2]], strict=True)
    ]
    for thread in threads:
        thread.start()
    total = len(scenario.events)
    # While the standby streams, the inbox forgets what it has flushed
    scheduler = next(p for p in stack.processes if p.name == "scheduler")
    wait_until(
        lambda: re.search(r"'kept_forgotten': [1-9]", scheduler.output()),
        timeout_s=30,
        what="the scheduler to forget kept entries the standby has",
    )
    # Then the standby falls behind: what the primary commits from here on, it never gets
    pair.stop_replication()
    cut_at = len(answers)
    wait_until(lambda: len(answers) >= cut_at + total // 4, timeout_s=60, what="a quarter more")
    pair.primary.kill()
    pair.promote()
    published = list(answers)
    known = wait_until(lambda: states_after_failover(stack, published), timeout_s=30,
                       what="the new primary to answer")  # fmt: skip
    print(
        f"\nafter the failover the ledger knew {len(known)} of the {len(published)} events "
        f"published ({sum(s == 'delivered' for s in known.values())} delivered)"
    )
    for thread in threads:
        thread.join(120)
    assert len(answers) == total
    settled = stack.wait_settled(total, timeout_s=180)
    rows = [stack.ledger.get(e.event_id) for e in scenario.events]
    dead = [(r.event_id, r.dead_reason, r.last_code) for r in rows if r and r.state == "dead"]
    assert settled == {"delivered": total}, dead
    assert wallets(sandbox.state(transactions=False)) == dict(scenario.expected)
