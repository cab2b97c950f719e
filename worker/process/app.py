"""The Celery application (``celery -A worker.process.app worker`` works; ``gbq worker`` is easier).

Settings that make Celery's Redis transport safe for this job, where Celery's defaults lose or
duplicate messages (docs/guarantees.md):
late acks plus ``task_reject_on_worker_lost`` (a killed child's message goes back), one
message prefetched per process, JSON only, explicit names. No task ever uses a countdown
or ETA: retries live in the ledger. The visibility timeout is therefore never what brings
work back; the scheduler's lease sweep is.
"""

from __future__ import annotations

import logging
import sys

import click
from celery import Celery
from celery.signals import setup_logging, worker_ready
from kombu.transport import TRANSPORT_ALIASES

from producers.keys import QUEUE
from producers.redis_url import is_sentinel_url
from worker.process.logs import configure_logging
from worker.process.transport import SENTINEL_OPTION
from worker.settings import Settings, SettingsError, load_settings

log = logging.getLogger("gbq.worker")


# kombu lets a URL's ``name+`` prefix choose the transport over ``broker_transport``: the
# unix-socket spelling ``redis+socket://`` chose kombu's own, unscreened transport, and one
# garbage message ended the worker. So every URL is handed over as ``gbq+URL``: our
# transport whatever the form, reading the URL with redis-py's parser, as publishers do.
TRANSPORT_ALIAS = "gbq"
TRANSPORT_ALIASES.setdefault(TRANSPORT_ALIAS, "worker.process.transport:Transport")


# A Sentinel URL names several hosts, which kombu's and Celery's URL readers (the banner,
# the sanitised URL in logs) cannot take apart: Celery gets a placeholder URL, and the
# transport the real one in a transport option, named so that Celery masks it wherever it
# shows its configuration (a ``SECRET`` in the name: it may hold a password).
SENTINEL_BROKER_URL = f"{TRANSPORT_ALIAS}://redis-sentinel/"


TRANSPORT_OPTIONS: dict[str, object] = {
    "visibility_timeout": 3600,
    "socket_timeout": 15,
    "socket_connect_timeout": 5,
}


def broker_url(redis_url: str) -> str:
    """The Redis URL (``redis://``, ``rediss://``, ``unix://``) as Celery's broker URL; for
    a Sentinel URL, a placeholder (the URL goes in :func:`broker_transport_options`)."""
    if is_sentinel_url(redis_url):
        return SENTINEL_BROKER_URL
    return f"{TRANSPORT_ALIAS}+{redis_url}"


def broker_transport_options(redis_url: str) -> dict[str, str]:
    return {SENTINEL_OPTION: redis_url} if is_sentinel_url(redis_url) else {}


class GbqCelery(Celery):  # type: ignore[misc]
    def on_configure(self) -> None:
        # Resolved on first use, so importing this module starts nothing.
        settings = settings_or_exit()
        url = settings.effective_redis_url()
        self.conf.broker_url = broker_url(url)
        self.conf.broker_transport_options = {
            **TRANSPORT_OPTIONS,
            **broker_transport_options(url),
        }


def settings_or_exit() -> Settings:
    """The settings, or (``celery -A worker.process.app …`` has no other place to say it) one line
    per bad variable on stderr and exit 2, as ``gbq`` does."""
    try:
        return load_settings()
    except SettingsError as error:
        for line in error.lines:
            print(f"error: {line}", file=sys.stderr)  # noqa: T201 - before logging exists
        raise SystemExit(2) from None


app = GbqCelery("gbq", set_as_current=False)
app.conf.update(
    include=["worker.process.tasks"],
    task_acks_late=True,
    task_reject_on_worker_lost=True,
    task_acks_on_failure_or_timeout=True,  # a failed run is recovered by the ledger sweeps
    worker_prefetch_multiplier=1,
    task_serializer="json",
    result_serializer="json",
    accept_content=["json"],
    task_ignore_result=True,
    task_default_queue=QUEUE,
    task_create_missing_queues=True,
    broker_connection_retry_on_startup=True,
    # Wait for Redis as long as it takes (every 2 s at most, worker.process.consumer), rather than
    # exit after 100 tries; supervisor would restart us anyway.
    broker_connection_max_retries=None,
    broker_transport_options=TRANSPORT_OPTIONS,
    # A lost broker connection must not kill deliveries mid-call: a redelivered copy
    # cannot run in parallel anyway (claims are conditional on the ledger).
    worker_cancel_long_running_tasks_on_connection_loss=False,
    broker_transport="worker.process.transport:Transport",
    # Off: three Redis publishes per task (received, started, succeeded) cost about 5 % of
    # a worker's CPU, and the ledger, metrics and console already say what happened.
    # Flower turns them on at runtime (`celery -A worker.process.app control enable_events`).
    worker_send_task_events=False,
    worker_hijack_root_logger=False,
    worker_consumer="worker.process.consumer:DeadLetteringConsumer",
)


@setup_logging.connect  # type: ignore[untyped-decorator]
def _configure_logging(**_: object) -> None:
    """Connected, this replaces Celery's own logging setup with ours (text or JSON)."""
    configure_logging(settings_or_exit(), "worker")


@worker_ready.connect  # type: ignore[untyped-decorator]
def _say_where(**_: object) -> None:
    """Where this worker sends, in its first lines: base URL, API version and a key
    fingerprint (never the key), and where local state lives."""
    settings = settings_or_exit()
    log.info("delivering to %s; local state in %s", settings.endpoint(), settings.home)


def worker_argv(
    concurrency: int, pool: str, loglevel: str, hostname: str | None, queue: str = QUEUE
) -> list[str]:
    argv: list[str] = [
        "worker",
        "-Q",
        queue,
        "--concurrency",
        str(concurrency),
        "--pool",
        pool,
        "--loglevel",
        loglevel,
        "--without-gossip",
        "--without-mingle",
    ]
    if hostname:
        argv += ["--hostname", hostname]
    return argv


def run_celery(argv: list[str]) -> int:
    """Run Celery's command line on our app and return its exit status.

    ``app.worker_main`` and ``app.start`` both drop it: Celery calls click with
    ``standalone_mode=False``, in which click *returns* the status of ``ctx.exit(1)``
    ("Unrecoverable error") and Celery ignores the return value, so a worker whose
    consumer died exited 0 and restart-on-failure policies never fired.
    """
    from celery.bin.celery import celery as command  # noqa: PLC0415 - heavy, only here

    command.params[0].default = app
    try:
        status = command.main(args=argv, standalone_mode=False)
    except click.exceptions.Exit as done:
        status = done.exit_code
    finally:
        command.params[0].default = None
    return status if isinstance(status, int) else 0


__all__ = ["app", "broker_transport_options", "broker_url", "run_celery", "worker_argv"]
