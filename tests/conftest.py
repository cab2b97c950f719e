"""Shared fixtures: a real sandbox process on loopback, reset before each test."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import SecretStr

from tests.processes import SandboxProcess
from worker.settings import SANDBOX_API_KEY, SANDBOX_SECRET_KEY, Settings


@pytest.fixture(scope="session")
def sandbox_process(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SandboxProcess]:
    log = tmp_path_factory.mktemp("sandbox") / "sandbox.log"
    process = SandboxProcess(log, ["--rate-limit-per-s", "0", "--rate-limit-per-30s", "0"])
    yield process
    process.stop()


@pytest.fixture
def sandbox(sandbox_process: SandboxProcess) -> SandboxProcess:
    """The session's sandbox with fresh state, no faults and default rules."""
    sandbox_process.reset()
    sandbox_process.rules(
        points_per_unit="1",
        min_order_value="0",
        max_cashback_per_order=None,
        category_rates={},
        exclude_tax_and_shipping=False,
    )
    return sandbox_process


@pytest.fixture
def start_sandbox(tmp_path: Path) -> Iterator[type[SandboxProcess]]:
    """Start extra sandboxes with their own options; all stop when the test ends."""
    started: list[SandboxProcess] = []

    class Started(SandboxProcess):
        def __init__(self, *args: str) -> None:
            super().__init__(tmp_path / f"sandbox-{len(started)}.log", args)
            started.append(self)

    yield Started
    for process in started:
        process.stop()


def settings_for(url: str, **overrides: object) -> Settings:
    """Settings pointing at a sandbox, independent of the caller's GBQ_ environment."""
    values: dict[str, object] = {
        "gameball_base_url": url,
        "gameball_api_key": SecretStr(SANDBOX_API_KEY),
        "gameball_secret_key": SecretStr(SANDBOX_SECRET_KEY),
        "gameball_api_version": "v3.0",
        "gameball_read_timeout_s": 5.0,
    }
    values.update(overrides)
    return Settings(**values)  # type: ignore[arg-type]
