"""The Gameball HTTP client: one ``httpx.Client`` per process, explicit timeouts and limits.

``send()`` never raises for anything Gameball or the network does: every answer and every
transport exception becomes an :class:`~worker.gameball.outcomes.Outcome` through
``classify()``. It raises only :class:`GameballConfigError`, at construction, for keys that
cannot be sent as HTTP headers.

Secrets: the keys live in ``SecretStr`` until the moment they become headers. Nothing this
module logs, returns or raises contains them; any text that comes back (exception messages,
response bodies) passes through :class:`Redactor` first, because a header error from h11
or a proxy echoing a request could otherwise carry a key.

    GameballConfigError(ValueError)   a key is empty or not a valid header value
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from dataclasses import dataclass, replace
from typing import Final

import httpx

from worker.gameball.outcomes import HttpAnswer, classify
from worker.gameball.payloads import GameballRequest
from worker.gameball.redaction import Redactor
from worker.rules.outcomes import Outcome
from worker.settings import Settings

log = logging.getLogger(__name__)
USER_AGENT: Final = "gameball-queue/0.1"


class GameballConfigError(ValueError):
    """The Gameball settings cannot produce a valid request (the message names the setting)."""


@dataclass(frozen=True)
class Attempt:
    """One HTTP attempt: its classified outcome and how long it took."""

    outcome: Outcome
    duration_s: float
    answer: dict[str, object] | None = None  # a hold's answer (its holdReference), parsed


def _check_header_value(name: str, value: str) -> None:
    # Tell which setting is wrong without ever echoing its value.
    if not value:
        raise GameballConfigError(f"{name} is empty")
    if not value.isascii() or not value.isprintable() or value != value.strip():
        raise GameballConfigError(f"{name} contains whitespace, control or non-ASCII characters")


class GameballClient:
    """Sends :class:`GameballRequest` objects to Gameball and classifies the answers."""

    def __init__(self, settings: Settings, *, transport: httpx.BaseTransport | None = None):
        api_key = settings.gameball_api_key.get_secret_value()
        secret_key = settings.gameball_secret_key.get_secret_value()
        _check_header_value("GBQ_GAMEBALL_API_KEY", api_key)
        _check_header_value("GBQ_GAMEBALL_SECRET_KEY", secret_key)
        self.base_url = settings.gameball_base_url
        self.redact = Redactor([api_key, secret_key])
        self._http = httpx.Client(
            base_url=self.base_url,
            headers={
                "APIKey": api_key,
                "secretKey": secret_key,
                "Content-Type": "application/json",
                "Accept": "application/json",
                "User-Agent": USER_AGENT,
            },
            timeout=httpx.Timeout(
                connect=settings.gameball_connect_timeout_s,
                read=settings.gameball_read_timeout_s,
                write=settings.gameball_write_timeout_s,
                pool=settings.gameball_pool_timeout_s,
            ),
            limits=httpx.Limits(
                max_connections=settings.gameball_max_connections,
                max_keepalive_connections=settings.gameball_max_keepalive,
            ),
            follow_redirects=False,  # a redirect means a wrong base URL: classify() pauses
            transport=transport,
        )
        # send() hands its request straight to the transport httpx would pick for the base
        # URL (proxies from the environment included): the client's per-call work beyond
        # building the request (cookie extraction, auth and redirect flows, event hooks) took
        # a fifth of a delivery's profile samples, and none of it applies to Gameball's API.
        self._transport = _transport_for(self._http)
        self._timeouts = {"timeout": self._http.timeout.as_dict()}
        self._urls: dict[str, httpx.URL] = {}  # a handful of constant paths

    def __repr__(self) -> str:
        return f"GameballClient(base_url={self.base_url!r})"

    def send(self, request: GameballRequest) -> Attempt:
        """Make one attempt; never raises for HTTP or network trouble."""
        started = time.monotonic()
        answer: HttpAnswer | BaseException
        try:
            answer = self._exchange(request)
        except httpx.HTTPError as error:
            answer = error
        except OSError as error:  # raw socket errors that escaped httpx's mapping
            answer = error
        duration_s = time.monotonic() - started
        outcome = classify(answer, request.call)
        outcome = replace(
            outcome,
            message=self.redact(outcome.message),
            body_excerpt=self.redact(outcome.body_excerpt),
        )
        log.debug(
            "gameball %s %s -> %s/%s status=%s code=%s in %.3fs",
            request.call,
            request.transaction_id,
            outcome.kind,
            outcome.reason,
            outcome.status,
            outcome.code,
            duration_s,
        )
        parsed = _answer_of(answer) if request.call == "hold" else None
        return Attempt(outcome=outcome, duration_s=duration_s, answer=parsed)

    def _exchange(self, request: GameballRequest) -> HttpAnswer:
        url = self._urls.get(request.path)
        if url is None:
            url = self._urls[request.path] = self._http.build_request("GET", request.path).url
        http_request = httpx.Request(
            request.method,
            url,
            headers=self._http.headers,
            content=request.body,
            extensions=self._timeouts,
        )
        if self._transport is None:
            return HttpAnswer.from_response(self._http.send(http_request))
        response = self._transport.handle_request(http_request)
        response.request = http_request
        try:
            response.read()
        finally:
            response.close()
        return HttpAnswer.from_response(response)

    def get_json(self, path: str) -> tuple[int, object]:
        """A read call (balance, order transactions): status and parsed JSON (or None)."""
        try:
            response = self._http.get(path)
        except httpx.HTTPError as error:
            raise GameballReadError(self.redact(f"{type(error).__name__}: {error}")) from None
        try:
            return response.status_code, response.json()
        except ValueError:
            return response.status_code, None

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> GameballClient:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


def _answer_of(answer: HttpAnswer | BaseException) -> dict[str, object] | None:
    """A 2xx answer's JSON object (None for anything else)."""
    if isinstance(answer, BaseException) or not 200 <= answer.status < 300:
        return None
    try:
        parsed = json.loads(answer.body)
    except (ValueError, UnicodeDecodeError):
        return None
    return parsed if isinstance(parsed, dict) else None


def _transport_for(client: httpx.Client) -> httpx.BaseTransport | None:
    """The transport ``client`` sends its base URL's requests through, or None where this
    httpx has no ``_transport_for_url`` (then send() goes through the client)."""
    pick = getattr(client, "_transport_for_url", None)
    if pick is None:
        return None
    transport = pick(client.base_url)
    return transport if isinstance(transport, httpx.BaseTransport) else None


class GameballReadError(RuntimeError):
    """A read call failed in transport (the message is redacted)."""


_process_client: tuple[int, GameballClient] | None = None
_process_lock = threading.Lock()


def client_for_process(settings: Settings) -> GameballClient:
    """The process's one client; a forked child (Celery prefork) builds its own."""
    global _process_client  # noqa: PLW0603 - one client per process is the point
    with _process_lock:
        if _process_client is None or _process_client[0] != os.getpid():
            _process_client = (os.getpid(), GameballClient(settings))
        return _process_client[1]
