"""``gbq worker``: a Celery worker for ``gbq.deliver`` with the right options."""

from __future__ import annotations

from typing import Annotated

import typer

from producers.keys import QUEUE
from worker.ops.cli.common import env_help, ledger_engine, redis_url
from worker.process.logs import celery_speaks_json, configure_logging, is_json, say
from worker.settings import load_settings, redact_url


def run(
    concurrency: Annotated[
        int | None,
        typer.Option(
            help=env_help("Processes (or threads) delivering.", "GBQ_WORKER_CONCURRENCY"), min=1
        ),
    ] = None,
    pool: Annotated[str, typer.Option(help="Celery pool: prefork, threads or solo.")] = "prefork",
    loglevel: Annotated[str, typer.Option(help="Log level.")] = "INFO",
    hostname: Annotated[str | None, typer.Option(help="Celery node name.")] = None,
) -> None:
    """Deliver events: consume the `gbq` queue, call Gameball, keep the ledger.

    Checks that Redis answers and the ledger is migrated before it starts.

    Example:

      GBQ_REDIS_URL=redis://localhost:6379/0 gbq worker --concurrency 4
    """
    if pool not in ("prefork", "threads", "solo"):
        raise typer.BadParameter("must be prefork, threads or solo", param_hint="--pool")
    settings = load_settings()
    configure_logging(settings, "worker")  # its checks below speak as its log lines will
    ledger_engine(settings).dispose()
    redis_url(settings, must_answer=False)
    from worker.process.app import run_celery, worker_argv  # noqa: PLC0415 - Celery loads only here

    processes = concurrency or settings.worker_concurrency
    argv = worker_argv(processes, pool, loglevel, hostname)
    if is_json():
        # Celery's banner is text: quiet it, and say what it said as one line.
        argv = ["--quiet", *argv]
        celery_speaks_json()
        say(
            f"worker starting: {processes} {pool} process(es) on queue {QUEUE}, broker "
            f"{redact_url(settings.effective_redis_url())}, ledger "
            f"{redact_url(settings.effective_database_url())}"
        )
    raise typer.Exit(run_celery(argv))
