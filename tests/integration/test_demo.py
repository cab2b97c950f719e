"""`gbq demo` in a short run: the reconciliation holds and no child process survives."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from harness.processes import GBQ, wait_until
from producers.embedded_redis import answers, socket_url

pytestmark = pytest.mark.integration


def alive(pids_file: Path) -> list[int]:
    pids = [int(line) for line in pids_file.read_text().split()]
    return [pid for pid in pids if Path(f"/proc/{pid}").exists()]


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_short_demo_reconciles_and_leaves_nothing_running(tmp_path: Path) -> None:
    """A short demo ends with every wallet equal. Piped, it says each phase and how it
    ended: the breaker seen opening in the outage and closing after it, the worker killed
    apart from the outage; what it suggests next runs as printed."""
    env = {**os.environ, "GBQ_HOME": str(tmp_path / "var")}
    gbq = str(Path(sys.executable).parent / "gbq")  # as `make run` runs it
    result = subprocess.run(
        [gbq, "demo", "--orders", "40", "--outage-s", "2"],
        env=env,
        capture_output=True,
        text=True,
        timeout=280,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    line = result.stdout.strip().splitlines()[-1]
    assert line.startswith("reconciliation: 120 published, 120 delivered, 0 dead, ")
    assert line.endswith("(all equal)")
    assert "console: http://127.0.0.1:" in result.stdout
    demo = tmp_path / "var" / "demo"
    assert len(alive(demo / "children.pids")) == 0
    assert not answers(socket_url(demo))  # the embedded Redis was shut down too
    lines = result.stdout.splitlines()
    phases = [n for n, line in enumerate(lines) if re.match(r"\[ *[\d.]+s\] \d/5 ", line)]
    assert len(phases) == 5
    outage, back = lines[phases[1] + 1], lines[phases[2] + 1]
    assert "breaker closed → open" in outage, outage
    assert re.search(r"breaker open( → half_open)? → closed", back), back
    assert "breaker closed;" in lines[phases[3] + 1]  # the crash comes after the outage
    suggested = [line.strip() for line in lines if line.startswith("  GBQ_HOME=")]
    assert [line.split()[2] for line in suggested] == ["status", "events", "local"]
    for line in suggested:
        shown = subprocess.run(  # noqa: S602 - the demo's own suggestion, run as pasted
            line, shell=True, env=env, capture_output=True, text=True, timeout=60, check=False
        )
        assert shown.returncode == 0, (line, shown.stdout, shown.stderr)
        if line.endswith(" status"):
            assert "delivered" in shown.stdout
    assert not answers(socket_url(demo))  # `local stop`, as suggested, stopped it again


@pytest.mark.timeout(200)
def test_ctrl_c_stops_every_child(tmp_path: Path) -> None:
    """SIGINT mid-run: the demo stops its children and the embedded Redis, exit 130."""
    env = {**os.environ, "GBQ_HOME": str(tmp_path / "var")}
    demo = tmp_path / "var" / "demo"
    process = subprocess.Popen(
        [*GBQ, "demo", "--orders", "300", "--outage-s", "30"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    wait_until(
        lambda: (demo / "children.pids").exists() and len(alive(demo / "children.pids")) >= 3,
        timeout_s=60,
        what="the demo's children",
    )
    assert process.stdout is not None
    announced = process.stdout.readline()  # the console's address comes first
    assert announced.startswith("console: http://127.0.0.1:"), announced
    url = announced.split()[1]
    wait_until(lambda: _answers(url), timeout_s=30, what="the demo's console")
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stderr
    assert "every child process was shut down" in stderr
    assert alive(demo / "children.pids") == []
    assert not answers(socket_url(demo))  # the embedded Redis was shut down too


def _answers(url: str) -> bool:
    try:
        return "Overview" in httpx.get(url + "/", timeout=5).text
    except httpx.TransportError:
        return False
