"""What the CLI prints fits an 80-column terminal (ids cut in the middle, times to the
second), shows every value whole with --wide, and `status --wait` says what it waits for."""

from __future__ import annotations

import pytest

from harness.stack import Stack
from tests.console import bury, paid
from worker.ops.cli.tables import middle

pytestmark = pytest.mark.integration
ORDER = "ORDER-2026-12-07-A-VERY-LONG-SHOP-IDENTIFIER-000123"
EVENT = f"paid:{ORDER}"
MESSAGE = "Gameball refused it: " + "the order's total paid is not a number " * 3


def narrow(stack: Stack, *args: str) -> str:
    result = stack.gbq(*args)
    assert result.returncode == 0, result.stderr
    too_wide = [line for line in result.stdout.splitlines() if len(line) > 80]
    assert not too_wide, "\n".join(too_wide)
    return result.stdout


@pytest.mark.parametrize(
    "command", [["dlq", "list"], ["dlq", "show", EVENT], ["events", ORDER]], ids=" ".join
)
def test_tables_fit_80_columns_and_wide_shows_values_whole(
    make_stack: type[Stack], sqlite_url: str, command: list[str]
) -> None:
    stack = make_stack(sqlite_url, COLUMNS="80")
    bury(stack, [paid(ORDER)], message=MESSAGE)
    output = narrow(stack, *command)
    if command[:2] != ["dlq", "show"]:  # show names the event whole in its first line
        assert EVENT not in output
        assert middle(EVENT) in output
    wide = stack.gbq(*command, "--wide")
    assert wide.returncode == 0, wide.stderr
    assert EVENT in wide.stdout
    assert "2026-11-01T12:00:00+00:00" in wide.stdout or command[0] == "dlq"


def test_status_wait_says_what_it_waits_for(make_stack: type[Stack], sqlite_url: str) -> None:
    """No worker runs: --wait names what is left, then gives up naming it, exit 1."""
    stack = make_stack(sqlite_url)
    stack.publisher.publish(paid("WAIT-1"))
    result = stack.gbq("status", "--wait", "2")
    assert result.returncode == 1
    lines = result.stderr.splitlines()
    assert lines[0] == "waiting (0s of 2s): 1 event(s) to send: not yet ingested 1"
    assert lines[-1] == "still sending after 2s: 1 left (not yet ingested 1)"
    assert "delivering to" in result.stdout  # the report still comes
