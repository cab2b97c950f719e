"""The client hands each request straight to httpx's transport: what httpx's client would
have done for a Gameball call still happens (the environment's proxy, the base URL's path,
the headers), and what it would have kept (cookies) is not kept."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from producers.events import LineItem, OrderPaid
from tests.conftest import settings_for
from worker.gameball import client as client_module
from worker.gameball.client import GameballClient
from worker.gameball.payloads import GameballRequest, build_request
from worker.rules.outcomes import OutcomeKind


class OneAnswerServer:
    """A loopback HTTP/1.1 server that records every request head and answers each with
    ``answer`` (an HTTP proxy sees the request's absolute URL in its request line)."""

    def __init__(self, answer: bytes) -> None:
        self.answer = answer
        self.heads: list[str] = []
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                connection, _ = self._listener.accept()
            except OSError:  # closed
                return
            with connection:
                while True:
                    data = b""
                    while b"\r\n\r\n" not in data:
                        chunk = connection.recv(65536)
                        if not chunk:
                            break
                        data += chunk
                    if not data:
                        break
                    head, _, rest = data.partition(b"\r\n\r\n")
                    self.heads.append(head.decode("latin-1"))
                    length = _content_length(head)
                    while len(rest) < length:
                        rest += connection.recv(65536)
                    connection.sendall(self.answer)

    def close(self) -> None:
        self._listener.close()


def _content_length(head: bytes) -> int:
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return int(value)
    return 0


ACCEPTED = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"
WITH_COOKIE = (
    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nSet-Cookie: session=abc; Path=/\r\n"
    b"Content-Length: 2\r\n\r\n{}"
)


@pytest.fixture
def server(request: pytest.FixtureRequest) -> Iterator[OneAnswerServer]:
    running = OneAnswerServer(getattr(request, "param", ACCEPTED))
    yield running
    running.close()


def paid_request() -> GameballRequest:
    event = OrderPaid(
        customer_id="c-1",
        order_id="o-1",
        occurred_at=datetime(2026, 1, 1, tzinfo=UTC),
        total_price=Decimal("10"),
        total_paid=Decimal("10"),
        line_items=(LineItem(product_id="p", quantity=1, price=Decimal("10")),),
    )
    return build_request(event, "v3.0")


def test_the_environments_proxy_carries_the_call(
    server: OneAnswerServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """HTTP_PROXY names a proxy: the call goes to it, in absolute form, with its headers."""
    for name in ("NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy", "http_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{server.port}")
    # Port 9 on loopback has nobody listening: only the proxy can have answered.
    with GameballClient(settings_for("http://127.0.0.1:9")) as client:
        outcome = client.send(paid_request()).outcome
    assert outcome.kind is OutcomeKind.DELIVERED
    request_line, *headers = server.heads[0].split("\r\n")
    assert request_line.startswith("POST http://127.0.0.1:9/api/v3.0/")
    names = {line.partition(":")[0].lower() for line in headers}
    assert {"apikey", "secretkey", "content-type", "content-length", "host"} <= names


def test_no_proxy_for_the_host_means_a_direct_call(
    server: OneAnswerServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """NO_PROXY names Gameball's host: the call goes straight to it, in origin form."""
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")  # a proxy that is not there
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    with GameballClient(settings_for(f"http://127.0.0.1:{server.port}")) as client:
        outcome = client.send(paid_request()).outcome
    assert outcome.kind is OutcomeKind.DELIVERED
    assert server.heads[0].startswith("POST /api/v3.0/")


def test_a_base_url_with_a_path_keeps_it(server: OneAnswerServer) -> None:
    """A base URL behind a path prefix (a gateway) gets each call's path after the prefix."""
    base = f"http://127.0.0.1:{server.port}/gateway/gameball"
    with GameballClient(settings_for(base)) as client:
        client.send(paid_request())
        client.send(paid_request())  # the second from the client's cache of URLs
    assert [head.split(" ")[1] for head in server.heads] == [
        "/gateway/gameball/api/v3.0/integrations/order"
    ] * 2


@pytest.mark.parametrize("server", [WITH_COOKIE], indirect=True)
def test_cookies_gameball_sets_are_not_sent_back(server: OneAnswerServer) -> None:
    """Every call carries the same headers: a cookie in an answer is not kept."""
    with GameballClient(settings_for(f"http://127.0.0.1:{server.port}")) as client:
        for _ in range(2):
            assert client.send(paid_request()).outcome.kind is OutcomeKind.DELIVERED
    assert len(server.heads) == 2
    assert all("cookie:" not in head.lower() for head in server.heads)


def test_without_httpxs_transport_lookup_the_client_sends(
    server: OneAnswerServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An httpx whose client has no ``_transport_for_url`` (a private method) gives no
    transport: the call goes through the client, as before, and is answered the same."""
    assert client_module._transport_for(object()) is None  # type: ignore[arg-type]
    monkeypatch.setattr(client_module, "_transport_for", lambda _: None)
    with GameballClient(settings_for(f"http://127.0.0.1:{server.port}")) as client:
        assert client._transport is None
        assert client.send(paid_request()).outcome.kind is OutcomeKind.DELIVERED
    assert server.heads[0].startswith("POST /api/v3.0/integrations/order")
