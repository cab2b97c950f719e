"""``gbq web``: the operator console in the browser."""

from __future__ import annotations

from typing import Annotated

import typer

from producers.transport import redis_client
from worker.ledger.deadletters import DeadLetters
from worker.ledger.repository import Ledger
from worker.ops.cli.common import ExitCode, fail, ledger_engine, redis_url
from worker.process.logs import configure_logging, say
from worker.settings import load_settings


def run(
    host: Annotated[
        str | None,
        typer.Option(help="Address to listen on (default GBQ_WEB_HOST, 127.0.0.1)."),
    ] = None,
    port: Annotated[
        int | None,
        typer.Option(help="TCP port (default GBQ_WEB_PORT, 8765).", min=0, max=65535),
    ] = None,
) -> None:
    """The console: counts, the breaker, the last hour, dead letters (find, retry,
    replace, purge), order timelines and search. Listens on 127.0.0.1 unless told;
    anywhere else it needs GBQ_WEB_PASSWORD (basic auth, any user name).

    Examples:

      gbq web                     # then open http://127.0.0.1:8765

      GBQ_WEB_PASSWORD=... gbq web --host 0.0.0.0
    """
    settings = load_settings()
    configure_logging(settings, "console")
    bind_host = host or settings.web_host
    bind_port = settings.web_port if port is None else port
    try:
        from worker.ops.web.app import create_console  # noqa: PLC0415 - needs the [web] extra
        from worker.ops.web.security import ConsoleSecurityError, check_bind  # noqa: PLC0415
        from worker.ops.web.server import serve  # noqa: PLC0415
    except ImportError as error:
        fail(
            f"gbq web needs the web extra ({error.name} is missing): "
            "pip install 'gameball-queue[web]'",
            ExitCode.USAGE,
        )
    password = settings.web_password.get_secret_value() if settings.web_password else None
    try:
        check_bind(bind_host, password)
    except ConsoleSecurityError as error:
        fail(str(error), ExitCode.USAGE)
    settings = settings.model_copy(update={"web_host": bind_host})
    letters = DeadLetters(Ledger(ledger_engine(settings)))
    client = redis_client(redis_url(settings, must_answer=False), 5.0)
    where = f"http://{bind_host if ':' not in bind_host else f'[{bind_host}]'}:{bind_port}"
    auth = "basic auth (GBQ_WEB_PASSWORD)" if password else "no password: loopback only"
    say(f"gbq console on {where} ({auth}); Ctrl-C stops it")
    serve(create_console(settings, letters, client), host=bind_host, port=bind_port)
