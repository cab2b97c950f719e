"""Redis Sentinel, with real servers on loopback (Debian's redis-server: a primary, a
replica, three sentinels): every gbq process follows a failover by itself, and with
``GBQ_REDIS_MIN_REPLICAS=1`` every event ``publish()`` acknowledged is delivered exactly
once, the primary SIGKILLed mid-stream. With 0, what was lost is counted and reported."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import psutil
import pytest
import redis
from pydantic import SecretStr

from harness.pacing import on_schedule
from harness.processes import SandboxProcess, wait_until
from harness.scenario import generate, wallets
from harness.sentinel import SentinelGroup
from harness.stack import Stack
from producers.events import Event
from producers.publisher import Publisher
from producers.settings import PublisherSettings
from producers.transport import redis_client
from tests.factories import paid

pytestmark = pytest.mark.integration
RATE_PER_PRODUCER = 25  # events a second from each of the two checkout hosts


@pytest.fixture
def sentinels(tmp_path: Path) -> Iterator[SentinelGroup]:
    """Two replicas: after the primary's loss, the one promoted still has one to confirm
    its writes (with one, nothing is confirmed until the lost machine is back)."""
    group = SentinelGroup(tmp_path / "redis", replicas=2)
    yield group
    group.stop()


def publish_steadily(
    publisher: Publisher, events: Sequence[Event], rate: float, answers: dict[str, str]
) -> None:
    """``events`` one at a time, ``rate`` a second on a schedule; each answer kept."""

    def publish(event: Event) -> None:
        answers[event.event_id] = publisher.publish(event)

    on_schedule(events, rate, publish)


def checkout_host(stack: Stack, name: str, min_replicas: int) -> Publisher:
    settings = PublisherSettings(
        home=stack.folder / name,
        redis_url=stack.settings.redis_url,
        publish_timeout_s=1.0,
        redis_min_replicas=min_replicas,
        redis_replica_wait_s=0.2,
    )
    return Publisher(settings)


def run_through_a_failover(
    stack: Stack, sentinels: SentinelGroup, events: Sequence[Event], min_replicas: int
) -> dict[str, str]:
    """Two checkout hosts publish ``events`` at a steady rate; the primary is SIGKILLed
    a third of the way in. Returns each event's answer."""
    halves = [events[0::2], events[1::2]]
    answers: dict[str, str] = {}
    publishers = [checkout_host(stack, f"checkout-{n}", min_replicas) for n in (1, 2)]
    threads = [
        threading.Thread(
            target=publish_steadily, args=(p, half, RATE_PER_PRODUCER, answers), daemon=True
        )
        for p, half in zip(publishers, halves, strict=True)
    ]
    for thread in threads:
        thread.start()
    wait_until(lambda: len(answers) >= len(events) // 3, timeout_s=60, what="a third published")
    old = sentinels.kill_primary()
    killed_at = time.monotonic()
    new = sentinels.wait_failover(old)
    print(f"\nfailover: {old} → {new} in {time.monotonic() - killed_at:.1f} s")
    for thread in threads:
        thread.join(120)
    assert not any(thread.is_alive() for thread in threads)
    for publisher in publishers:  # their relays move what they spooled
        wait_until(
            lambda p=publisher: p.spool.count() == 0,  # type: ignore[misc]
            timeout_s=60,
            what="each checkout host's spool to be relayed",
        )
        publisher.close()
    return answers


@pytest.mark.slow(rank=3)
@pytest.mark.timeout(300)
def test_with_one_replica_confirming_every_acknowledged_event_survives_the_primarys_loss(
    make_stack: type[Stack], sandbox: SandboxProcess, sentinels: SentinelGroup, database_url: str
) -> None:
    scenario = generate(seed=41, orders=90, total_events=300)
    stack = make_stack(
        database_url,
        redis=sentinels.url,
        GBQ_REDIS_MIN_REPLICAS="1",
        GBQ_REDIS_REPLICA_WAIT_S="0.2",
    )
    stack.start_worker("w1", concurrency=2)
    stack.start_scheduler()
    answers = run_through_a_failover(stack, sentinels, scenario.events, min_replicas=1)
    assert set(answers.values()) <= {"queued", "spooled"}
    assert len(answers) == len(scenario.events)
    # Then every event is delivered once: the wallets are exact
    assert stack.wait_settled(len(scenario.events), timeout_s=180) == {
        "delivered": len(scenario.events)
    }
    assert wallets(sandbox.state(transactions=False)) == dict(scenario.expected)
    # and each process says that the primary moved (once it next reached Redis)
    for process in stack.processes:
        try:
            wait_until(
                lambda p=process: "Redis primary of 'gbq' moved" in p.output(),  # type: ignore[misc]
                timeout_s=30,
                what=f"{process.name} to follow the failover",
            )
        except AssertionError as error:
            raise AssertionError(f"{error}:\n{process.output()[-6000:]}") from None
    print(
        f"answers: {sum(a == 'queued' for a in answers.values())} queued, "
        f"{sum(a == 'spooled' for a in answers.values())} spooled"
    )


def test_a_client_follows_the_primary_and_logs_the_move_once(
    sentinels: SentinelGroup, caplog: pytest.LogCaptureFixture
) -> None:
    clients = [redis_client(sentinels.url, 1.0) for _ in range(3)]
    clients[0].set("before", "1")
    wait_until(sentinels.replicas_in_sync, timeout_s=10, what="the replica to have it")
    old = sentinels.kill_primary()
    new = sentinels.wait_failover(old)

    def writes() -> bool:
        try:
            return all(client.set("after", "1") for client in clients)
        except redis.ConnectionError:
            return False  # the connection to the old primary: the next one follows

    wait_until(writes, timeout_s=30, what="every client to write to the new primary")
    assert all(client.get("before") == b"1" for client in clients)
    moves = [r.getMessage() for r in caplog.records if "moved" in r.getMessage()]
    expected = (
        f"Redis primary of 'gbq' moved from 127.0.0.1:{old} to 127.0.0.1:{new} "
        "(a Sentinel failover): following it"
    )
    assert moves == [expected]


def test_closing_a_publisher_closes_its_connections_to_the_sentinels_too(
    sentinels: SentinelGroup, tmp_path: Path
) -> None:
    """redis-py leaves a Sentinel client's own connections open until the garbage
    collector finds them, and warns then of unclosed sockets (TLS ones failed a test)."""
    publisher = Publisher(
        PublisherSettings(home=tmp_path / "checkout", redis_url=SecretStr(sentinels.url))
    )
    assert publisher.publish(paid("CLOSE-1")) == "queued"

    def to_sentinels() -> list[object]:
        return [
            c
            for c in psutil.Process().net_connections(kind="tcp")
            if c.raddr and c.raddr.port in sentinels.sentinel_ports and c.status == "ESTABLISHED"
        ]

    assert to_sentinels()  # it asked them for the primary
    publisher.close()
    assert to_sentinels() == []


def test_publish_spools_as_well_when_no_replica_confirms(
    sentinels: SentinelGroup, tmp_path: Path
) -> None:
    settings = PublisherSettings(
        home=tmp_path / "checkout",
        redis_url=SecretStr(sentinels.url),
        redis_min_replicas=1,
        redis_replica_wait_s=0.05,
    )
    events = generate(seed=42, orders=2, total_events=4).events[:4]
    with Publisher(settings) as publisher:
        assert publisher.publish(events[0]) == "queued"
        replicas = [node for node in sentinels.nodes if node is not sentinels.primary]
        for replica in replicas:
            replica.kill()
        assert publisher.publish(events[1]) == "spooled"  # in Redis, not confirmed
        assert publisher.spool.count() >= 1
        assert publisher.publish(events[2]) == "spooled"  # behind it, in order
        replicas[0].start()
        wait_until(
            lambda: publisher.spool.count() == 0,
            timeout_s=60,
            what="the relay to move the spool once the replica confirms",
        )
        assert publisher.publish(events[3]) == "queued"
    client = redis_client(sentinels.url, 1.0)
    inbox = client.hkeys("gbq:inbox")
    assert {e.event_id.encode() for e in events} <= set(inbox)


@pytest.mark.timeout(300)
def test_over_tls_every_process_follows_the_failover_too(
    make_stack: type[Stack], sandbox: SandboxProcess, sqlite_url: str, tmp_path: Path
) -> None:
    """rediss+sentinel://: TLS to the sentinels and to each primary, before and after."""
    group = SentinelGroup(tmp_path / "tls-redis", replicas=2, tls=True)
    try:
        assert group.url.startswith("rediss+sentinel://")
        scenario = generate(seed=44, orders=40, total_events=120)
        stack = make_stack(sqlite_url, redis=group.url, GBQ_REDIS_MIN_REPLICAS="1")
        stack.start_worker("w1", concurrency=2)
        stack.start_scheduler()
        answers = run_through_a_failover(stack, group, scenario.events, min_replicas=1)
        assert set(answers.values()) <= {"queued", "spooled"}
        total = len(scenario.events)
        assert stack.wait_settled(total, timeout_s=180) == {"delivered": total}
        assert wallets(sandbox.state(transactions=False)) == dict(scenario.expected)
    finally:
        group.stop()
