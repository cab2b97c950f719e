"""The Sentinel form of ``GBQ_REDIS_URL``, read the same way by every gbq process.

    redis+sentinel://[user:password@]host1:26379,host2:26379/SERVICE[/DB][?options]
    rediss+sentinel://...      the same, over TLS to the sentinels and to the primary

The hosts are the sentinels (port 26379 when left out); ``SERVICE`` is the name they
monitor the primary under (``sentinel monitor SERVICE ...``); ``DB`` is the database
number (0). The user and password are the primary's (an ACL user, as in
``docs/security.md``); sentinels that ask for a password of their own get it from
``sentinel_username`` and ``sentinel_password``. The TLS options are those of a
``rediss://`` URL (``ssl_cert_reqs``, ``ssl_ca_certs``, ``ssl_certfile``, ``ssl_keyfile``,
``ssl_check_hostname``), for the sentinels and the primary alike.

Parsing here is pure: :func:`parse_sentinel_url` returns what the URL says or raises
``ValueError`` naming each problem, with no password in it. Connecting is
``producers.redis_connect``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final
from urllib.parse import parse_qsl, unquote, urlsplit

SENTINEL_SCHEMES: Final = {"redis+sentinel": False, "rediss+sentinel": True}  # → TLS
SENTINEL_PORT: Final = 26379
TLS_OPTIONS: Final = frozenset(
    {"ssl_cert_reqs", "ssl_ca_certs", "ssl_certfile", "ssl_keyfile", "ssl_check_hostname"}
)
SENTINEL_CREDENTIALS: Final = frozenset({"sentinel_username", "sentinel_password"})
EXAMPLE: Final = "redis+sentinel://host1:26379,host2:26379/mymaster/0"


@dataclass(frozen=True)
class SentinelTarget:
    """Where a Sentinel URL points: the sentinels, the service, and how to talk to both."""

    sentinels: tuple[tuple[str, int], ...]
    service: str
    db: int = 0
    tls: bool = False
    username: str | None = field(default=None, repr=False)
    password: str | None = field(default=None, repr=False)
    sentinel_username: str | None = field(default=None, repr=False)
    sentinel_password: str | None = field(default=None, repr=False)
    tls_options: tuple[tuple[str, str], ...] = ()


def is_sentinel_url(url: str) -> bool:
    return url.split("://", 1)[0].lower() in SENTINEL_SCHEMES if "://" in url else False


def parse_sentinel_url(url: str) -> SentinelTarget:
    """The target ``url`` names; ``ValueError`` listing every problem (never a password)."""
    scheme, _, rest = url.partition("://")
    tls = SENTINEL_SCHEMES.get(scheme.lower())
    if tls is None:
        raise ValueError(f"not a Sentinel URL (expected {EXAMPLE})")
    netloc, _, after = rest.partition("/")
    path, _, query = after.partition("?")
    credentials, _, hosts = netloc.rpartition("@")
    problems: list[str] = []
    sentinels = _sentinels(hosts, problems)
    service, db = _service_and_db(path, problems)
    options = _options(query, tls, problems)
    if problems:
        raise ValueError("; ".join(problems) + f" (expected {EXAMPLE})")
    username, password = _credentials(credentials)
    return SentinelTarget(
        sentinels=sentinels,
        service=service,
        db=db,
        tls=tls,
        username=username,
        password=password,
        sentinel_username=options.pop("sentinel_username", None),
        sentinel_password=options.pop("sentinel_password", None),
        tls_options=tuple(sorted(options.items())),
    )


def _sentinels(hosts: str, problems: list[str]) -> tuple[tuple[str, int], ...]:
    found = []
    for part in hosts.split(","):
        address = part.strip()
        if not address:
            problems.append("a sentinel's host is empty")
            continue
        try:
            parsed = urlsplit(f"//{address}")
            host, port = parsed.hostname, parsed.port or SENTINEL_PORT
        except ValueError:
            problems.append(f"sentinel {address!r:.60} is not host:port")
            continue
        if not host:
            problems.append(f"sentinel {address!r:.60} has no host")
            continue
        found.append((host, port))
    return tuple(found)


def _service_and_db(path: str, problems: list[str]) -> tuple[str, int]:
    parts = [unquote(part) for part in path.split("/") if part]
    if not parts:
        problems.append("the service name (the sentinels' name for the primary) is missing")
        return "", 0
    if len(parts) > 2:
        problems.append(f"the path has {len(parts)} parts: expected /SERVICE or /SERVICE/DB")
        return parts[0], 0
    if len(parts) == 1:
        return parts[0], 0
    if not parts[1].isdigit():
        problems.append(f"the database {parts[1]!r:.20} is not a number")
        return parts[0], 0
    return parts[0], int(parts[1])


def _options(query: str, tls: bool, problems: list[str]) -> dict[str, str]:
    allowed = SENTINEL_CREDENTIALS | (TLS_OPTIONS if tls else frozenset())
    options: dict[str, str] = {}
    for name, value in parse_qsl(query, keep_blank_values=True):
        if name not in allowed:
            hint = " (TLS options need rediss+sentinel://)" if name in TLS_OPTIONS else ""
            problems.append(f"unknown option {name!r:.40}{hint}")
            continue
        options[name] = value
    return options


def _credentials(credentials: str) -> tuple[str | None, str | None]:
    if not credentials:
        return None, None
    user, has_password, password = credentials.partition(":")
    return (unquote(user) or None), (unquote(password) if has_password else None)
