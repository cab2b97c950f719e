"""Pages' code blocks, and running a shell block as a user pastes it: the README's tour
(tests/unit/test_readme.py) and the operator's walkthrough (test_docs_commands.py)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
from pathlib import Path

FENCE = re.compile(r"^```([^\n`]*)\n(.*?)^```", flags=re.DOTALL | re.MULTILINE)
PYTHON = {"python", "py", "python3"}
SHELL = {"sh", "bash", "shell"}


def blocks(text: str) -> list[tuple[str, str]]:
    """(language, code) of each fenced block, in order."""
    return [(info.split()[0] if info.split() else "", code) for info, code in FENCE.findall(text)]


def run_bash(script: Path, *, cwd: Path, env: dict[str, str], timeout_s: float) -> tuple[int, str]:
    """Run ``script`` with bash in a session of its own; past the deadline, the whole
    session is killed (background jobs included). Returns the exit code and the output."""
    process = subprocess.Popen(
        ["/bin/bash", str(script)],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        output, _ = process.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        output, _ = process.communicate()
    return process.returncode, output
