"""Every command's --help works and shows an example; run in-process (help reads no
setting and starts nothing; tests/integration/test_cli.py runs the real command)."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from worker.ops.cli import app

COMMANDS = [
    ["status"],
    ["dlq", "list"],
    ["dlq", "show"],
    ["dlq", "retry"],
    ["dlq", "purge"],
    ["dlq", "export"],
    ["redemptions", "list"],
    ["redemptions", "resolve"],
    ["events"],
    ["publish"],
    ["reconcile"],
    ["prune"],
    ["worker"],
    ["scheduler"],
    ["migrate"],
    ["sandbox"],
    ["web"],
]


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_every_command_has_help_with_an_example(command: list[str]) -> None:
    """--help works everywhere and shows an example."""
    result = CliRunner().invoke(app, [*command, "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "Example" in result.output


def test_the_worker_help_names_the_setting_behind_each_option() -> None:
    result = CliRunner().invoke(app, ["worker", "--help"], env={"COLUMNS": "200"})
    assert "GBQ_WORKER_CONCURRENCY" in result.output
