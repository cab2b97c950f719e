"""Logging for the long-running processes: text, or JSON lines (``GBQ_LOG_FORMAT=json``).

JSON lines carry ``event_id``, ``order_id``, ``attempt`` and ``outcome`` when the record
has them (the delivery log line does). Every line passes a last redaction of the
Gameball keys, should any code ever put one in a message.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import Any

from worker.gameball.client import Redactor
from worker.settings import Settings

FIELDS = ("event_id", "order_id", "attempt", "outcome")


class JsonFormatter(logging.Formatter):
    def __init__(self, redact: Redactor) -> None:
        super().__init__()
        self.redact = redact

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                line[name] = value
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return self.redact(json.dumps(line, default=str))


class RedactingFormatter(logging.Formatter):
    def __init__(self, fmt: str, redact: Redactor) -> None:
        super().__init__(fmt)
        self.redact = redact

    def format(self, record: logging.LogRecord) -> str:
        return self.redact(super().format(record))


def configure_logging(settings: Settings) -> None:
    """Root logging for this process, as the settings say."""
    redact = Redactor(
        [
            settings.gameball_api_key.get_secret_value(),
            settings.gameball_secret_key.get_secret_value(),
        ]
    )
    handler = logging.StreamHandler()
    if settings.log_format == "json":
        handler.setFormatter(JsonFormatter(redact))
    else:
        handler.setFormatter(
            RedactingFormatter(
                "%(asctime)s %(levelname)s %(processName)s %(name)s %(message)s", redact
            )
        )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(settings.log_level.upper())
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per call is too much
