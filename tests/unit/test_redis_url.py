"""The Sentinel form of GBQ_REDIS_URL: what it says, what is wrong with it (never with a
password in the message), how it is shown, and how every process reads it (the
publisher's pool, the worker's screening transport)."""

from __future__ import annotations

import pytest
from celery.app.utils import filter_hidden_settings
from kombu import Connection
from pydantic import ValidationError
from redis.sentinel import (
    SentinelConnectionPool,
    SentinelManagedConnection,
    SentinelManagedSSLConnection,
)

from producers.redis_connect import connection_pool, primary_moved
from producers.redis_url import SentinelTarget, parse_sentinel_url
from producers.settings import PublisherSettings, redact_url
from producers.transport import Replication
from worker.process.app import app, broker_transport_options, broker_url
from worker.process.transport import Channel

URL = "redis+sentinel://gbq:p%40ss@10.0.0.1:26380,10.0.0.2/mymaster/3?sentinel_password=s3"


def test_a_sentinel_url_names_its_sentinels_service_database_and_credentials() -> None:
    target = parse_sentinel_url(URL)
    assert target == SentinelTarget(
        sentinels=(("10.0.0.1", 26380), ("10.0.0.2", 26379)),
        service="mymaster",
        db=3,
        username="gbq",
        password="p@ss",
        sentinel_password="s3",
    )
    assert "p@ss" not in repr(target)
    assert "s3" not in repr(target)


def test_tls_takes_the_rediss_options() -> None:
    target = parse_sentinel_url(
        "rediss+sentinel://h1/svc?ssl_cert_reqs=required&ssl_ca_certs=/etc/ca.pem"
    )
    assert target.tls
    assert target.db == 0
    assert dict(target.tls_options) == {
        "ssl_cert_reqs": "required",
        "ssl_ca_certs": "/etc/ca.pem",
    }


@pytest.mark.parametrize(
    ("url", "problems"),
    [
        ("redis+sentinel://u:secret@/", ["a sentinel's host is empty", "service name"]),
        ("redis+sentinel://h1:port/svc", ["'h1:port' is not host:port"]),
        ("redis+sentinel://h1,,h2/svc", ["a sentinel's host is empty"]),
        ("redis+sentinel://h1/svc/zero", ["the database 'zero' is not a number"]),
        ("redis+sentinel://h1/a/1/b", ["expected /SERVICE or /SERVICE/DB"]),
        ("redis+sentinel://h1/svc?ssl_ca_certs=x", ["TLS options need rediss+sentinel://"]),
        ("redis+sentinel://h1/svc?password=secret", ["unknown option 'password'"]),
    ],
)
def test_each_problem_is_named_and_no_password_shown(url: str, problems: list[str]) -> None:
    with pytest.raises(ValueError, match="expected redis\\+sentinel://") as refused:
        parse_sentinel_url(url)
    for problem in problems:
        assert problem in str(refused.value)
    assert "secret" not in str(refused.value)


def test_settings_take_it_and_refuse_a_bad_one_without_its_password() -> None:
    assert PublisherSettings(redis_url=URL).redis_url is not None  # type: ignore[arg-type]
    with pytest.raises(ValidationError) as refused:
        PublisherSettings(redis_url="redis+sentinel://u:hunter2@h1")  # type: ignore[arg-type]
    assert "service name" in str(refused.value)
    assert "hunter2" not in str(refused.value)


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        (URL, "redis+sentinel://gbq:***@10.0.0.1:26380,10.0.0.2/mymaster/3?sentinel_password=***"),
        ("redis+sentinel://h1,h2/svc", "redis+sentinel://h1,h2/svc"),
        (
            "rediss+sentinel://:pw@h1/svc?ssl_ca_certs=/ca.pem",
            "rediss+sentinel://:***@h1/svc?ssl_ca_certs=/ca.pem",
        ),
    ],
)
def test_a_sentinel_url_is_shown_without_its_passwords(url: str, shown: str) -> None:
    assert redact_url(url) == shown


def test_the_publishers_pool_asks_the_sentinels_for_the_primary() -> None:
    pool = connection_pool(URL, socket_timeout=0.5)
    assert isinstance(pool, SentinelConnectionPool)
    assert pool.service_name == "mymaster"
    assert pool.connection_class is SentinelManagedConnection
    kwargs = pool.connection_kwargs
    assert (kwargs["db"], kwargs["username"], kwargs["password"]) == (3, "gbq", "p@ss")
    sentinels = pool.sentinel_manager.sentinels
    assert [s.connection_pool.connection_kwargs["port"] for s in sentinels] == [26380, 26379]
    assert sentinels[0].connection_pool.connection_kwargs["password"] == "s3"
    assert sentinels[0].connection_pool.connection_kwargs["socket_timeout"] == 0.5
    tls = connection_pool("rediss+sentinel://h1/svc?ssl_cert_reqs=required")
    assert tls.connection_class is SentinelManagedSSLConnection


def test_the_worker_reads_it_through_a_transport_option_celery_masks() -> None:
    assert broker_url(URL) == "gbq://redis-sentinel/"
    options = broker_transport_options(URL)
    assert filter_hidden_settings({"broker_transport_options": options}) == {
        "broker_transport_options": {"gbq_secret_redis_url": "********"}
    }
    connection = Connection(
        broker_url(URL), transport=app.conf.broker_transport, transport_options=options
    )
    try:
        assert "p@ss" not in connection.as_uri()
        channel = Channel.__new__(Channel)  # its parameters, without connecting
        channel.connection = connection.transport
        channel.gbq_secret_redis_url = options["gbq_secret_redis_url"]
        params = channel._connparams()
        assert issubclass(params["connection_class"], SentinelManagedConnection)
        assert (params["db"], params["username"], params["password"]) == (3, "gbq", "p@ss")
        assert "host" not in params
    finally:
        connection.release()


def test_a_move_is_reported_once_per_process() -> None:
    key = ("svc-unit", "127.0.0.1:1")
    assert primary_moved(key, ("10.0.0.1", 6379)) is None  # the first sighting
    assert primary_moved(key, ("10.0.0.1", 6379)) is None
    assert primary_moved(key, ("10.0.0.2", 6379)) == ("10.0.0.1", 6379)
    assert primary_moved(key, ("10.0.0.2", 6379)) is None


def test_the_replica_wait_must_fit_in_the_publish_timeout() -> None:
    settings = PublisherSettings(redis_min_replicas=1, redis_replica_wait_s=0.2)
    assert settings.replication == Replication(1, 0.2)
    assert settings.replication.timeout_ms == 200
    with pytest.raises(ValidationError, match=r"GBQ_REDIS_REPLICA_WAIT_S=0\.5 must be below"):
        PublisherSettings(redis_min_replicas=1, redis_replica_wait_s=0.5, publish_timeout_s=0.5)
    assert Replication(1, 0.0001).timeout_ms == 1  # WAIT 0 would wait forever
