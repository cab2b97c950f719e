"""``gbq``: one entry point, subcommands that read as sentences (docs/operations.md).

Each command group lives in its own module; this one only assembles them.
"""

from __future__ import annotations

from importlib.metadata import version
from typing import Annotated

import typer

from producers.settings import SettingsError
from worker.ops.cli import (
    demo,
    dlq,
    events,
    local,
    migrate,
    prune,
    publish,
    reconcile,
    redemptions,
    sandbox,
    scheduler,
    status,
    web,
    worker,
)
from worker.ops.cli.common import ExitCode
from worker.settings import unknown_variable_lines

app = typer.Typer(
    name="gbq",
    help="gameball-queue: report paid, cancelled and refunded orders to Gameball, durably.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,  # expected failures print one line, not a traceback
)
app.command("worker")(worker.run)
app.command("scheduler")(scheduler.run)
app.command("migrate")(migrate.run)
app.command("status")(status.run)
app.add_typer(dlq.app, name="dlq")
app.command("events")(events.run)
app.command("publish")(publish.run)
app.command("reconcile")(reconcile.run)
app.add_typer(redemptions.app, name="redemptions")
app.command("prune")(prune.run)
app.command("sandbox")(sandbox.run)
app.command("demo")(demo.run)
app.add_typer(local.app, name="local")
app.command("web")(web.run)


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"gbq {version('gameball-queue')}")
        raise typer.Exit


@app.callback()
def _root(
    show_version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_print_version, is_eager=True, help="Print the version."
        ),
    ] = False,
) -> None:
    """gameball-queue: report paid, cancelled and refunded orders to Gameball, durably."""


def main() -> None:
    for line in unknown_variable_lines():  # before any command: a typo is never silent
        typer.echo(f"warning: {line}", err=True)
    try:
        app()
    except SettingsError as error:  # raised wherever a command first reads its settings
        for line in error.lines:
            typer.echo(f"error: {line}", err=True)
        raise SystemExit(int(ExitCode.USAGE)) from None
