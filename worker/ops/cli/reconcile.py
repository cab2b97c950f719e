"""``gbq reconcile``: the ledger against Gameball's own records of each order and cashback,
and a customer's balance as Gameball holds it."""

from __future__ import annotations

import json
from dataclasses import asdict
from datetime import UTC, datetime
from typing import Annotated

import typer

from producers.events import parse_event
from producers.transport import redis_client
from worker.coordination.paced_reads import PacedReader
from worker.coordination.queue import RedisQueue
from worker.coordination.ratelimit import RateLimiter, RateLimits
from worker.flows.reconcile import (
    CONSISTENT,
    Finding,
    Verdict,
    holds_ours,
    ledger_view,
    order_views,
    reconcile,
)
from worker.gameball.client import GameballClient, GameballReadError
from worker.gameball.records import customer_balance, order_records, transaction_records
from worker.ledger.repository import Ledger
from worker.ops.cli.common import ExitCode, fail, ledger_engine, redis_url
from worker.ops.cli.tables import Column, Wide, show_id, table, table_console
from worker.rules.timespec import TimeSpecError, parse_moment
from worker.settings import Settings, load_settings

READ_WAIT_S = 30.0  # an operator's read waits for the shared limit rather than fail


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
    wide: Wide = False,
) -> None:
    """Compare the ledger with Gameball's records: each order's transactions and each
    cashback: agreed, missing at Gameball, applied but not recorded here, or unknown to
    gbq; with --customer, also the customer's balance at Gameball. Exit 1 when anything
    disagrees.

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
    cashbacks = (
        []
        if order
        else ledger.cashbacks_matching(
            customer_id=customer, since=since_at, until=until_at, limit=limit
        )
    )
    findings: list[Finding] = []
    balance: dict[str, object] | None = None
    limiter = RateLimiter(
        redis_client(redis_url(settings, must_answer=True), 10.0),
        RateLimits.from_settings(settings),
    )
    with GameballClient(settings) as client:
        gameball = PacedReader(client, limiter, READ_WAIT_S)  # the workers' limits, shared
        try:
            for order_id in orders:
                history = ledger.order_history(order_id)
                views = order_views(history.live, history.memory)
                records = order_records(gameball, order_id, settings.gameball_api_version)
                findings += reconcile(order_id, views, records)
            findings += _cashbacks(gameball, settings, cashbacks)
            if customer:
                balance = customer_balance(gameball, customer, settings.gameball_api_version)
        except GameballReadError as error:
            fail(f"cannot read Gameball's records: {error}")
    _print(findings, json_, wide=wide)
    if customer:
        _print_balance(customer, balance, json_)
    missing = [
        f.event_id for f in findings if f.verdict is Verdict.MISSING_AT_GAMEBALL and f.event_id
    ]
    if redrive and missing:
        queue = RedisQueue(redis_client(redis_url(settings, must_answer=True), 10.0))
        sent = queue.enqueue(ledger.redrive(missing, datetime.now(UTC)))
        typer.echo(f"re-driven: {sent} event(s) sent again", err=True)
    if any(f.verdict not in CONSISTENT for f in findings):
        raise typer.Exit(int(ExitCode.NOTHING))


def _cashbacks(
    gameball: PacedReader,
    settings: Settings,
    rows: list[tuple[str, str, str, str, int | None]],
) -> list[Finding]:
    """Each cashback against Gameball's transactions under its id (no order to read by):
    only a record of its customer and amount counts (another may hold the id)."""
    findings: list[Finding] = []
    for row in rows:
        view = ledger_view(*row)
        if view is None:
            continue
        event = parse_event(row[3], accepted=True)
        found = transaction_records(
            gameball, view.transaction_id, event.customer_id, settings.gameball_api_version
        )
        ours = [record for record in found if holds_ours(event, [record])]
        findings += reconcile(None, [view], ours)
    return findings


def _print_balance(customer: str, balance: dict[str, object] | None, as_json: bool) -> None:
    if as_json:
        typer.echo(json.dumps({"customer_id": customer, "gameball_balance": balance}))
    elif balance is None:
        typer.echo(f"balance of {customer} at Gameball: unknown customer")
    else:
        shown = ", ".join(
            f"{key} {balance[key]}"
            for key in (
                "totalPointsBalance",  # v4.x (openapi.json)
                "pointsBalance",  # v3.0
                "availablePointsBalance",
                "pendingPoints",
                "totalEarnedPoints",
            )
            if key in balance
        )
        typer.echo(f"balance of {customer} at Gameball: {shown or balance}")


def _print(findings: list[Finding], as_json: bool, *, wide: bool) -> None:
    if as_json:
        for finding in findings:
            typer.echo(json.dumps(asdict(finding)))
        return
    columns = [
        Column("order", "id"),
        Column("transaction", "id"),
        Column("event", "id"),
        Column("ledger"),
        Column("gameball"),
        Column("verdict"),
    ]
    made = table(f"reconciliation: {len(findings)} transaction(s)", columns, wide=wide)
    for f in findings:
        made.add_row(
            show_id(f.order_id or "(cashback)", wide=wide),
            show_id(f.transaction_id, wide=wide),
            show_id(f.event_id or "-", wide=wide),
            f.ledger_state or "-",
            "holds it" if f.at_gameball else "no record",
            f.verdict.value,
        )
    table_console(wide=wide).print(made)
