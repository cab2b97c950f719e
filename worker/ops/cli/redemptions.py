"""``gbq redemptions``: the redeemed points gbq could not carry to Gameball, parked for
the operator (worker.rules.redemption): list them, and mark them settled once done by hand."""

from __future__ import annotations

import json
from dataclasses import asdict
from datetime import UTC, datetime
from typing import Annotated

import typer

from producers.untrusted import printable
from worker.ledger.redemptions import ParkedRedemption, Redemptions
from worker.ledger.repository import Ledger
from worker.ops.cli.common import ExitCode, fail, ledger_engine
from worker.ops.cli.tables import Column, Wide, moment, show_id, table, table_console
from worker.settings import load_settings

app = typer.Typer(
    help="Redeemed points parked for the operator: the order went to Gameball without them "
    "(its hold expired with no value to hold again, or the customer was short of points). "
    "Uses GBQ_DATABASE_URL.",
    no_args_is_help=True,
)


def _redemptions() -> Redemptions:
    return Redemptions(Ledger(ledger_engine(load_settings())))


@app.command("list")
def list_(
    all_: Annotated[bool, typer.Option("--all", help="Resolved ones too.")] = False,
    limit: Annotated[int, typer.Option(help="At most this many.", min=1)] = 100,
    json_: Annotated[bool, typer.Option("--json", help="One JSON object per line.")] = False,
    wide: Wide = False,
) -> None:
    """Parked redemptions, oldest first. Exit 1 if there are none.

    Settle each in Gameball (a manual deduction of the points, or a redeem), then
    `gbq redemptions resolve ORDER`.

    Examples:

      gbq redemptions list

      gbq redemptions list --all --json | jq .order_id
    """
    rows = _redemptions().listed(include_resolved=all_, limit=limit)
    if json_:
        for row in rows:
            typer.echo(json.dumps(_as_json(row)))
    elif rows:
        columns = [
            Column("order", "id"),
            Column("customer", "id"),
            Column("worth", "number"),
            Column("hold", "id"),
            Column("reason"),
            Column("parked", "time"),
            Column("note"),
        ]
        made = table(f"parked redemptions ({len(rows)})", columns, wide=wide)
        for row in rows:
            made.add_row(
                show_id(printable(row.order_id), wide=wide),
                show_id(printable(row.customer_id), wide=wide),
                row.amount or "unknown",
                show_id(printable(row.hold_reference or "-"), wide=wide),
                row.reason,
                moment(row.parked_at, wide=wide),
                printable(row.resolution or row.detail, 200),
            )
        table_console(wide=wide).print(made)
    if not rows:
        typer.echo("no parked redemptions", err=True)
        raise typer.Exit(int(ExitCode.NOTHING))


@app.command()
def resolve(
    order: Annotated[str, typer.Argument(help="The order whose redemption you settled.")],
    note: Annotated[
        str, typer.Option(help="What you did, kept with it.")
    ] = "settled in Gameball by hand",
) -> None:
    """Mark an order's parked redemption settled, after deducting or redeeming its points
    in Gameball yourself. Exit 1 if the order has none parked.

    Example:

      gbq redemptions resolve ORD-1 --note "deducted 40 points in the dashboard"
    """
    done = _redemptions().resolve(order, note[:1000], datetime.now(UTC))
    if not done:
        fail(f"order {order!r} has no parked redemption", ExitCode.NOTHING)
    typer.echo(f"resolved: {done} parked redemption(s) of order {order}")


def _as_json(row: ParkedRedemption) -> dict[str, object]:
    data = asdict(row)
    for name in ("parked_at", "resolved_at"):
        moment = data[name]
        data[name] = None if moment is None else moment.isoformat()
    return data
