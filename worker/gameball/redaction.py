"""Secrets out of text: the Gameball keys (and passwords) never reach a log line, the
ledger or an exception. Its own module so that logging loads no HTTP client."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

REDACTED: Final = "***"


class Redactor:
    """Replaces known secret values in text."""

    def __init__(self, secrets: Iterable[str]) -> None:
        # Longest first, so that a secret containing another is replaced whole.
        self._secrets = sorted({s for s in secrets if s}, key=len, reverse=True)

    def __call__(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, REDACTED)
        return text

    def __repr__(self) -> str:
        return f"Redactor({len(self._secrets)} secrets)"
