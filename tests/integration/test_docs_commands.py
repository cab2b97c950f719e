"""The commands in docs/ run as written against a live stack, so that an example (a
Gameball code, an option) cannot drift from the program.

- The operator's walkthrough at the top of docs/operations.md runs end to end, pasted
  into bash under `set -e`, like the README's tour.
- Every other `gbq` line of a shell block in docs/ runs against a stack holding a dead
  letter refused with Gameball's v4.1 code: none is a usage error or fails to reach Redis
  or the ledger; long-running commands (worker, scheduler, sandbox, web, demo) have
  their options parsed instead of being started.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from harness.processes import GBQ, free_port
from harness.stack import Stack
from producers import embedded_redis
from tests.console import bury, paid
from tests.shell import FENCE, SHELL, blocks, run_bash
from worker.ops.cli import COMMANDS, load_command

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
OPERATIONS = ROOT / "docs" / "operations.md"
WALKTHROUGH = "## An operator's hour, on the sandbox"
LONG_RUNNING = {"worker", "scheduler", "sandbox", "web", "demo"}
GBQ_LINE = re.compile(r"^(?:[A-Z_]+=\S+\s+)*gbq\s")


def walkthrough() -> str:
    text = OPERATIONS.read_text()
    start = text.index(WALKTHROUGH)
    return text[start : text.index("\n## ", start + 1)]


def documented_commands() -> list[tuple[str, str]]:
    """(page, line) for every `gbq` line of a shell block in docs/, comments removed (the
    walkthrough aside: it runs on its own, in order)."""
    found = []
    for page in sorted((ROOT / "docs").glob("*.md")):
        for language, code in blocks(page.read_text().replace(walkthrough(), "")):
            if language not in SHELL:
                continue
            for line in code.splitlines():
                command = line.split("  #")[0].split(" # ")[0].strip().rstrip("&").strip()
                if GBQ_LINE.match(command):
                    found.append((page.name, command))
    return found


@pytest.mark.slow
def test_the_operators_walkthrough_runs_as_written(tmp_path: Path) -> None:
    port = free_port()
    script = "set -euo pipefail\n" + "\n".join(
        code.replace("8099", str(port))
        for language, code in blocks(walkthrough())
        if language in SHELL
    )
    (tmp_path / "walkthrough.sh").write_text(script)
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
        "GBQ_GAMEBALL_BASE_URL": f"http://127.0.0.1:{port}",
        "GBQ_METRICS_PORT": "0",
        "COLUMNS": "200",
    }
    for name in ("GBQ_HOME", "GBQ_REDIS_URL", "GBQ_DATABASE_URL", "GBQ_GAMEBALL_API_KEY"):
        env.pop(name, None)
    try:
        returncode, output = run_bash(
            tmp_path / "walkthrough.sh", cwd=tmp_path, env=env, timeout_s=240
        )
    finally:
        embedded_redis.stop(tmp_path / ".gbq" / "walkthrough")
    assert returncode == 0, output[-6000:]
    listed = output[output.index("dead letters (2 of 2)") :][:2000]
    assert "rejected" in listed
    assert "3003" in listed
    assert "blocked" in listed
    assert (tmp_path / "fix.jsonl").read_text().count("\n") == 1
    assert "replaced and retried 1 dead letter(s), refused 0" in output
    final = output[output.rindex("delivering to") :]
    assert re.search(r"delivered +2\n", final), final[:1500]
    assert "stopped the embedded Redis" in output


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_every_documented_command_runs_against_a_live_stack(
    make_stack: type[Stack], sqlite_url: str, tmp_path: Path
) -> None:
    commands = documented_commands()
    assert len(commands) > 15
    stack = make_stack(sqlite_url)
    # Two: the page retries ORD-1 before it exports by code.
    refused = [paid("ORD-1", customer="c-42"), paid("ORD-9", customer="c-42")]
    bury(stack, refused, message="invalid value", code=3003)
    (tmp_path / "new.jsonl").write_text(paid("ORD-NEW").model_dump_json() + "\n")
    failures = []
    for page, line in commands:
        words = shlex.split(line.replace("[", "").replace("]", ""))
        words = words[words.index("gbq") + 1 :]
        if words[0] in LONG_RUNNING:
            failures += parse_failures(page, line, words)
            continue
        result = subprocess.run(
            [*GBQ, *words],
            cwd=tmp_path,
            env=stack.env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        if result.returncode not in (0, 1) or "Usage:" in result.stderr:
            failures.append(f"{page}: {line}: exit {result.returncode}: {result.stderr[-500:]}")
        if words[:2] == ["dlq", "export"] and "--code" in words:
            assert result.returncode == 0, (line, result.stderr)  # the code Gameball answers
    assert failures == []


def test_every_command_named_in_the_text_exists_with_its_options() -> None:
    """`gbq …` in a page's text (not a block): the command and each option exist."""
    failures, checked = [], 0
    for page in sorted((ROOT / "docs").glob("*.md")):
        text = FENCE.sub("", page.read_text())  # the text, not its blocks
        for span in INLINE.findall(text):
            if any(mark in span for mark in PLACEHOLDERS):
                continue
            words = shlex.split(span)
            failures += option_failures(page.name, span, words[words.index("gbq") + 1 :])
            checked += 1
    assert checked > 40
    assert failures == []


INLINE = re.compile(r"`((?:[A-Z_]+=\S+ )*gbq [^`]+)`")
PLACEHOLDERS = ("<", "…", "|", "FILE", "ORDER")


def resolve(words: list[str]) -> tuple[Any, list[str]]:
    """The (sub)command ``gbq words`` names, and the words left for it."""
    command: Any = load_command(words[0])
    args = words[1:]
    while hasattr(command, "commands") and args and args[0] in command.commands:
        command, args = command.commands[args[0]], args[1:]
    return command, args


def parse_failures(page: str, line: str, words: list[str]) -> list[str]:
    """Whether ``gbq words`` parses (the command, its subcommand, each option and its
    value), without running it."""
    if words[0] not in COMMANDS:
        return [f"{page}: {line}: no command {words[0]!r}"]
    command, args = resolve(words)
    try:
        command.make_context(words[0], args)
    except Exception as error:  # a usage error, named with the line  # noqa: BLE001
        return [f"{page}: {line}: {error}"]
    return []


def option_failures(page: str, span: str, words: list[str]) -> list[str]:
    """A command named in a sentence: it exists, and so does each option it names."""
    if words in (["--version"], ["--help"]):
        return []  # gbq's own options
    if words[0] not in COMMANDS:
        return [f"{page}: {span}: no command {words[0]!r}"]
    command, args = resolve(words)
    options = {opt for param in command.params for opt in getattr(param, "opts", [])}
    options |= {opt for param in command.params for opt in getattr(param, "secondary_opts", [])}
    options.add("--help")
    unknown = [w for w in args if w.startswith("--") and w.split("=")[0] not in options]
    return [f"{page}: {span}: no option {unknown}"] if unknown else []
