"""No Celery countdown or ETA anywhere: with Redis they are redelivered after the
visibility timeout, sometimes in a loop (kombu#337). Retries live in the ledger."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SOURCES = sorted(p for folder in ("producers", "worker") for p in (ROOT / folder).rglob("*.py"))
FORBIDDEN = re.compile(
    r"\bcountdown\s*=|\beta\s*=|\.apply_async\(|self\.retry\b|autoretry_for|retry_backoff"
)


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_countdown_eta_or_celery_retry(path: Path) -> None:
    """Each module is free of countdown=, eta=, apply_async(, Task.retry and autoretry."""
    assert not FORBIDDEN.findall(path.read_text())
