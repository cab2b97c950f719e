"""Events from a file for ``gbq publish`` and ``gbq dlq retry --replace``: one JSON object,
an array, or JSON lines; ``gbq dlq export`` lines (``{"event_id": …, "event": {…}}``) are
read as the events they carry, so an export can be corrected and published back."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import typer

from producers.events import Event, InvalidEventError, parse_event
from worker.cli.common import ExitCode, fail


def read_events(source: str) -> tuple[list[Event], int]:
    """The valid events of ``source`` (a path, or - for standard input) and how many were
    refused; each refusal is printed with where it was and its fields."""
    try:
        text = sys.stdin.read() if source == "-" else Path(source).read_text()
    except OSError as error:
        fail(f"cannot read {source}: {error.strerror}", ExitCode.USAGE)
    events: list[Event] = []
    refused = 0
    for where, record in _records(text):
        if isinstance(record, ValueError):
            typer.echo(f"refused {where}: not JSON ({record})", err=True)
            refused += 1
            continue
        try:
            events.append(parse_event(unwrapped(record)))
        except InvalidEventError as error:
            typer.echo(f"refused {where}: {error}", err=True)
            refused += 1
    return events, refused


def unwrapped(record: Any) -> Any:
    """An export line stands for its event."""
    if isinstance(record, dict) and "event_id" in record and isinstance(record.get("event"), dict):
        return record["event"]
    return record


def _records(text: str) -> list[tuple[str, Any]]:
    """(where, parsed JSON or the error) for a JSON object, a JSON array or JSON lines."""
    stripped = text.strip()
    if not stripped:
        return []
    try:
        whole = json.loads(stripped)
    except ValueError:
        whole = None
    if isinstance(whole, dict):
        return [("the document", whole)]
    if isinstance(whole, list):
        return [(f"item {n}", item) for n, item in enumerate(whole, 1)]
    records: list[tuple[str, Any]] = []
    for number, line in enumerate(text.splitlines(), 1):
        if line.strip():
            try:
                records.append((f"line {number}", json.loads(line)))
            except ValueError as error:
                records.append((f"line {number}", error))
    return records
