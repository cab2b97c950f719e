"""The short soak, on every CI run: about 2,000 events through one fault of every kind."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.chaos.runner import SoakConfig, run_soak

pytestmark = pytest.mark.integration
SEED = int(os.environ.get("GBQ_TEST_SOAK_SEED", "20261122"))


@pytest.mark.slow(rank=4)
@pytest.mark.timeout(400)
def test_short_soak_ends_exactly_as_the_events_say(tmp_path: Path) -> None:
    """Outage, 5xx and 429 bursts, slow answers, responses lost after apply, a worker and
    the scheduler leader SIGKILLed, a Redis restart, Redis down while publishing and the
    Redis primary SIGKILLed (Sentinel promotes a replica); then
    every event is delivered (or dead as generated), wallets exact, nothing applied twice,
    per-order order kept, and the ledger agrees with the sandbox event by event."""
    result = run_soak(tmp_path, SoakConfig(seed=SEED, events=2_000, window_s=40))
    print(f"\n{result.summary()}")
    assert result.ok, f"{result.summary()}\n" + "\n".join(result.divergences[:20])
    assert result.states["delivered"] + result.states["dead"] == 2_000
    assert len(result.faults) == 10
