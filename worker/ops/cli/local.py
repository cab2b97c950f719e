"""``gbq local``: the state an embedded setup keeps in the background, and stopping it.

With ``GBQ_REDIS_URL`` unset, the first command that needs Redis starts a private
``redis-server`` under ``GBQ_HOME`` and leaves it running, so that publishers, workers
and the scheduler share it. This is how to see it and stop it.
"""

from __future__ import annotations

from typing import Annotated

import typer

from producers import embedded_redis
from worker.ops.cli.common import sqlite_file
from worker.settings import load_settings

app = typer.Typer(help="The embedded Redis and local state under GBQ_HOME.", no_args_is_help=True)


@app.command("status")
def status(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")] = False,
) -> None:
    """Where local state lives and whether the embedded Redis runs."""
    settings = load_settings()
    home = settings.home
    running = embedded_redis.answers(embedded_redis.socket_url(home))
    ledger = sqlite_file(settings.effective_database_url())
    facts = {
        "home": str(home),
        "embedded_redis": "running" if running else "stopped",
        "redis_in_use": "GBQ_REDIS_URL" if settings.redis_url else "embedded",
        "ledger": str(ledger) if ledger else "GBQ_DATABASE_URL",
        "spool": str(settings.effective_spool_path),
    }
    if as_json:
        import json  # noqa: PLC0415 - only for --json

        typer.echo(json.dumps(facts))
        return
    for key, value in facts.items():
        typer.echo(f"{key.replace('_', ' ')}: {value}")


@app.command("stop")
def stop() -> None:
    """Stop the embedded Redis under GBQ_HOME (its data is kept, on disk with AOF)."""
    home = load_settings().home
    if embedded_redis.stop(home):
        typer.echo(f"stopped the embedded Redis in {home}")
    else:
        typer.echo(f"no embedded Redis running in {home}")
