"""`gbq --version` and `gbq --help` import no command; each command's summary in the
top-level help is the start of its own help (bench/cli.py measures the start-up)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from worker.ledger.schema import HEAD_REVISION, head_revision
from worker.ops.cli import COMMANDS, load_command

HEAVY = ("worker.ops.cli.", "sqlalchemy", "celery", "rich", "pydantic", "httpx", "redis")


def imported_by(*args: str) -> list[str]:
    code = (
        "import json, sys\n"
        "from worker.ops.cli import main\n"
        "try:\n"
        f"    main({list(args)!r})\n"
        "except SystemExit:\n"
        "    pass\n"
        f"print(json.dumps(sorted(m for m in sys.modules if m.startswith({HEAVY!r}))))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    return list(json.loads(result.stdout.splitlines()[-1]))


@pytest.mark.parametrize("args", [["--version"], ["--help"], []])
def test_the_top_level_imports_no_command(args: list[str]) -> None:
    assert imported_by(*args) == []


def test_a_command_imports_its_own_module_only() -> None:
    loaded = [name for name in imported_by("events", "--help") if name.startswith(HEAVY[0])]
    assert "worker.ops.cli.events" in loaded
    assert "worker.ops.cli.dlq" not in loaded
    assert "worker.ops.cli.worker" not in loaded


@pytest.mark.parametrize("name", list(COMMANDS))
def test_each_summary_is_the_start_of_its_commands_help(name: str) -> None:
    command = load_command(name)
    assert command.help is not None
    assert " ".join(command.help.split()).startswith(COMMANDS[name].summary)


def test_the_ledger_check_knows_the_newest_migration() -> None:
    """Commands check the ledger's revision without alembic; it must be alembic's head."""
    assert head_revision() == HEAD_REVISION
