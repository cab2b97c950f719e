"""``gbq events ORDER_ID``: one order's timeline across all its events."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from producers.untrusted import UnreadableError, load_json, printable
from worker.ledger.deadletters import DeadLetters
from worker.ledger.repository import Ledger
from worker.ops.cli.common import ExitCode, fail, ledger_engine
from worker.ops.cli.tables import Column, Wide, moment, show_id, table, table_console
from worker.settings import load_settings


def _content(payload: str | None) -> object:
    if payload is None:
        return None
    try:
        return load_json(payload)
    except UnreadableError:
        return printable(payload, 10_000)


def run(
    order_id: Annotated[str, typer.Argument(help="The shop's order id, e.g. ORD-1.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")] = False,
    wide: Wide = False,
) -> None:
    """The order's events in the order they happened, each with every attempt and
    Gameball's answers. Exit 1 if the ledger has no event of that order.

    Example:

      gbq events ORD-2024-000123
    """
    timeline = DeadLetters(Ledger(ledger_engine(load_settings()))).timeline(order_id)
    if not timeline:
        fail(f"no events of order {order_id} in the ledger", ExitCode.NOTHING)
    if as_json:
        typer.echo(
            json.dumps(
                [
                    {
                        "event_id": e.event_id,
                        "kind": e.kind,
                        "state": e.state,
                        "dead_reason": e.dead_reason,
                        "occurred_at": e.occurred_at.isoformat(),
                        "conflicts": e.conflicts,
                        "conflicting_content": _content(e.conflict_payload),
                        "attempts": [
                            {
                                "attempt": a.attempt_no,
                                "at": a.started_at.isoformat(),
                                "outcome": a.outcome,
                                "reason": a.reason,
                                "status": a.status,
                                "code": a.code,
                                "message": a.message,
                            }
                            for a in attempts
                        ],
                    }
                    for e, attempts in timeline
                ],
                indent=2,
            )
        )
        return
    columns = [
        Column("when", "time"),
        Column("event", "id"),
        Column("state"),
        Column("#", "number"),
        Column("answer"),
    ]
    made = table(f"order {order_id}", columns, wide=wide)
    for event, attempts in timeline:
        state = event.state + (f" ({event.dead_reason})" if event.dead_reason else "")
        made.add_row(
            moment(event.occurred_at, wide=wide), show_id(event.event_id, wide=wide), state, "", ""
        )
        if event.conflicts:
            made.add_row(
                moment(event.conflict_at, wide=wide) if event.conflict_at else "",
                "",
                "conflict",
                "",
                f"published {event.conflicts} more time(s) with other content; the first "
                f"is kept. Latest other: {printable(event.conflict_payload or '', 300)}",
            )
        for attempt in attempts:
            answer = f"{attempt.outcome}/{attempt.reason}"
            if attempt.status:
                answer += f" HTTP {attempt.status}"
            if attempt.code:
                answer += f" code {attempt.code}"
            if attempt.message and attempt.outcome != "delivered":
                answer += f": {printable(attempt.message, 80)}"
            made.add_row(
                moment(attempt.started_at, wide=wide), "", "", str(attempt.attempt_no), answer
            )
    table_console(wide=wide).print(made)
