"""One Gameball client per process, rebuilt in a forked child."""

from __future__ import annotations

import os

import pytest

from worker.gameball import client as client_module
from worker.settings import Settings


def test_one_client_per_process_and_a_new_one_after_fork(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The same process reuses its client; a different pid (a forked child) gets its own."""
    settings = Settings(gameball_base_url="http://127.0.0.1:9")
    first = client_module.client_for_process(settings)
    assert client_module.client_for_process(settings) is first
    parent = os.getpid()
    monkeypatch.setattr(client_module.os, "getpid", lambda: parent + 1)
    child = client_module.client_for_process(settings)
    assert child is not first
    assert client_module.client_for_process(settings) is child
    child.close()
    first.close()
