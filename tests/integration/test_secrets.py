"""No log record, outcome, repr or exception ever contains the API key or the secret key."""

from __future__ import annotations

import logging
import traceback
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from pydantic import SecretStr

from harness.processes import SandboxProcess, free_port
from producers.events import OrderPaid
from tests.conftest import settings_for
from worker.gameball.client import GameballClient, GameballConfigError, Redactor
from worker.gameball.payloads import build_request
from worker.rules.outcomes import Outcome
from worker.settings import Settings

pytestmark = pytest.mark.integration
API_KEY = "gbq-test-APIKEY-5f1c9e0d"
SECRET_KEY = "gbq-test-SECRET-a7d3b2c4"
WRONG_SECRET = "gbq-wrong-SECRET-19e8f7aa"
SECRETS = (API_KEY, SECRET_KEY, WRONG_SECRET)


def order(n: int) -> OrderPaid:
    return OrderPaid(
        order_id=f"O-{n}",
        customer_id="c-1",
        occurred_at=datetime(2026, 1, 1, 0, 0, n, tzinfo=UTC),
        total_price=Decimal(10),
        total_paid=Decimal(10),
    )


def texts_of(outcome: Outcome) -> list[str]:
    return [outcome.message, outcome.body_excerpt, repr(outcome)]


def test_keys_never_leak(
    start_sandbox: type[SandboxProcess], caplog: pytest.LogCaptureFixture
) -> None:
    """Success, refusal, timeout, dropped response and refused connection: no key anywhere."""
    caplog.set_level(logging.DEBUG)  # httpx and httpcore log every step at DEBUG
    sandbox = start_sandbox("--api-key", API_KEY, "--secret-key", SECRET_KEY)
    seen: list[str] = []
    settings = settings_for(
        sandbox.url,
        gameball_api_key=SecretStr(API_KEY),
        gameball_secret_key=SecretStr(SECRET_KEY),
        gameball_read_timeout_s=0.2,
    )
    seen += [repr(settings), str(settings), settings.model_dump_json()]
    with GameballClient(settings) as client:
        seen.append(repr(client))
        # Given every kind of answer
        seen += texts_of(client.send(build_request(order(1), "v3.0")).outcome)  # accepted
        sandbox.faults(drop_after_apply_count=1)
        seen += texts_of(client.send(build_request(order(2), "v3.0")).outcome)  # response lost
        sandbox.faults(latency_s=1.0)
        seen += texts_of(client.send(build_request(order(3), "v3.0")).outcome)  # timeout
        sandbox.faults(reset=True)
    wrong = settings_for(
        sandbox.url,
        gameball_api_key=SecretStr(API_KEY),
        gameball_secret_key=SecretStr(WRONG_SECRET),
    )
    with GameballClient(wrong) as client:
        seen += texts_of(client.send(build_request(order(4), "v3.0")).outcome)  # 401
    refused = settings_for(
        f"http://127.0.0.1:{free_port()}",
        gameball_api_key=SecretStr(API_KEY),
        gameball_secret_key=SecretStr(SECRET_KEY),
    )
    with GameballClient(refused) as client:
        seen += texts_of(client.send(build_request(order(5), "v3.0")).outcome)  # connection refused
    # A key that cannot be a header is refused without being echoed.
    for bad in (f"{API_KEY}\n", f" {API_KEY}", f"{API_KEY}\u00e9"):
        with pytest.raises(GameballConfigError) as error:
            GameballClient(settings_for(sandbox.url, gameball_api_key=SecretStr(bad)))
        seen += [str(error.value), "".join(traceback.format_exception(error.value))]
    # Then nothing logged, returned or raised carries a key
    seen += [record.getMessage() for record in caplog.records]
    seen += [
        "".join(traceback.format_exception(*record.exc_info))
        for record in caplog.records
        if record.exc_info
    ]
    assert len(caplog.records) > 5, "the client and httpx should have logged at DEBUG"
    sandbox.stop()
    seen.append(sandbox.log_path.read_text())
    leaks = [text for text in seen for secret in SECRETS if secret in text]
    assert leaks == []


def test_settings_from_environment_hide_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    """Keys read from GBQ_ variables stay hidden in reprs and dumps; passwords in URLs too."""
    monkeypatch.setenv("GBQ_GAMEBALL_API_KEY", API_KEY)
    monkeypatch.setenv("GBQ_GAMEBALL_SECRET_KEY", SECRET_KEY)
    monkeypatch.setenv("GBQ_REDIS_URL", f"redis://:{SECRET_KEY}@127.0.0.1:6379/0")
    settings = Settings()
    assert settings.gameball_api_key.get_secret_value() == API_KEY
    for text in (repr(settings), str(settings), settings.model_dump_json()):
        assert API_KEY not in text
        assert SECRET_KEY not in text


def test_base_url_with_credentials_is_refused_without_echoing_them() -> None:
    """Credentials belong in the key settings, never in the URL (or in its error)."""
    with pytest.raises(ValueError, match="must not carry credentials") as error:
        Settings(gameball_base_url=f"https://user:{SECRET_KEY}@api.gameball.co")
    assert SECRET_KEY not in str(error.value)


def test_redactor_replaces_every_secret() -> None:
    """Redaction covers overlapping secrets, longest first."""
    redact = Redactor(["abc", "abcdef", ""])
    assert redact("x abcdef y abc z") == "x *** y *** z"
    assert "abc" not in repr(redact)
