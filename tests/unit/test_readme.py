"""The README runs as written, and the docs stay honest: every setting is documented,
every test a page cites exists, every troubleshooting row names the test that exercises
it."""

from __future__ import annotations

import os
import re
import socket
from pathlib import Path

import pytest

from producers import embedded_redis
from tests.shell import PYTHON, SHELL, blocks, run_bash

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
DOCS = sorted((ROOT / "docs").glob("*.md"))
NOT_RUN = "not run by the tests"
PY_END = "GBQ_README_PYTHON"
TOUR = "## A five-minute tour"


def tour() -> str:
    text = README.read_text()
    start = text.index(TOUR)
    return text[start : text.index("\n## ", start + 1)]


def tour_script(port: int) -> str:
    """The tour's blocks as one shell script, in order: shell as written, Python through
    `python -` (on the tour's PATH); the sandbox on a free port."""
    parts = ["set -euo pipefail"]
    for language, code in blocks(tour()):
        if language in SHELL:
            parts.append(code.replace("--port 8099", f"--port {port}"))
        elif language in PYTHON:
            parts.append(f"python - <<'{PY_END}'\n{code}{PY_END}")
    return "\n".join(parts) + "\n"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_every_block_runs_somewhere_or_says_why_not() -> None:
    """The tour's Python and shell blocks run below; any other shell block is the make
    commands (CI runs `make test`, test_demo the demo) or says it is not run, and why."""
    outside = README.read_text().replace(tour(), "")
    for language, code in blocks(outside):
        assert language in SHELL | {"text", ""}, language
        lines = [line for line in code.splitlines() if line.strip()]
        if language in SHELL:
            assert NOT_RUN in lines[0] or all(line.startswith("make ") for line in lines)
    languages = {language for language, _ in blocks(tour())}
    assert languages == {"python", "sh"}


@pytest.mark.slow
def test_the_readme_tour_runs_as_written(tmp_path: Path) -> None:
    """The tour, end to end: the sandbox, the worker and the scheduler in the background,
    the Python example publishing, then status, the order's timeline and reconciliation
    (which exits 1 if Gameball's records differ), under `set -e`."""
    home = tmp_path / "home"
    port = free_port()
    env = {
        **os.environ,
        "GBQ_HOME": str(home),
        "GBQ_GAMEBALL_BASE_URL": f"http://127.0.0.1:{port}",
        "GBQ_METRICS_PORT": "0",
        "COLUMNS": "200",
    }
    for name in ("GBQ_REDIS_URL", "GBQ_DATABASE_URL", "GBQ_GAMEBALL_API_KEY"):
        env.pop(name, None)
    script = tmp_path / "tour.sh"
    script.write_text(tour_script(port))
    try:
        returncode, output = run_bash(script, cwd=ROOT, env=env, timeout_s=240)
    finally:
        embedded_redis.stop(home)
    assert returncode == 0, output[-6000:]
    assert "delivering to" in output
    timeline = output[output.index("ORD-1") :]
    assert "paid:ORD-1" in timeline
    assert "refunded:ORD-1:ORD-1-R1" in timeline
    assert "stopped the embedded Redis" in output


def test_every_setting_is_in_the_configuration_table() -> None:
    """Each GBQ_ variable the code reads is documented (and spelled out in full)."""
    from worker.settings import Settings  # noqa: PLC0415 - only this test needs it

    text = (ROOT / "docs" / "configuration.md").read_text()
    missing = [
        f"GBQ_{name.upper()}"
        for name in Settings.model_fields
        if f"`GBQ_{name.upper()}`" not in text
    ]
    assert missing == []


@pytest.mark.parametrize("page", [README, *DOCS], ids=lambda p: p.name)
def test_every_test_a_page_cites_exists(page: Path) -> None:
    """The README and docs/ name tests as proof: each must exist under tests/."""
    defined = {
        name
        for path in (ROOT / "tests").rglob("test_*.py")
        for name in re.findall(r"^def (test_\w+)", path.read_text(), flags=re.MULTILINE)
    }
    files = {path.name for path in (ROOT / "tests").rglob("test_*.py")}
    cited = set(re.findall(r"\b(test_\w+)\b", page.read_text()))
    missing = sorted(name for name in cited if name not in defined and f"{name}.py" not in files)
    assert missing == []


def test_the_guarantees_cite_their_proofs() -> None:
    """The pattern above still finds the promise table's tests."""
    text = (ROOT / "docs" / "guarantees.md").read_text()
    assert len(set(re.findall(r"\b(test_\w+)\b", text))) > 20


def test_every_troubleshooting_row_names_the_test_that_exercises_it() -> None:
    text = (ROOT / "docs" / "operations.md").read_text()
    table = text[text.index("## Troubleshooting") :]
    rows = [line for line in table.splitlines() if line.startswith("| ") and "---" not in line]
    assert len(rows) > 15
    untested = [row[:80] for row in rows[1:] if not re.search(r"`test_\w+`", row.split("|")[-2])]
    assert untested == []


def test_the_readme_stays_short() -> None:
    assert len(README.read_text().splitlines()) <= 200


def test_the_readme_speaks_of_features_not_of_our_step_numbers() -> None:
    """A user cannot know the project's internal steps; the README names what works."""
    assert re.findall(r"\b[Ss]teps? \d+", README.read_text()) == []
