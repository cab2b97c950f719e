"""``gbq publish FILE|-``: publish events from JSON, validated field by field."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from producers.events import Event, InvalidEventError, parse_event
from producers.publisher import Publisher, PublishError
from worker.cli.common import ExitCode, fail
from worker.settings import load_settings

BATCH = 500


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


def run(
    source: Annotated[
        str,
        typer.Argument(
            help="A file of JSON (one object, an array, or JSON lines), or - for standard input."
        ),
    ],
) -> None:
    """Validate events and publish the valid ones (Redis, or the local spool if Redis is
    down). Every refused event is reported with its fields; exit 1 if any was refused.

    Examples:

      gbq publish events.jsonl

      echo '{"kind": "paid", ...}' | gbq publish -
    """
    settings = load_settings()
    try:
        text = sys.stdin.read() if source == "-" else Path(source).read_text()
    except OSError as error:
        fail(f"cannot read {source}: {error.strerror}", ExitCode.USAGE)
    accepted: list[Event] = []
    refused = 0
    for where, record in _records(text):
        if isinstance(record, ValueError):
            typer.echo(f"refused {where}: not JSON ({record})", err=True)
            refused += 1
            continue
        try:
            accepted.append(parse_event(record))
        except InvalidEventError as error:
            typer.echo(f"refused {where}: {error}", err=True)
            refused += 1
    destinations: dict[str, int] = {}
    if accepted:
        try:
            with Publisher(settings) as publisher:
                for start in range(0, len(accepted), BATCH):
                    where = publisher.publish_many(accepted[start : start + BATCH])
                    destinations[where] = destinations.get(where, 0) + len(
                        accepted[start : start + BATCH]
                    )
        except (PublishError, RuntimeError) as error:
            fail(str(error))
    detail = ", ".join(f"{count} {where}" for where, count in destinations.items())
    typer.echo(
        f"accepted {len(accepted)}" + (f" ({detail})" if detail else "") + f", refused {refused}"
    )
    if refused or not accepted:
        raise typer.Exit(int(ExitCode.NOTHING))
