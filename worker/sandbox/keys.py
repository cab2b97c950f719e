"""The sandbox's public keys: what it accepts unless told otherwise, and what gbq uses
with nothing configured (``worker.settings`` refuses them beyond this machine)."""

from __future__ import annotations

from typing import Final

SANDBOX_API_KEY: Final = "sandbox-api-key"
SANDBOX_SECRET_KEY: Final = "sandbox-secret-key"  # noqa: S105 - a public test value, not a secret

# docker-compose.yml's sandbox service runs with these, and the stack defaults to them:
# they may reach that service by its compose name (a host name of one label, which no
# public DNS answers) or loopback, never Gameball itself.
COMPOSE_SANDBOX_API_KEY: Final = "compose-sandbox-api-key"
COMPOSE_SANDBOX_SECRET_KEY: Final = "compose-sandbox-secret-key"  # noqa: S105 - public, as above
