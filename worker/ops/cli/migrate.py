"""``gbq migrate``: bring the ledger's schema up to date."""

from __future__ import annotations

import typer

from worker.ledger.schema import migrate
from worker.ops.cli.common import ledger_engine
from worker.settings import load_settings, redact_url


def run() -> None:
    """Create or upgrade the ledger's tables (GBQ_DATABASE_URL; default SQLite in GBQ_HOME).

    Run it once before starting workers and the scheduler, and after every upgrade;
    they refuse to start on a ledger that is behind.

    Example:

      GBQ_DATABASE_URL=postgresql://gbq@db/gbq gbq migrate
    """
    settings = load_settings()
    settings.home.mkdir(parents=True, exist_ok=True)
    engine = ledger_engine(settings, migrated=False)
    before, after = migrate(engine)
    where = redact_url(settings.effective_database_url())
    if before == after:
        typer.echo(f"ledger at {where} is up to date (revision {after})")
    else:
        typer.echo(f"ledger at {where} migrated from {before or 'empty'} to {after}")
