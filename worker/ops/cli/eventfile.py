"""Reading an event file (a path, or - for standard input) for ``gbq publish`` and ``gbq
dlq retry --replace``: its events, and a line on standard error for each part refused
(``worker.ops.eventfile`` says what is read and what is refused)."""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from producers.events import Event, InvalidEventError, parse_event
from worker.ops.cli.common import ExitCode, fail
from worker.ops.eventfile import MAX_FILE_BYTES, Refusal, records, unwrapped


def read_events(source: str) -> tuple[list[Event], int]:
    """The valid events of ``source`` (a path, or - for standard input) and how many were
    refused; each refusal is printed as ``refused FILE line N: why``."""
    name = "standard input" if source == "-" else source
    events: list[Event] = []
    refused = 0
    for record in records(_read(source, name)):
        if isinstance(record, Refusal):
            place = f"{name} {record.where}" if record.where else name
            typer.echo(f"refused {place}: {record.why}", err=True)
            refused += 1
            continue
        where, value = record
        try:
            events.append(parse_event(unwrapped(value)))
        except InvalidEventError as error:
            typer.echo(f"refused {name} {where}: {error}", err=True)
            refused += 1
    return events, refused


def _read(source: str, name: str) -> bytes:
    try:
        if source == "-":
            data = sys.stdin.buffer.read(MAX_FILE_BYTES + 1)
        else:
            with Path(source).open("rb") as file:
                data = file.read(MAX_FILE_BYTES + 1)
    except OSError as error:
        fail(f"cannot read {name}: {error.strerror or error}", ExitCode.USAGE)
    if len(data) > MAX_FILE_BYTES:
        fail(
            f"refused {name}: more than {MAX_FILE_BYTES // 2**20} MiB; split it "
            "(JSON lines: split -l 100000)",
            ExitCode.NOTHING,
        )
    return data
