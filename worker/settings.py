"""Configuration: the only module that reads the environment (prefix ``GBQ_``), with
``producers.settings``, whose publisher settings these extend.

Every other module receives a :class:`Settings` instance. Durations are float seconds
and carry ``_s`` in their names. Secrets are ``SecretStr`` so that they never show up in
a repr, a log line or an exception. A bad value is a ``SettingsError`` naming the
variable (``gbq`` prints it and exits 2).

Embedded defaults (docs/configuration.md): no API key means the local sandbox, whose keys are
public test values; no Redis URL means a private Redis under ``GBQ_HOME``; no database
URL means a SQLite file under ``GBQ_HOME``.
"""

from __future__ import annotations

import hashlib
import ipaddress
import logging
import os
from pathlib import Path
from typing import Literal, TypeAlias
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator

from producers.settings import (
    PublisherSettings,
    SettingsError,
    redact_url,
    settings_error,
    unknown_variables,
)
from worker.gameball.versions import DEFAULT_API_VERSION, ApiVersion
from worker.sandbox.keys import (
    COMPOSE_SANDBOX_API_KEY,
    COMPOSE_SANDBOX_SECRET_KEY,
    SANDBOX_API_KEY,
    SANDBOX_SECRET_KEY,
)

__all__ = [
    "SANDBOX_API_KEY",
    "SANDBOX_SECRET_KEY",
    "RefundAtPaid",
    "RefundTime",
    "Settings",
    "SettingsError",
    "load_settings",
    "redact_url",
]

SANDBOX_PORT = 8099
SANDBOX_BASE_URL = f"http://127.0.0.1:{SANDBOX_PORT}"

RefundTime: TypeAlias = Literal["original", "refund"]
RefundAtPaid: TypeAlias = Literal["full", "value"]
log = logging.getLogger("gbq.settings")


class Settings(PublisherSettings):
    """All settings, read from ``GBQ_*`` environment variables (where state lives, Redis,
    the ledger and the spool: :class:`PublisherSettings`)."""

    # Gameball.
    gameball_base_url: str = Field(default=SANDBOX_BASE_URL, description="Gameball API root.")
    gameball_api_key: SecretStr = Field(default=SecretStr(SANDBOX_API_KEY))
    gameball_secret_key: SecretStr = Field(default=SecretStr(SANDBOX_SECRET_KEY))
    gameball_api_version: ApiVersion = Field(
        default=DEFAULT_API_VERSION,
        description="v4.1: Gameball's current version for new integrations (SecretKey on every "
        "call; accounts may refuse older ones).",
    )
    gameball_v3_refund_line_items: bool = Field(
        default=True,
        description="v3.0 only: send refunded line items (v4 always does). Without them "
        "Gameball reverses cashback only, not campaign or category bonus points.",
    )
    # Where Gameball's own pages disagree (docs/gameball-contract.md, open questions): the
    # default follows the OpenAPI.
    gameball_refund_time: RefundTime = Field(
        default="original",
        description="A refund's transactionTime: original (the OpenAPI: the original "
        "transaction's time, i.e. just after its order's) or refund (the refund tutorial's "
        "examples: when the refund happened).",
    )
    gameball_refund_at_paid: RefundAtPaid = Field(
        default="full",
        description="A refund of exactly the order's total paid: full (the OpenAPI: a full "
        "refund, sent as one, naming the order's lines) or value (how-refunds-work.mdx's "
        "arithmetic: a partial refund of that value).",
    )
    gameball_connect_timeout_s: float = Field(default=5.0, gt=0)
    gameball_read_timeout_s: float = Field(default=20.0, gt=0)
    gameball_write_timeout_s: float = Field(default=10.0, gt=0)
    gameball_pool_timeout_s: float = Field(default=5.0, gt=0)
    gameball_max_connections: int = Field(default=20, ge=1)
    gameball_max_keepalive: int = Field(default=10, ge=0)

    # Retry policy (worker.rules.retry decides with these).
    retry_base_s: float = Field(default=1.0, gt=0)
    retry_cap_s: float = Field(default=600.0, gt=0)
    retry_window_s: float = Field(default=72 * 3600.0, gt=0)

    # Gameball's documented limits for orders and transactions, shared by all workers.
    rate_limit_per_s: int = Field(default=30, ge=0, description="0 switches the limit off.")
    rate_limit_per_30s: int = Field(default=360, ge=0, description="0 switches it off.")
    rate_limit_margin_s: float = Field(
        default=0.5, ge=0, description="Added to each window: absorbs network jitter."
    )
    rate_limit_max_wait_s: float = Field(
        default=2.0, ge=0, description="How long a worker waits for a token before deferring."
    )
    rate_limit_penalty_s: float = Field(
        default=1.0, ge=0, description="How far a 429 from Gameball pushes every sender back."
    )

    # The circuit breaker shared by all workers (Convoy's defaults, plus a failure run).
    breaker_min_requests: int = Field(default=10, ge=1)
    breaker_failure_rate: float = Field(default=0.7, gt=0, le=1)
    breaker_window_s: float = Field(default=60.0, gt=0)
    breaker_consecutive_failures: int = Field(default=5, ge=1)
    breaker_cooldown_s: float = Field(default=30.0, gt=0)

    # Delivery and recovery (the scheduler's sweeps).
    lease_s: float = Field(default=60.0, gt=0, description="How long a claim lasts.")
    heartbeat_ttl_s: float = Field(
        default=6.0,
        gt=0,
        description="A worker process silent this long is gone: its leases are handed back.",
    )
    pause_delay_s: float = Field(default=30.0, gt=0, description="Re-check after a pause.")
    waiting_window_s: float = Field(
        default=72 * 3600.0, gt=0, description="How long an event may wait for its paid event."
    )
    scheduler_tick_s: float = Field(default=1.0, gt=0)
    scheduler_batch: int = Field(default=500, ge=1, description="Most rows per sweep per tick.")
    redrive_after_s: float = Field(
        default=30.0, gt=0, description="Re-send work no worker picked up within this time."
    )
    worker_concurrency: int = Field(default=4, ge=1)
    ledger_standbys: int = Field(
        default=0,
        ge=0,
        description="Standbys that must have a ledger commit before the inbox forgets its event.",
    )

    # Retention (worker.ledger.retention): the ledger keeps a window, not all history.
    retention_days: float = Field(
        default=30.0, ge=0, description="Delivered events older than this are removed (0: never)."
    )
    archive_dir: Path | None = Field(
        default=None, description="Removed events are appended here as JSON lines first."
    )
    order_memory_days: float = Field(
        default=400.0,
        ge=0,
        description="How long a removed order's events are remembered (0: forever).",
    )

    # The web console (gbq web).
    web_host: str = Field(
        default="127.0.0.1",
        description="Where gbq web listens; beyond loopback it needs GBQ_WEB_PASSWORD.",
    )
    web_port: int = Field(default=8765, ge=0, le=65535)
    web_password: SecretStr | None = Field(
        default=None, description="Basic auth for gbq web (any user name, this password)."
    )
    web_allowed_hosts: str = Field(
        default="",
        description="Host names gbq web answers to besides loopback and GBQ_WEB_HOST "
        "(comma-separated; the names users type, behind a proxy).",
    )

    # Observability.
    metrics_port: int = Field(default=9464, ge=0, le=65535, description="0: no metrics.")
    metrics_host: str = Field(default="127.0.0.1", description="Where /metrics listens.")
    log_format: Literal["text", "json"] = "text"
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = "INFO"

    @field_validator("log_level", mode="before")
    @classmethod
    def _level_in_capitals(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value

    @field_validator("gameball_api_key", "gameball_secret_key")
    @classmethod
    def _key_not_blank(cls, value: SecretStr) -> SecretStr:
        if not value.get_secret_value().strip():
            raise ValueError("must not be empty: unset it to use the local sandbox")
        return value

    @field_validator("web_password")
    @classmethod
    def _password_not_blank(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not value.get_secret_value().strip():
            raise ValueError("must not be blank: unset it to keep the console on loopback")
        return value

    @model_validator(mode="after")
    def _standbys_need_postgresql(self) -> Settings:
        url = self.database_url.get_secret_value() if self.database_url else "sqlite"
        if self.ledger_standbys and not url.startswith("postgresql"):
            raise ValueError(
                f"GBQ_LEDGER_STANDBYS={self.ledger_standbys} needs a PostgreSQL ledger "
                "(GBQ_DATABASE_URL=postgresql://...): SQLite has no standbys"
            )
        return self

    @model_validator(mode="after")
    def _keys_match_the_endpoint(self) -> Settings:
        # The sandbox's keys are public: they must never reach a real Gameball (a
        # misconfigured worker would send every order there and be refused), and a real
        # Gameball needs the account's keys.
        keys = {
            self.gameball_api_key.get_secret_value(),
            self.gameball_secret_key.get_secret_value(),
        }
        host = urlsplit(self.gameball_base_url).hostname
        if keys & {SANDBOX_API_KEY, SANDBOX_SECRET_KEY} and not is_loopback(host):
            raise ValueError(
                f"GBQ_GAMEBALL_BASE_URL={self.gameball_base_url!r} is not on this machine, "
                "but GBQ_GAMEBALL_API_KEY or GBQ_GAMEBALL_SECRET_KEY is unset or the "
                "sandbox's public key: set your Gameball account's keys (or point at a "
                "sandbox on 127.0.0.1)"
            )
        compose = {COMPOSE_SANDBOX_API_KEY, COMPOSE_SANDBOX_SECRET_KEY}
        if keys & compose and not (is_loopback(host) or is_single_label(host)):
            raise ValueError(
                f"GBQ_GAMEBALL_BASE_URL={self.gameball_base_url!r} is not the compose "
                "sandbox, but GBQ_GAMEBALL_API_KEY or GBQ_GAMEBALL_SECRET_KEY is the "
                "compose sandbox's key: set both of your Gameball account's keys"
            )
        return self

    def endpoint(self) -> str:
        """Where deliveries go, for logs and ``gbq status`` (never the keys themselves)."""
        return (
            f"{self.gameball_base_url} API {self.gameball_api_version}, "
            f"key {key_fingerprint(self.gameball_api_key)}"
        )

    @field_validator("gameball_base_url")
    @classmethod
    def _base_url_is_http(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in {"http", "https"} or not parts.hostname:
            raise ValueError("must be an http(s) URL such as https://api.gameball.co")
        if parts.username or parts.password:
            raise ValueError("must not carry credentials; use GBQ_GAMEBALL_API_KEY")
        return value.rstrip("/")


def is_loopback(host: str | None) -> bool:
    """localhost, 127.0.0.0/8 or ::1: a sandbox on this machine."""
    if not host:
        return False
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def is_single_label(host: str | None) -> bool:
    """A name like ``sandbox``: a compose service or a LAN name, never a public host."""
    if not host or "." in host or ":" in host:
        return False
    return host.replace("-", "").replace("_", "").isalnum()


def key_fingerprint(key: SecretStr) -> str:
    """A short, stable name for a key that reveals nothing of it: ``sha256:1a2b3c4d``."""
    digest = hashlib.sha256(key.get_secret_value().encode("utf-8", "surrogatepass"))
    return f"sha256:{digest.hexdigest()[:8]}"


def load_settings() -> Settings:
    """Read settings from the environment, or raise SettingsError (one line per variable).
    A ``GBQ_`` variable that is no setting (a typo) is logged once, naming the closest."""
    try:
        settings = Settings()
    except ValidationError as error:
        raise settings_error(error, Settings) from None
    for line in unknown_variable_lines():
        log.warning("%s", line)
    return settings


_reported: set[str] = set()


def unknown_variable_lines() -> list[str]:
    """The unknown ``GBQ_`` variables not reported yet in this process, one line each."""
    lines = [line for line in unknown_variables(Settings, os.environ) if line not in _reported]
    _reported.update(lines)
    return lines
