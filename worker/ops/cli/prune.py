"""``gbq prune``: retention by hand (the scheduler does it in small batches each tick)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated

import typer

from worker.ledger.repository import Ledger
from worker.ops.cli.common import ExitCode, fail, ledger_engine
from worker.rules.timespec import TimeSpecError, parse_duration
from worker.settings import load_settings


def run(
    older_than: Annotated[
        str | None,
        typer.Option(
            "--older-than",
            help="Delivered longer ago than this (30d, 12h); default GBQ_RETENTION_DAYS.",
        ),
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Only say how many would be removed.")
    ] = False,
    batch: Annotated[int, typer.Option(help="Rows per transaction.", min=1)] = 1000,
) -> None:
    """Remove delivered events (and their attempts) delivered before the retention window,
    archiving them first to GBQ_ARCHIVE_DIR when set. Dead letters are kept (`gbq dlq
    purge` removes those). What ordering needs of their orders is kept compactly.

    Examples:

      gbq prune --dry-run

      gbq prune --older-than 90d
    """
    settings = load_settings()
    try:
        window = (
            parse_duration(older_than) if older_than else timedelta(days=settings.retention_days)
        )
    except TimeSpecError as error:
        raise typer.BadParameter(str(error), param_hint="--older-than") from None
    if not window:
        fail("GBQ_RETENTION_DAYS is 0 (keep everything): pass --older-than", ExitCode.USAGE)
    ledger = Ledger(ledger_engine(settings))
    cutoff = datetime.now(UTC) - window
    if dry_run:
        count = ledger.count_prunable(cutoff)
        typer.echo(f"{count} delivered event(s) before {cutoff:%Y-%m-%d %H:%M} would be removed")
        return
    events = attempts = archived = 0
    while True:
        result = ledger.prune(cutoff=cutoff, limit=batch, archive_dir=settings.archive_dir)
        events, attempts = events + result.events, attempts + result.attempts
        archived += result.archived
        if result.events < batch:
            break
    where = f", archived to {settings.archive_dir}" if settings.archive_dir else ""
    typer.echo(f"removed {events} delivered event(s) and {attempts} attempt(s){where}")
