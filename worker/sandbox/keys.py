"""The sandbox's public keys: what it accepts unless told otherwise, and what gbq uses
with nothing configured (``worker.settings`` refuses them beyond this machine)."""

from __future__ import annotations

from typing import Final

SANDBOX_API_KEY: Final = "sandbox-api-key"
SANDBOX_SECRET_KEY: Final = "sandbox-secret-key"  # noqa: S105 - a public test value, not a secret
