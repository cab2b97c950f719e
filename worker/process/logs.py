"""Logging for the long-running processes (worker, scheduler, sandbox, console): text, or
JSON lines (``GBQ_LOG_FORMAT=json``).

With JSON, every line a process writes is one object: ``ts``, ``level``, ``process`` (its
role: worker, scheduler, sandbox, console), ``pid``, ``process_name`` (a worker's pool
children are ``ForkPoolWorker-N``), ``logger``, ``message``, and ``event_id``,
``order_id``, ``attempt`` and ``outcome`` when the record has them (the delivery line
does). Python's warnings, Celery's banner facts and its shutdown notices come as such
lines too (``say``, ``celery_speaks_json``). Every line passes a last redaction of the
secrets, should any code ever put one in a message.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sys
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import SecretStr

from producers.wire import DELIVER_TASK
from worker.gameball.redaction import Redactor
from worker.settings import Settings

FIELDS = ("event_id", "order_id", "attempt", "outcome")
Role = Literal["worker", "scheduler", "sandbox", "console"]
log = logging.getLogger("gbq")
_state: dict[str, Any] = {"json": False, "formatter": None}


class JsonFormatter(logging.Formatter):
    def __init__(self, redact: Redactor, role: str) -> None:
        super().__init__()
        self.redact, self.role = redact, role

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname,
            "process": self.role,
            "pid": record.process,
            "process_name": record.processName,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                line[name] = value
        task = record.args if isinstance(record.args, Mapping) else None
        if "event_id" not in line and task is not None and task.get("name") == DELIVER_TASK:
            line["event_id"] = task.get("id")  # Celery's received/succeeded: task id = event id
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return self.redact(json.dumps(line, default=str))


class RedactingFormatter(logging.Formatter):
    def __init__(self, fmt: str, redact: Redactor) -> None:
        super().__init__(fmt)
        self.redact = redact

    def format(self, record: logging.LogRecord) -> str:
        return self.redact(super().format(record))


def configure_logging(settings: Settings, role: Role) -> None:
    """Root logging for this process, as the settings say."""
    secrets = [
        settings.gameball_api_key.get_secret_value(),
        settings.gameball_secret_key.get_secret_value(),
    ]
    if settings.web_password is not None:
        secrets.append(settings.web_password.get_secret_value())
    for url in (settings.redis_url, settings.database_url):  # passwords in URLs
        raw = url.get_secret_value() if isinstance(url, SecretStr) else url
        password = urlsplit(raw).password if raw else None
        if password:
            secrets.append(password)
    configure(role, settings.log_format, settings.log_level, secrets)


def configure(role: Role, log_format: str, level: str, secrets: Iterable[str]) -> None:
    """Root logging without the whole settings (the sandbox has keys of its own)."""
    redact = Redactor(list(secrets))
    handler = logging.StreamHandler()
    formatter: logging.Formatter
    if log_format == "json":
        formatter = JsonFormatter(redact, role)
    else:
        formatter = RedactingFormatter(
            "%(asctime)s %(levelname)s %(processName)s %(name)s %(message)s", redact
        )
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per call is too much
    logging.getLogger("alembic").setLevel(logging.WARNING)  # the schema check's chatter
    logging.captureWarnings(True)  # a warning is a log line, not text on stderr
    _state.update(json=log_format == "json", formatter=formatter)


def json_line(role: str, level: str, message: str) -> str:
    """One JSON line as the formatter writes it, for a process that could not configure
    logging (its settings are wrong): no secret is known yet, and the message has none."""
    record = logging.LogRecord("gbq", logging.getLevelName(level), "", 0, message, (), None)
    return JsonFormatter(Redactor([]), role).format(record)


def is_json() -> bool:
    """Whether this process writes JSON lines (``configure`` said so)."""
    return bool(_state["json"])


def say(message: str, *, level: int = logging.INFO) -> None:
    """A long-running process's own line (where it listens, that it runs, why it stops):
    as typed on stderr, or a log line with JSON."""
    if is_json():
        log.log(level, message)
    else:
        print(message, file=sys.stderr)  # noqa: T201 - the human form of a startup line


def celery_speaks_json() -> None:
    """Celery writes its shutdown notices ("worker: Warm shutdown (MainProcess)") straight
    to a file descriptor from its signal handlers; with JSON, each becomes a JSON line,
    written the same way (no logging lock is taken in a signal handler)."""
    from celery.apps import worker as celery_worker  # noqa: PLC0415 - Celery loads only here

    def safe_say(message: str, stream: Any = sys.__stderr__) -> None:
        formatter = _state["formatter"]
        record = logging.LogRecord("celery.apps.worker", logging.WARNING, "", 0, message, (), None)
        line = formatter.format(record) if formatter is not None else message
        # Best effort, as Celery's own: losing a notice must not stop a shutdown.
        with contextlib.suppress(OSError, AttributeError, ValueError):
            os.write(stream.fileno(), (line + "\n").encode())

    celery_worker.safe_say = safe_say
