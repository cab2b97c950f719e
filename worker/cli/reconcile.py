"""``gbq reconcile``: the ledger against Gameball's own records of each order."""

from __future__ import annotations

import json
from dataclasses import asdict
from datetime import UTC, datetime
from typing import Annotated

import typer
from rich.table import Table

from producers.transport import redis_client
from worker.cli.common import ExitCode, console, fail, ledger_engine, redis_url
from worker.gameball.client import GameballClient, GameballReadError
from worker.gameball.records import order_records
from worker.ledger.repository import Ledger
from worker.queue import RedisQueue
from worker.reconcile import CONSISTENT, Finding, Verdict, ledger_view, reconcile
from worker.settings import load_settings
from worker.timespec import TimeSpecError, parse_moment


def run(
    order: Annotated[
        list[str] | None, typer.Option("--order", help="An order id (repeatable).")
    ] = None,
    customer: Annotated[str | None, typer.Option(help="Every order of this customer.")] = None,
    since: Annotated[
        str | None, typer.Option(help="Orders with events since: a duration ago or ISO time.")
    ] = None,
    until: Annotated[str | None, typer.Option(help="… and before this.")] = None,
    limit: Annotated[int, typer.Option(help="At most this many orders.", min=1)] = 1000,
    redrive: Annotated[
        bool,
        typer.Option(help="Send again the delivered events Gameball holds no record of."),
    ] = False,
    json_: Annotated[bool, typer.Option("--json", help="JSON lines, one per finding.")] = False,
) -> None:
    """Compare the ledger with Gameball's records of each order (its transactions): agreed,
    missing at Gameball, applied but not recorded here, or unknown to gbq. Exit 1 when
    anything disagrees.

    Examples:

      gbq reconcile --order ORD-1

      gbq reconcile --customer c-42 --redrive

      gbq reconcile --since 1d --json
    """
    settings = load_settings()
    now = datetime.now(UTC)
    try:
        since_at = parse_moment(since, now) if since else None
        until_at = parse_moment(until, now) if until else None
    except TimeSpecError as error:
        raise typer.BadParameter(str(error)) from None
    if not (order or customer or since_at or until_at):
        raise typer.BadParameter("name --order, --customer or a time range (--since/--until)")
    ledger = Ledger(ledger_engine(settings))
    orders = list(order or ()) or ledger.orders_matching(
        customer_id=customer, since=since_at, until=until_at, limit=limit
    )
    findings: list[Finding] = []
    with GameballClient(settings) as gameball:
        for order_id in orders:
            views = [v for row in ledger.order_rows(order_id) if (v := ledger_view(*row))]
            try:
                records = order_records(gameball, order_id, settings.gameball_api_version)
            except GameballReadError as error:
                fail(f"cannot read order {order_id} at Gameball: {error}")
            findings += reconcile(order_id, views, records)
    _print(findings, json_)
    missing = [
        f.event_id for f in findings if f.verdict is Verdict.MISSING_AT_GAMEBALL and f.event_id
    ]
    if redrive and missing:
        queue = RedisQueue(redis_client(redis_url(settings, must_answer=True), 10.0))
        sent = queue.enqueue(ledger.redrive(missing, datetime.now(UTC)))
        typer.echo(f"re-driven: {sent} event(s) sent again", err=True)
    if any(f.verdict not in CONSISTENT for f in findings):
        raise typer.Exit(int(ExitCode.NOTHING))


def _print(findings: list[Finding], as_json: bool) -> None:
    if as_json:
        for finding in findings:
            typer.echo(json.dumps(asdict(finding)))
        return
    table = Table(title=f"reconciliation: {len(findings)} transaction(s)")
    for column in ("order", "transaction", "event", "ledger", "gameball", "verdict"):
        table.add_column(column, overflow="fold")
    for f in findings:
        table.add_row(
            f.order_id,
            f.transaction_id,
            f.event_id or "-",
            f.ledger_state or "-",
            "holds it" if f.at_gameball else "no record",
            f.verdict.value,
        )
    console().print(table)
