"""The console's security rules, pure (no I/O): who may bind where, who may read, and
which requests may act.

- Bound to loopback by default. Any other address needs ``GBQ_WEB_PASSWORD``: the console
  retries and purges dead letters, so it never serves a network unauthenticated.
- With a password, every request needs HTTP basic auth (any user name, this password),
  compared in constant time.
- Every action (POST) needs the CSRF token of the visitor's session cookie (an HMAC of it
  under a per-process key) and, when the browser says, a same-origin request: a page on
  another site cannot make a logged-in browser retry or purge anything.
- The Host header must name the console (loopback names, the bound address, or
  ``GBQ_WEB_ALLOWED_HOSTS``): a DNS-rebinding page cannot read it through the browser.
- A note shown after an action (``?note=…``) carries an HMAC under the same key: a link
  from anywhere else cannot make the console say what it did not.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
from collections.abc import Iterable

from worker.settings import is_loopback

LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1", "[::1]"})
SESSION_COOKIE = "gbq_session"


class ConsoleSecurityError(ValueError):
    """The console would be exposed without a password."""


def check_bind(host: str, password: str | None) -> None:
    """Refuse to serve beyond loopback without a password."""
    if not is_loopback(host.strip("[]")) and not password:
        raise ConsoleSecurityError(
            f"gbq web: refusing to listen on {host} without GBQ_WEB_PASSWORD (the console "
            "can retry and purge dead letters); set it, or listen on 127.0.0.1"
        )


def password_matches(authorization: str | None, password: str) -> bool:
    """Whether an ``Authorization: Basic`` header carries this password (any user)."""
    if not authorization or not authorization.lower().startswith("basic "):
        return False
    try:
        decoded = base64.b64decode(authorization[6:].strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return False
    _, _, given = decoded.partition(":")
    return hmac.compare_digest(given.encode(), password.encode())


def new_session() -> str:
    return secrets.token_urlsafe(24)


def csrf_token(key: bytes, session: str) -> str:
    return hmac.new(key, session.encode(), hashlib.sha256).hexdigest()


def note_signature(key: bytes, note: str) -> str:
    return hmac.new(
        key, b"note:" + note.encode("utf-8", "surrogatepass"), hashlib.sha256
    ).hexdigest()


def note_is_ours(key: bytes, note: str, signature: str | None) -> bool:
    """Whether ``note`` was written by this console (``back()``), not by a link."""
    return bool(signature) and hmac.compare_digest(note_signature(key, note), signature or "")


def csrf_valid(key: bytes, session: str | None, token: str | None) -> bool:
    if not session or not token:
        return False
    return hmac.compare_digest(csrf_token(key, session), token)


def same_origin(origin: str | None, fetch_site: str | None, host: str) -> bool:
    """What the browser says of where a request comes from; absent headers (curl, old
    browsers) leave the decision to the CSRF token."""
    if fetch_site is not None and fetch_site not in ("same-origin", "none"):
        return False
    if origin is None or origin == "null":
        return origin is None
    return origin.split("://", 1)[-1] == host


def host_allowed(host_header: str | None, bound: str, extra: Iterable[str]) -> bool:
    if not host_header:
        return False
    name = host_header.rsplit(":", 1)[0] if not host_header.endswith("]") else host_header
    name = name.lower()
    allowed = {*LOOPBACK_NAMES, bound.lower(), *(item.lower() for item in extra)}
    return name in allowed or "*" in allowed
