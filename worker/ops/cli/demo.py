"""``gbq demo``: see the whole system survive an outage and a crash, in about a minute."""

from __future__ import annotations

import shlex
import signal
import sys
from pathlib import Path
from types import FrameType
from typing import Annotated

import typer
from rich.table import Table

from worker.ops.cli.common import ExitCode, console, fail
from worker.ops.demo import run_demo
from worker.settings import load_settings


def run(
    orders: Annotated[
        int, typer.Option(help="Orders in the stream (about 3 events each).", min=5, max=5000)
    ] = 300,
    outage_s: Annotated[float, typer.Option(help="How long Gameball stays down.", min=0)] = 8.0,
    seed: Annotated[int, typer.Option(help="Seed of the stream and the sandbox's faults.")] = 7,
) -> None:
    """Start everything on embedded defaults under GBQ_HOME/demo (Redis with AOF,
    SQLite, the sandbox, a worker, the scheduler, the web console, whose address it
    prints), publish a realistic stream, take Gameball down (the breaker opens, then
    closes), kill the worker mid-delivery, and reconcile at the end. Not on a terminal,
    it prints a line per phase. Ctrl-C stops every child process; the state stays in
    GBQ_HOME/demo, and it ends by saying how to look at it.

    Example:

      gbq demo --orders 300 --outage-s 8
    """
    settings = load_settings()

    def interrupted(signum: int, frame: FrameType | None) -> None:
        # The first Ctrl-C starts the shutdown; further ones must not cut the cleanup short.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        raise KeyboardInterrupt

    signal.signal(signal.SIGINT, interrupted)
    try:
        result = run_demo(
            settings.home,
            orders=orders,
            outage_s=outage_s,
            seed=seed,
            live=sys.stdout.isatty(),
            announce=typer.echo,
        )
    except KeyboardInterrupt:
        typer.echo("stopped: every child process was shut down", err=True)
        raise typer.Exit(130) from None
    except RuntimeError as error:
        fail(f"demo failed: {error} (logs in {settings.home / 'demo'})", ExitCode.NOTHING)
    table = Table(title="reconciliation")
    table.add_column("what")
    table.add_column("count", justify="right")
    for what, count in (
        ("events published", result.published),
        ("of which published twice on purpose", result.duplicates_published),
        ("delivered", result.delivered),
        ("dead", result.dead),
        ("duplicates prevented", result.duplicates_prevented),
        (
            "customer wallets equal to expected",
            f"{result.wallets_matching} of {result.wallets_expected}",
        ),
    ):
        table.add_row(what, str(count))
    console().print(table)
    for line in next_steps(settings.home / "demo", result.an_order):
        typer.echo(line)
    typer.echo(result.line())
    if not result.ok:
        raise typer.Exit(int(ExitCode.NOTHING))


def next_steps(folder: Path, order: str) -> list[str]:
    """Commands that look at the demo's own state, as they can be pasted."""
    gbq = sys.argv[0] if Path(sys.argv[0]).name == "gbq" else "gbq"
    prefix = f"GBQ_HOME={shlex.quote(str(folder))} {shlex.quote(gbq)}"
    return [
        f"The demo's state stays in {folder}; look at it with:",
        f"  {prefix} status",
        f"  {prefix} events {shlex.quote(order)}",
        f"  {prefix} local stop",
    ]
