"""Tables that fit 80 columns: ids cut in the middle (their two ends tell them apart),
times to the second in UTC; ``--wide`` shows every value whole (``--json`` too)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

ID_WIDTH = 22
WIDE_WIDTH = 400  # --wide: as wide as the values (a pager or a file scrolls sideways)

Wide = Annotated[
    bool,
    typer.Option("--wide", help="Show ids, times and messages whole (tables fit 80 columns)."),
]


def middle(text: str, width: int = ID_WIDTH) -> str:
    """``text`` cut in the middle to ``width`` characters: 'refunded:ORD-2…-000123:R1'."""
    if len(text) <= width:
        return text
    head = width // 2
    tail = width - 1 - head  # one character is the ellipsis
    return f"{text[:head]}…{text[len(text) - tail :]}" if tail else f"{text[:head]}…"


def moment(value: datetime, *, wide: bool) -> str:
    """A time as ISO-8601 in full with --wide, else 'YYYY-MM-DD HH:MM:SS' in UTC."""
    if wide:
        return value.isoformat()
    aware = value if value.tzinfo is not None else value.replace(tzinfo=UTC)
    return aware.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")


@dataclass(frozen=True)
class Column:
    name: str
    kind: str = "text"  # "id" and "time" never wrap; "text" folds; "number" is right-aligned


def table(title: str, columns: Sequence[Column], *, wide: bool) -> Table:
    made = Table(title=title)
    for column in columns:
        if column.kind in ("id", "time"):
            made.add_column(column.name, no_wrap=True, overflow="ellipsis" if not wide else "fold")
        elif column.kind == "number":
            made.add_column(column.name, justify="right", no_wrap=True)
        else:
            made.add_column(column.name, overflow="fold")
    return made


def show_id(text: str, *, wide: bool) -> str:
    return text if wide else middle(text)


def table_console(*, wide: bool) -> Console:
    """Output that shows data as it is (no emoji codes, no markup), as wide as asked."""
    return Console(emoji=False, markup=False, highlight=False, width=WIDE_WIDTH if wide else None)
