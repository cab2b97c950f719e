"""Spools relay themselves, and a spool that waits is visible.

A checkout host usually runs no scheduler: its publisher relays its own spool once Redis
answers again, on every Redis form (TCP, unix socket, TLS) and both ledgers; an event
spooled there and a duplicate published from another host are delivered once. What a
spool still holds is shown per host in ``gbq status``, the console and the metrics.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import redis
from pydantic import SecretStr

from harness.processes import SandboxProcess, free_port, scrape_metrics, wait_until
from harness.services import RedisServer, start_tls_redis
from harness.stack import Stack
from producers.events import event_to_json
from producers.keys import INBOX_KEY, SPOOLS_KEY
from producers.publisher import Publisher
from producers.settings import PublisherSettings
from producers.spool import Spool
from producers.spool_report import report, reports
from producers.transport import NotReplicatedError, Replication
from producers.wire import InboxEntry
from tests.conftest import REDIS_FORMS
from tests.console import ConsoleProcess
from tests.factories import paid, refund

pytestmark = pytest.mark.integration
ORDERS = 12


@dataclass
class Restartable:
    """A Redis server of one form that can be shut down and started again, data kept."""

    url: str
    shutdown: Callable[[], object]
    restart: Callable[[], object]


@pytest.fixture(params=REDIS_FORMS)
def restartable_redis(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Restartable]:
    if request.param == "tls":
        tls = start_tls_redis(tmp_path / "tls-redis")
        yield Restartable(tls.url(), tls.shutdown, tls.restart)
        tls.stop()
        return
    server = RedisServer(tmp_path / "redis").start()
    url = server.url if request.param == "tcp" else server.unix_url
    yield Restartable(url, server.stop, server.start)
    server.kill()


def test_a_checkout_host_relays_its_own_spool_once_redis_is_back(
    make_stack: type[Stack],
    sandbox: SandboxProcess,
    database_url: str,
    restartable_redis: Restartable,
    tmp_path: Path,
) -> None:
    """The checkout host has its own GBQ_HOME and spool and no scheduler: what it spooled
    while Redis was down reaches Gameball once Redis is back, with nothing else run there;
    the same paid event spooled on the worker's host too is delivered once."""
    # Given: workers and a scheduler on their host; a checkout host of its own
    stack = make_stack(database_url, redis=restartable_redis.url)
    stack.start_worker()
    stack.start_scheduler()
    checkout = Publisher(
        PublisherSettings(
            home=tmp_path / "checkout-host",
            redis_url=SecretStr(restartable_redis.url),
            publish_timeout_s=0.5,
        )
    )
    orders = [f"HOST-{number}" for number in range(ORDERS)]
    # When: Redis goes down; checkout spools its events (refunds behind their orders)
    restartable_redis.shutdown()
    for number, order in enumerate(orders):
        assert checkout.publish(paid(order)) == "spooled"
        if number % 2 == 0:
            assert checkout.publish(refund(order, 4)) == "spooled"
    assert stack.publisher.publish(paid(orders[0])) == "spooled"  # from the worker's host
    assert checkout.relay.running()
    # ...and comes back
    restartable_redis.restart()
    # Then: the checkout host's own relay empties its spool; everything is delivered once
    wait_until(
        lambda: checkout.spool.count() == 0 and not checkout.relay.running(),
        timeout_s=60,
        what="the checkout host's relay",
    )
    total = ORDERS + len(orders[::2])
    assert stack.wait_settled(total, timeout_s=120) == {"delivered": total}
    for number, order in enumerate(orders):
        assert sandbox.balance(f"cust-{order}") == (6 if number % 2 == 0 else 10), order
    client = redis.Redis.from_url(restartable_redis.url)
    assert reports(client) == []  # relayed: nothing left to show
    assert checkout.publish(paid("HOST-AFTER")) == "queued"
    checkout.close()
    client.close()


def test_a_spool_that_waits_is_shown_per_host_in_status_metrics_and_the_console(
    make_stack: type[Stack], sqlite_url: str, tmp_path: Path
) -> None:
    """A checkout host's spool reported with three events, the oldest two minutes old:
    ``gbq status`` (text and JSON), the scheduler's /metrics and the console show it;
    a report that is not one (anyone may write the hash) is skipped."""
    port = free_port()
    stack = make_stack(sqlite_url, GBQ_METRICS_PORT=str(port))
    client = redis.Redis.from_url(stack.settings.effective_redis_url())
    spool = Spool(tmp_path / "checkout-host" / "spool.db")
    old = time.time() - 120
    spool.add(
        [
            InboxEntry(event.event_id, event_to_json(event), old + number)
            for number, event in enumerate(paid(f"WAIT-{n}") for n in range(3))
        ]
    )
    assert report(client, spool) == 3  # what its relay says while it cannot push
    client.hset(SPOOLS_KEY, "garbage", b"\xff{not json")
    client.hset(SPOOLS_KEY, "wrong", json.dumps({"host": 1, "count": "x"}))

    status = stack.gbq("status", "--json")
    assert status.returncode == 0, status.stderr
    [shown] = json.loads(status.stdout)["spools"]
    assert (shown["path"], shown["count"]) == (str(spool.path.resolve()), 3)
    assert 115 <= shown["oldest_age_s"] < 600
    text = stack.gbq("status")
    assert f"({spool.path.resolve()}): 3 event(s), oldest 1" in text.stdout.replace("\n", "")

    stack.start_scheduler()
    metrics = wait_until(lambda: scrape_metrics(port), timeout_s=60, what="the metrics")
    [line] = [row for row in metrics.splitlines() if row.startswith("gbq_spooled_events{")]
    assert line.endswith(" 3.0")
    assert f'path="{spool.path.resolve()}"' in line

    console = ConsoleProcess(stack)
    page = httpx.get(console.url + "/", timeout=10).text
    assert str(spool.path.resolve()) in page
    assert "none: every spool that reported is empty" not in page


def test_a_relay_waiting_on_redis_never_holds_up_a_publish_spooling(
    tmp_path: Path, redis_url: str
) -> None:
    """A Redis that answers PING, then takes long over the push (here: a WAIT for a
    replica it does not have; a failover under way does the same): the relay waits on
    it, and meanwhile a checkout's publish still spools at once (within the spool's
    0.5 s busy timeout, which it would have exceeded behind the relay's lock)."""
    spool = Spool(tmp_path / "spool.db", busy_timeout_s=0.5, replication=Replication(1, 2.0))
    spool.add([InboxEntry("paid:A", event_to_json(paid("A")), 1.0)])
    client = redis.Redis.from_url(redis_url, socket_timeout=5)
    failures: list[Exception] = []

    def relay() -> None:
        try:
            spool.relay(client, 100)
        except NotReplicatedError as error:
            failures.append(error)

    relaying = threading.Thread(target=relay, daemon=True)
    relaying.start()
    wait_until(lambda: client.hexists(INBOX_KEY, "paid:A"), timeout_s=5, what="the push")
    spool.add([InboxEntry("paid:B", event_to_json(paid("B")), 2.0)])  # no "database is locked"
    relaying.join(10)
    assert len(failures) == 1  # no replica confirmed: the row stays, to be relayed again
    assert spool.count() == 2
    client.close()
