"""``gbq``: one entry point, subcommands that read as sentences (docs/operations.md).

Each command group lives in its own module, imported only when that command runs (or its
help is asked for): ``gbq --version`` and ``gbq --help`` import none of them, and each
command pays only for what it uses (``bench/cli.py`` measures it).
"""

from __future__ import annotations

import importlib
import os
import sys
from dataclasses import dataclass
from typing import Annotated

import typer
from typer import _click as click  # Typer's own click (vendored since 0.22): its group's types
from typer.core import TyperGroup


@dataclass(frozen=True)
class Entry:
    module: str  # worker.ops.cli.<module>
    attribute: str  # its run() function, or its Typer app for a group of commands
    summary: str  # the first words of its help, for `gbq --help` (kept true by a test)


COMMANDS: dict[str, Entry] = {
    "worker": Entry("worker", "run", "Deliver events: consume the `gbq` queue, call Gameball"),
    "scheduler": Entry("scheduler", "run", "Re-send due retries, recover crashed deliveries"),
    "migrate": Entry("migrate", "run", "Create or upgrade the ledger's tables"),
    "status": Entry("status", "run", "Where deliveries go, events per state, the oldest"),
    "dlq": Entry("dlq", "app", "The dead-letter queue: list, show, retry, purge, export"),
    "events": Entry("events", "run", "The order's events in the order they happened"),
    "publish": Entry("publish", "run", "Validate events and publish the valid ones"),
    "reconcile": Entry("reconcile", "run", "Compare the ledger with Gameball's records"),
    "redemptions": Entry("redemptions", "app", "Redeemed points parked for the operator"),
    "prune": Entry("prune", "run", "Remove delivered events (and their attempts)"),
    "sandbox": Entry("sandbox", "run", "Serve a local Gameball (v3.0 and v4.0 paths)"),
    "demo": Entry("demo", "run", "Start everything on embedded defaults"),
    "local": Entry("local", "app", "The embedded Redis and local state under GBQ_HOME"),
    "web": Entry("web", "run", "The console: counts, the breaker, the last hour"),
}


def load_command(name: str) -> click.Command:
    """The click command behind ``gbq <name>``, importing its module now."""
    entry = COMMANDS[name]
    target = getattr(importlib.import_module(f"{__name__}.{entry.module}"), entry.attribute)
    command: click.Command
    if isinstance(target, typer.Typer):
        target.rich_markup_mode = None  # plain help, as below
        command = typer.main.get_group(target)
    else:
        # Plain help (click's): no rich import to print it, and flags without Typer's
        # rich "<bool>" type column.
        single = typer.Typer(
            add_completion=False, pretty_exceptions_enable=False, rich_markup_mode=None
        )
        single.command(name)(target)
        command = typer.main.get_command(single)
    command.name = name
    return command


class LazyCommands(TyperGroup):
    """Typer's group, with each command's module imported on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: click.Context | None, cmd_name: str) -> click.Command | None:
        return load_command(cmd_name) if cmd_name in COMMANDS else None

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        with formatter.section("Commands"):
            formatter.write_dl([(name, entry.summary + "…") for name, entry in COMMANDS.items()])


HELP = "gameball-queue: report paid, cancelled and refunded orders to Gameball, durably."
app = typer.Typer(
    name="gbq",
    cls=LazyCommands,
    help=HELP,
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,  # expected failures print one line, not a traceback
    rich_markup_mode=None,  # plain help: the top level imports no command and no rich
)


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"gbq {_version()}")
        raise typer.Exit


def _version() -> str:
    from importlib.metadata import version  # noqa: PLC0415 - only for --version

    return version("gameball-queue")


@app.callback()
def _root(
    show_version: Annotated[
        bool,
        typer.Option(
            "--version",
            callback=_print_version,
            is_eager=True,
            help="Print gbq's version and exit.",
            show_default=False,
        ),
    ] = False,
) -> None:
    """gameball-queue: report paid, cancelled and refunded orders to Gameball, durably."""


LONG_RUNNING = {  # command → its role in JSON log lines
    "worker": "worker",
    "scheduler": "scheduler",
    "sandbox": "sandbox",
    "web": "console",
}


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    if args == ["--version"]:  # the cheapest answer: no Typer, no settings
        print(f"gbq {_version()}")  # noqa: T201
        return
    if not args or args[0] not in COMMANDS:  # help, or a usage error: no settings read
        app(args=args)
        return
    from producers.settings import SettingsError  # noqa: PLC0415
    from worker.settings import unknown_variable_lines  # noqa: PLC0415

    for line in unknown_variable_lines():  # a command runs: a typo is never silent
        _say(args[0], "warning", line)
    try:
        app(args=args)
    except SettingsError as error:  # raised wherever a command first reads its settings
        for line in error.lines:
            _say(args[0], "error", line)
        raise SystemExit(2) from None  # ExitCode.USAGE


def _say(command: str, level: str, line: str) -> None:
    """A line before the command could configure logging: JSON when a long-running
    process is told to log JSON (every line it writes is an object), else as typed."""
    role = LONG_RUNNING.get(command)
    if role is not None and os.environ.get("GBQ_LOG_FORMAT", "").strip().lower() == "json":
        from worker.process.logs import json_line  # noqa: PLC0415

        print(json_line(role, level.upper(), line), file=sys.stderr)  # noqa: T201
    else:
        typer.echo(f"{level}: {line}", err=True)


__all__ = ["COMMANDS", "app", "load_command", "main"]
