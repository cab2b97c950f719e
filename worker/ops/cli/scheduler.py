"""``gbq scheduler``: the recovery and retry sweeps (one leader among any number)."""

from __future__ import annotations

import signal
import socket
import threading
from types import FrameType
from typing import Annotated

import typer
from sqlalchemy.exc import SQLAlchemyError

from producers.spool import Spool
from producers.transport import redis_client
from worker.coordination.scheduler_liveness import last_tick_age_s, schedulers
from worker.flows.scheduler import Scheduler
from worker.ledger.engine import create_ledger_engine
from worker.ledger.repository import Ledger
from worker.ops.cli.common import ExitCode, fail, ledger_engine, redis_url
from worker.ops.metrics import serve_metrics
from worker.process.logs import configure_logging, say
from worker.settings import Settings, load_settings, redact_url


def run(
    check: Annotated[
        bool,
        typer.Option(
            "--check",
            help="Do not run: exit 0 if a scheduler on this host is alive (its loop turned "
            "within three ticks), 1 if not. For a container's health check.",
        ),
    ] = False,
) -> None:
    """Re-send due retries, recover crashed deliveries, relay the spool and the outbox.

    Several may run for safety; one leads through a Redis lock. SIGTERM stops it cleanly.
    Also serves Prometheus metrics on GBQ_METRICS_HOST:GBQ_METRICS_PORT (/metrics).
    Settings: GBQ_SCHEDULER_TICK_S, GBQ_SCHEDULER_BATCH, GBQ_REDRIVE_AFTER_S, GBQ_LEASE_S.

    Examples:

      gbq scheduler

      gbq scheduler --check    # on the scheduler's host: is its loop alive?
    """
    settings = load_settings()
    if check:
        raise typer.Exit(int(_check(settings)))
    configure_logging(settings, "scheduler")
    engine = ledger_engine(settings)
    url = redis_url(settings, must_answer=False)
    outbox_url = settings.effective_outbox_url()
    try:
        outbox = (
            engine
            if outbox_url == settings.effective_database_url()
            else (create_ledger_engine(outbox_url))
        )
    except SQLAlchemyError as error:
        fail(f"cannot use the outbox database at {redact_url(outbox_url)}: {error}")
    if settings.metrics_port:
        try:
            serve_metrics(
                Ledger(engine),
                redis_client(url, 10.0),
                settings.metrics_host,
                settings.metrics_port,
                standbys_required=settings.ledger_standbys,
            )
        except OSError as error:
            fail(
                f"cannot serve metrics on {settings.metrics_host}:{settings.metrics_port} "
                f"({error.strerror}); set GBQ_METRICS_PORT (0 turns metrics off)"
            )
    scheduler = Scheduler(
        settings,
        ledger=Ledger(engine),
        redis_client=redis_client(url, 10.0),
        spool=Spool(settings.effective_spool_path, replication=settings.replication),
        outbox_engine=outbox,
    )
    stop = threading.Event()

    def request_stop(signum: int, frame: FrameType | None) -> None:
        stop.set()

    for stop_signal in (signal.SIGTERM, signal.SIGINT):
        signal.signal(stop_signal, request_stop)
    say(f"scheduler {scheduler.owner} running (tick {settings.scheduler_tick_s}s)")
    scheduler.run(stop)


def _check(settings: Settings) -> ExitCode:
    """Whether a scheduler on this host is alive: its loop said so in Redis within three
    ticks (leading or standing by); the leader's last tick is shown too."""
    client = redis_client(redis_url(settings, must_answer=True), 5.0)
    try:
        host = socket.gethostname()
        here = [seen for seen in schedulers(client) if seen.host == host]
        ticked = last_tick_age_s(client)
    finally:
        client.close()
    for seen in here:
        role = "leads" if seen.leads else "stands by"
        typer.echo(f"scheduler {seen.owner} (pid {seen.pid}) on {host} is alive and {role}")
    if ticked is not None:
        typer.echo(f"the leader last finished a tick {ticked:.1f}s ago")
    if not here:
        typer.echo(f"error: no scheduler on {host} is alive (none said so in Redis)", err=True)
        return ExitCode.NOTHING
    return ExitCode.OK
