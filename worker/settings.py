"""Configuration: the only module that reads the environment (prefix ``GBQ_``).

Every other module receives a :class:`Settings` instance. Durations are float seconds
and carry ``_s`` in their names. Secrets are ``SecretStr`` so that they never show up in
a repr, a log line or an exception.

Embedded defaults (DESIGN §6): no API key means the local sandbox, whose keys are
public test values; no Redis URL means a private Redis under ``var_dir``; no database
URL means a SQLite file under ``var_dir``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal, TypeAlias
from urllib.parse import urlsplit, urlunsplit

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

SANDBOX_API_KEY = "sandbox-api-key"
SANDBOX_SECRET_KEY = "sandbox-secret-key"  # noqa: S105 - a public test value, not a secret
SANDBOX_PORT = 8099
SANDBOX_BASE_URL = f"http://127.0.0.1:{SANDBOX_PORT}"

ApiVersion: TypeAlias = Literal["v3.0", "v4.0", "v4.1"]


class Settings(BaseSettings):
    """All settings, read from ``GBQ_*`` environment variables."""

    # hide_input_in_errors: a bad value may be a key or a URL with a password in it.
    model_config = SettingsConfigDict(
        env_prefix="GBQ_", extra="ignore", frozen=True, hide_input_in_errors=True
    )

    # Where state lives.
    var_dir: Path = Field(default=Path("var"), description="Embedded Redis and SQLite files.")
    redis_url: SecretStr | None = Field(
        default=None, description="Redis URL; unset means a private embedded Redis."
    )
    database_url: SecretStr | None = Field(
        default=None, description="SQLAlchemy URL; unset means SQLite under GBQ_VAR_DIR."
    )

    # Gameball.
    gameball_base_url: str = Field(default=SANDBOX_BASE_URL, description="Gameball API root.")
    gameball_api_key: SecretStr = Field(default=SecretStr(SANDBOX_API_KEY))
    gameball_secret_key: SecretStr = Field(default=SecretStr(SANDBOX_SECRET_KEY))
    gameball_api_version: ApiVersion = Field(
        default="v4.1",
        description="v4.1: Gameball's current version for new integrations (SecretKey on every "
        "call; accounts may refuse older ones).",
    )
    gameball_v3_refund_line_items: bool = Field(
        default=True,
        description="v3.0 only: send refunded line items (v4 always does). Without them "
        "Gameball reverses cashback only, not campaign or category bonus points.",
    )
    gameball_connect_timeout_s: float = Field(default=5.0, gt=0)
    gameball_read_timeout_s: float = Field(default=20.0, gt=0)
    gameball_write_timeout_s: float = Field(default=10.0, gt=0)
    gameball_pool_timeout_s: float = Field(default=5.0, gt=0)
    gameball_max_connections: int = Field(default=20, ge=1)
    gameball_max_keepalive: int = Field(default=10, ge=0)

    # Retry policy (DESIGN §4; used from Step 2 on).
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

    # Publishing: checkout must never wait long on Redis.
    publish_timeout_s: float = Field(default=0.5, gt=0, description="Redis connect/socket.")
    spool_path: Path | None = Field(
        default=None, description="Local spool when Redis is down; unset: GBQ_VAR_DIR/spool.db."
    )

    outbox_database_url: SecretStr | None = Field(
        default=None, description="Where Publisher.stage() writes; unset: the ledger's database."
    )

    # Delivery and recovery (the scheduler's sweeps).
    lease_s: float = Field(default=60.0, gt=0, description="How long a claim lasts.")
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

    # Observability.
    metrics_port: int = Field(default=9464, ge=0, le=65535, description="0: no metrics.")
    metrics_host: str = Field(default="127.0.0.1", description="Where /metrics listens.")
    log_format: Literal["text", "json"] = "text"
    log_level: str = "INFO"

    @field_validator("gameball_base_url")
    @classmethod
    def _base_url_is_http(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in {"http", "https"} or not parts.hostname:
            raise ValueError("must be an http(s) URL such as https://api.gameball.co")
        if parts.username or parts.password:
            raise ValueError("must not carry credentials; use GBQ_GAMEBALL_API_KEY")
        return value.rstrip("/")

    @field_validator("database_url", "outbox_database_url")
    @classmethod
    def _database_driver(cls, value: SecretStr | None) -> SecretStr | None:
        # SQLAlchemy maps bare postgresql:// to psycopg2; this project ships psycopg 3.
        if value is None:
            return None
        url = value.get_secret_value()
        for prefix in ("postgresql://", "postgres://"):
            if url.startswith(prefix):
                return SecretStr("postgresql+psycopg://" + url.removeprefix(prefix))
        return value

    @property
    def effective_spool_path(self) -> Path:
        return self.spool_path or self.var_dir / "spool.db"

    def effective_database_url(self) -> str:
        """The ledger's URL: GBQ_DATABASE_URL, or a SQLite file under GBQ_VAR_DIR."""
        if self.database_url is not None:
            return self.database_url.get_secret_value()
        return f"sqlite:///{(self.var_dir / 'gbq.db').resolve()}"

    def effective_outbox_url(self) -> str:
        if self.outbox_database_url is not None:
            return self.outbox_database_url.get_secret_value()
        return self.effective_database_url()

    def effective_redis_url(self) -> str:
        """GBQ_REDIS_URL, or the embedded Redis under GBQ_VAR_DIR (started if needed)."""
        if self.redis_url is not None:
            return self.redis_url.get_secret_value()
        from worker.embedded_redis import ensure_running  # noqa: PLC0415 - only when embedded

        return ensure_running(self.var_dir)


def redact_url(url: str) -> str:
    """Return ``url`` with any password replaced by ``***`` (for logs and the CLI)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    user = parts.username or ""
    return urlunsplit(parts._replace(netloc=f"{user}:***@{host}"))


def load_settings() -> Settings:
    """Read settings from the environment."""
    return Settings()
