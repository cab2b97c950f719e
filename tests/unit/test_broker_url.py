"""Every Redis URL form reaches the screening transport, read as redis-py reads it.

kombu lets a URL's ``name+`` prefix pick the transport over ``broker_transport``: the
unix-socket spelling ``redis+socket://`` once gave workers kombu's own, unscreened
transport, and a garbage message ended them (tests/integration/test_poison.py runs the
poison suite over each form).
"""

from __future__ import annotations

from typing import Any

import pytest
import redis
from kombu import Connection

from producers.settings import load_publisher_settings
from worker.process.app import app, broker_url
from worker.process.transport import Channel, Transport

FORMS = [
    # (GBQ_REDIS_URL, what redis-py connects to)
    ("redis://127.0.0.1:6390/3", {"host": "127.0.0.1", "port": 6390, "db": 3}),
    ("redis://gbq:p%40ss@127.0.0.1:6390/0", {"username": "gbq", "password": "p@ss", "db": 0}),
    ("rediss://127.0.0.1:6391/1?ssl_cert_reqs=required", {"db": 1, "ssl_cert_reqs": "required"}),
    ("unix:///run/gbq/redis.sock", {"path": "/run/gbq/redis.sock", "db": 0}),
    ("unix:///run/gbq/redis.sock?db=2", {"path": "/run/gbq/redis.sock", "db": 2}),
    ("unix://:secret@/run/gbq/redis.sock?db=4", {"password": "secret", "db": 4}),
]


@pytest.mark.parametrize(("url", "expected"), FORMS)
def test_every_form_gets_the_screening_transport(url: str, expected: dict[str, Any]) -> None:
    connection = Connection(broker_url(url), transport=app.conf.broker_transport)
    try:
        assert connection.get_transport_cls() is Transport
        channel = Channel.__new__(Channel)  # its parameters, without connecting
        channel.connection = connection.transport
        params = channel._connparams()
        assert {key: params[key] for key in expected} == expected
        unix = url.startswith("unix://")
        assert issubclass(params["connection_class"], redis.UnixDomainSocketConnection) == unix
        assert issubclass(params["connection_class"], redis.SSLConnection) == url.startswith(
            "rediss://"
        )
        # The same server and database as a publisher's client on that URL.
        publisher = redis.ConnectionPool.from_url(url).connection_kwargs
        for key in ("host", "port", "path", "db", "username", "password"):
            assert params.get(key, publisher.get(key)) == publisher.get(key, params.get(key))
    finally:
        connection.release()


def test_kombus_socket_spelling_is_taken_as_redis_pys(monkeypatch: pytest.MonkeyPatch) -> None:
    """``redis+socket://`` (kombu's spelling, in older docs) means ``unix://`` to every
    process: the publisher's redis-py cannot read kombu's form."""
    monkeypatch.setenv("GBQ_REDIS_URL", "redis+socket:///run/gbq/redis.sock")
    url = load_publisher_settings().effective_redis_url()
    assert url == "unix:///run/gbq/redis.sock"
    assert broker_url(url) == "gbq+unix:///run/gbq/redis.sock"


def test_the_broker_url_shown_in_logs_has_no_password() -> None:
    connection = Connection(broker_url("redis://gbq:hunter2@127.0.0.1:6390/0"))
    assert "hunter2" not in connection.as_uri()
