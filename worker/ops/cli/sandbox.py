"""``gbq sandbox``: serve the local Gameball."""

from __future__ import annotations

import ipaddress
import os
from decimal import Decimal, InvalidOperation
from typing import Annotated, Literal

import typer

from worker.ops.cli.common import warn
from worker.process.logs import configure, say
from worker.sandbox.app import ErrorStyle, SandboxConfig
from worker.sandbox.keys import SANDBOX_API_KEY, SANDBOX_SECRET_KEY
from worker.sandbox.rules import CashbackRules


def _decimal_map(
    values: list[str], option: str, form: str, minimum: Decimal, prefixes: tuple[str, ...] = ()
) -> dict[str, Decimal]:
    """``NAME=NUMBER`` options as a dict, refusing anything else with the expected form."""
    found: dict[str, Decimal] = {}
    for value in values:
        name, _, number = value.partition("=")
        try:
            parsed = Decimal(number)
        except InvalidOperation:
            parsed = Decimal(-1)
        if not name or not parsed.is_finite() or parsed < minimum or not name.startswith(prefixes):
            raise typer.BadParameter(f"{value!r} is not {form}", param_hint=option)
        found[name] = parsed
    return found


_VERSIONS: dict[str, Literal["v3.0", "v4.0", "v4.1"]] = {v: v for v in ("v3.0", "v4.0", "v4.1")}


def _version(value: str) -> Literal["v3.0", "v4.0", "v4.1"]:
    if value not in _VERSIONS:
        raise typer.BadParameter("must be v3.0, v4.0 or v4.1", param_hint="--minimum-version")
    return _VERSIONS[value]


def run(
    port: Annotated[int, typer.Option(help="TCP port.", min=1, max=65535)] = 8099,
    host: Annotated[str, typer.Option(help="Address to bind; keep it on loopback.")] = "127.0.0.1",
    api_key: Annotated[str, typer.Option(help="APIKey the sandbox accepts.")] = SANDBOX_API_KEY,
    secret_key: Annotated[
        str, typer.Option(help="secretKey the sandbox accepts.")
    ] = SANDBOX_SECRET_KEY,
    seed: Annotated[
        int, typer.Option(help="Seed for injected faults (same seed, same faults).")
    ] = 0,
    points_per_unit: Annotated[
        float, typer.Option(help="Wallet points per currency unit paid.", min=0)
    ] = 1.0,
    min_order_value: Annotated[
        float, typer.Option(help="Orders paying less earn nothing.", min=0)
    ] = 0.0,
    max_cashback: Annotated[
        int | None, typer.Option(help="Most points one order can earn.", min=0)
    ] = None,
    category_rate: Annotated[
        list[str] | None,
        typer.Option(help="Points per unit for a line category, CATEGORY=RATE (repeatable)."),
    ] = None,
    campaign: Annotated[
        list[str] | None,
        typer.Option(
            help="A bonus campaign: product:ID=MULTIPLIER or category:NAME=MULTIPLIER "
            "(repeatable). Refunds take its points back only for the lines they name."
        ),
    ] = None,
    exclude_tax_shipping: Annotated[
        bool, typer.Option(help="Reward total_paid minus tax and shipping.")
    ] = False,
    rate_limit_per_s: Annotated[
        int, typer.Option(help="Gameball's per-second limit (0: off).", min=0)
    ] = 30,
    rate_limit_per_30s: Annotated[
        int, typer.Option(help="Gameball's per-30-second limit (0: off).", min=0)
    ] = 360,
    shared_rate_limit: Annotated[
        bool, typer.Option(help="One budget for orders and transactions instead of one each.")
    ] = False,
    error_style: Annotated[
        str,
        typer.Option(help="HTTP statuses for business errors: v4 (400/404/422) or v2 (400/402)."),
    ] = "v4",
    minimum_version: Annotated[
        str,
        typer.Option(
            help="Refuse API versions older than this (403, code 1002), as an account that "
            "sets a minimum version in Gameball's dashboard does: v3.0, v4.0 or v4.1."
        ),
    ] = "v3.0",
    hold_ttl_s: Annotated[
        float, typer.Option(help="How long a points hold lives (Gameball: 10 minutes).", min=0.1)
    ] = 600.0,
    strict_transaction_time: Annotated[
        bool,
        typer.Option(help="Answer 304 to two transactions of one player at the same instant."),
    ] = True,
) -> None:
    """Serve a local Gameball (v3.0 and v4.0 paths) with wallets, rules, limits and faults.

    Examples:

      gbq sandbox --port 8099

      gbq sandbox --points-per-unit 2 --category-rate shoes=5 --max-cashback 500

      curl -s localhost:8099/_sandbox/state
    """
    # The sandbox reads no other gbq setting: it runs beside any configuration.
    configure("sandbox", *_log_format_and_level(), [api_key, secret_key])
    if error_style not in ("v4", "v2"):
        raise typer.BadParameter("must be v4 or v2", param_hint="--error-style")
    style: ErrorStyle = "v4" if error_style == "v4" else "v2"
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = host == "localhost"
    if not loopback:
        warn(f"binding {host}, not loopback: anyone who reaches it can use it")
    rules = CashbackRules(
        points_per_unit=Decimal(str(points_per_unit)),
        min_order_value=Decimal(str(min_order_value)),
        max_cashback_per_order=max_cashback,
        category_rates=_decimal_map(
            category_rate or [], "--category-rate", "CATEGORY=RATE with a rate >= 0", Decimal(0)
        ),
        campaign_multipliers=_decimal_map(
            campaign or [],
            "--campaign",
            "product:ID=MULTIPLIER or category:NAME=MULTIPLIER with a multiplier >= 1",
            Decimal(1),
            ("product:", "category:"),
        ),
        exclude_tax_and_shipping=exclude_tax_shipping,
    )
    config = SandboxConfig(
        api_key=api_key,
        secret_key=secret_key,
        seed=seed,
        rules=rules,
        rate_limit_per_s=rate_limit_per_s,
        rate_limit_per_30s=rate_limit_per_30s,
        rate_limit_shared=shared_rate_limit,
        error_style=style,
        strict_transaction_time=strict_transaction_time,
        minimum_version=_version(minimum_version),
        hold_ttl_s=hold_ttl_s,
    )
    keys = "default sandbox keys" if api_key == SANDBOX_API_KEY else "the keys given"
    say(f"Gameball sandbox on http://{host}:{port} ({keys}; state at /_sandbox/state)")
    from worker.sandbox.server import serve  # noqa: PLC0415 - uvicorn loads only when serving

    serve(config, host=host, port=port)


def _log_format_and_level() -> tuple[str, str]:
    log_format = os.environ.get("GBQ_LOG_FORMAT", "").strip().lower()
    level = os.environ.get("GBQ_LOG_LEVEL", "").strip().upper()
    return (
        "json" if log_format == "json" else "text",
        level if level in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL") else "INFO",
    )
