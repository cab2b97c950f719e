"""The sandbox: a local Gameball served over HTTP (docs/sandbox.md).

Gameball's v3.0 surface that this project uses (and the same under v4.0 and v4.1 names):

    POST /api/v3.0/integrations/order                      track a paid order
    POST /api/v3.0/integrations/order/cashback             preview an order's points
    POST /api/v3.0/integrations/transaction/cashback       cashback on an amount
    POST /api/v3.0/integrations/transaction/hold           hold points (DELETE …/hold/{ref})
    POST /api/v3.0/integrations/transaction/refund         full or partial refund
    GET  /api/v3.0/integrations/player/{id}/balance
    GET  /api/v3.0/integrations/order/{id}/transactions

and the sandbox's own controls (no keys; it binds to loopback):

    GET  /_sandbox/health      GET /_sandbox/state[?transactions=0]
    GET|POST /_sandbox/faults  GET|POST /_sandbox/rules   POST /_sandbox/reset
    GET  /_sandbox/requests?since=N&limit=M   (the request log)

Every API call goes through the same pipeline, in this order: latency, outage (503),
keys (403 missing / 401 wrong), account disabled (code 50), forced 429, Gameball's rate
limits (429), injected 5xx, validation (4/5/7), the account's rules (200 or 101/302/304/
305/306), and last "apply then drop the response".
"""

from __future__ import annotations

import asyncio
import contextvars
import hmac
import json
import re
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field, replace
from decimal import Decimal
from typing import Annotated, Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from worker.sandbox.account import Account, number
from worker.sandbox.faults import FaultInjector
from worker.sandbox.keys import SANDBOX_API_KEY, SANDBOX_SECRET_KEY
from worker.sandbox.parsing import (
    INVALID_VALUE,
    MISSING_ARGUMENTS,
    NULL_ARGUMENTS,
    GameballError,
    parse_cashback,
    parse_hold,
    parse_order,
    parse_refund,
)
from worker.sandbox.ratelimit import GameballRateLimits
from worker.sandbox.rules import CashbackRules, order_earning

# When the request being answered came in (before any injected latency): the request log
# keeps it, so a benchmark can tell when a call arrived, not only when it was answered.
_RECEIVED: contextvars.ContextVar[float | None] = contextvars.ContextVar(
    "sandbox_received", default=None
)

Operation = Literal["order", "refund", "cashback", "hold"]
ErrorStyle = Literal["v4", "v2"]

# v3 code → (v4 code, HTTP status as v4 documents it). v3's own statuses are not public.
_V4_ERRORS: Final[Mapping[int, tuple[int, int]]] = {
    MISSING_ARGUMENTS: (3000, 400),
    NULL_ARGUMENTS: (3001, 422),
    INVALID_VALUE: (3003, 422),
    13: (4500, 400),
    50: (6000, 422),
    51: (6001, 422),
    101: (7000, 404),
    302: (9001, 422),
    303: (9002, 404),
    304: (9003, 422),
    305: (9004, 422),
    306: (9005, 404),
}
_V4_STATUS: Final[Mapping[int, int]] = {
    1002: 403,
    3016: 400,
    9006: 404,
    9007: 422,
    9008: 422,
}
V4_CODES_FROM: Final = 1000  # v4's codes are four digits (status-error-codes.mdx)
# The categories of status-error-codes.mdx, by the code's thousands.
_V4_TYPES: Final[Mapping[int, str]] = {
    1: "Authentication Error",
    2: "Request Error",
    3: "Payload Error",
    4: "General Error",
    5: "Server Error",
    6: "Configurations Error",
    7: "Customer Error",
    8: "Subscription Error",
    9: "Transactions Error",
}
_VALIDATION_CODES: Final = frozenset({MISSING_ARGUMENTS, NULL_ARGUMENTS, INVALID_VALUE, 13})
VERSIONS: Final = ("v3.0", "v4.0", "v4.1")
V4_LIST_LIMIT: Final = 200  # GET transactions: "a maximum limit of 200 transactions per page"


@dataclass(frozen=True)
class SandboxConfig:
    api_key: str = SANDBOX_API_KEY
    secret_key: str = SANDBOX_SECRET_KEY
    seed: int = 0
    rules: CashbackRules = field(default_factory=CashbackRules)
    rate_limit_per_s: int = 30  # 0 switches the window off
    rate_limit_per_30s: int = 360
    rate_limit_shared: bool = False  # one budget for orders and transactions together
    # The dashboard's "minimum allowed version" (introduction-v4.1.mdx): older calls refused.
    minimum_version: Literal["v3.0", "v4.0", "v4.1"] = "v3.0"
    hold_ttl_s: float = 600.0  # Gameball's default hold lifetime: 10 minutes
    error_style: ErrorStyle = "v4"  # HTTP statuses: v4's (400/404/422) or v2's (400/402)
    strict_transaction_time: bool = True  # 304 for two transactions of a player at one instant


@dataclass(frozen=True)
class Reply:
    status: int
    body: dict[str, Any] | None
    headers: Mapping[str, str] = field(default_factory=dict)
    drop: bool = False


class RulesUpdate(BaseModel):
    """``POST /_sandbox/rules``: the fields sent replace the current ones."""

    model_config = ConfigDict(extra="forbid")

    points_per_unit: Decimal = Field(default=Decimal(1), ge=0)
    min_order_value: Decimal = Field(default=Decimal(0), ge=0)
    max_cashback_per_order: int | None = Field(default=None, ge=0)
    category_rates: dict[str, Decimal] = Field(default_factory=dict)
    exclude_tax_and_shipping: bool = False
    # "product:<id>" or "category:<name>" → a points multiplier (a bonus campaign)
    campaign_multipliers: dict[
        Annotated[str, StringConstraints(pattern=r"^(product|category):.+$")],
        Annotated[Decimal, Field(ge=1)],
    ] = Field(default_factory=dict)
    full_refund_at_paid: bool = True


def rules_json(rules: CashbackRules) -> dict[str, Any]:
    return {
        "points_per_unit": str(rules.points_per_unit),
        "min_order_value": str(rules.min_order_value),
        "max_cashback_per_order": rules.max_cashback_per_order,
        "category_rates": {name: str(rate) for name, rate in rules.category_rates.items()},
        "exclude_tax_and_shipping": rules.exclude_tax_and_shipping,
        "campaign_multipliers": {
            key: str(value) for key, value in rules.campaign_multipliers.items()
        },
        "full_refund_at_paid": rules.full_refund_at_paid,
    }


class Sandbox:
    """Everything the app serves, minus HTTP: synchronous and deterministic per seed."""

    def __init__(self, config: SandboxConfig, clock: Callable[[], float] = time.monotonic):
        self.config = config
        self._clock = clock
        self.faults = FaultInjector(config.seed)
        self.reset()

    def reset(self) -> None:
        config = self.config
        self.account = Account(
            config.rules,
            strict_transaction_time=config.strict_transaction_time,
            hold_ttl_s=config.hold_ttl_s,
            clock=self._clock,
        )
        self.faults.reset()
        self.limits = GameballRateLimits(
            config.rate_limit_per_s, config.rate_limit_per_30s, self._clock
        )
        # Customers GET: 100/s and 1,200 per 30 s where the others have 30 and 360
        # (rate-limiting.mdx), scaled with the configured limits.
        self.customer_read_limits = GameballRateLimits(
            config.rate_limit_per_s * 100 // 30, config.rate_limit_per_30s * 10 // 3, self._clock
        )
        self.request_log: list[dict[str, Any]] = []
        self.counts: Counter[str] = Counter()

    def set_rules(self, update: Mapping[str, Any]) -> CashbackRules:
        parsed = RulesUpdate.model_validate(update)
        current = self.account.rules
        changes = {name: getattr(parsed, name) for name in parsed.model_fields_set}
        self.account.rules = replace(current, **changes)
        self.config = replace(self.config, rules=self.account.rules)
        return self.account.rules

    # --- the API ----------------------------------------------------------------------------

    def refuse_version(self, version: str) -> Reply | None:
        """An account with a minimum version refuses older calls. Gameball documents the
        rejection, not its answer: 403 with code 1002 (Forbidden) is this sandbox's guess."""
        if VERSIONS.index(version) >= VERSIONS.index(self.config.minimum_version):
            return None
        message = (
            f"API version {version} is not allowed: the minimum is {self.config.minimum_version}"
        )
        return Reply(403, {"code": 1002, "message": message})

    def write(
        self, operation: Operation, v4: bool, path: str, headers: Mapping[str, str], raw: bytes
    ) -> Reply:
        loose = _loose_json(raw)
        reply = self._write(operation, v4, headers, raw)
        self._log(path, reply, loose, applied=reply.status == 200)
        return reply

    def _write(
        self, operation: Operation, v4: bool, headers: Mapping[str, str], raw: bytes
    ) -> Reply:
        faults = self.faults
        if faults.config.outage:
            return Reply(503, {"code": 5003, "message": "Service Unavailable"})
        refused = self._check_keys(headers, need_secret=True)
        if refused is not None:
            return refused
        if faults.config.account_disabled:
            return self._error(GameballError(50, "Gameball Is Disabled"), v4)
        try:
            if faults.rate_limited():
                after = faults.config.retry_after_s
                extra = {} if after is None else {"Retry-After": f"{after:g}"}
                return Reply(429, {"message": "Too Many Requests"}, extra)
            bucket = (
                "all"
                if self.config.rate_limit_shared
                else ("orders" if operation == "order" else "transactions")
            )
            if not self.limits.allow(bucket):
                return Reply(429, {"message": "Too Many Requests"})
            if faults.server_error():
                status = faults.config.error_status
                return Reply(status, {"code": 5000, "message": "Internal Server Error"})
            injected = faults.rejected()
            if injected is not None:
                own = injected if injected >= V4_CODES_FROM else None  # a v4 code as it is
                error = GameballError(injected, f"Injected error {injected}", v4_code=own)
                return self._error(error, v4)
            body = self._apply(operation, v4, _parse_json(raw))
        except GameballError as error:
            return self._error(error, v4)
        return Reply(200, body, drop=faults.drop_after_apply())

    def _apply(self, operation: Operation, v4: bool, body: object) -> dict[str, Any]:
        account = self.account
        if operation == "order":
            order = parse_order(body, v4=v4)
            result, player = account.track_order(order), order.player_id
        elif operation == "refund":
            refund = parse_refund(body, v4=v4)
            result, player = account.refund(refund), refund.player_id
        elif operation == "hold":
            hold = parse_hold(body, v4=v4)
            result, player = account.hold(hold), hold.player_id
        else:
            cashback = parse_cashback(body, v4=v4)
            result, player = account.cashback(cashback), cashback.player_id
            if v4:  # openapi.json: the v4 cashback answer
                result = {
                    "gameballTransactionId": result["gameballTransactionId"],
                    "rewardAmount": number(cashback.amount),
                    "rewardEquivalentPoints": result["rewardedPoints"],
                }
        if operation == "refund" and v4:  # openapi.json: refundTransactionId, no customerId
            return {"refundTransactionId": result.pop("transactionId"), **result}
        return {("customerId" if v4 else "playerUniqueId"): player, **result}

    def release(self, v4: bool, headers: Mapping[str, str], reference: str) -> Reply:
        refused = self._check_keys(headers, need_secret=True)
        if refused is not None:
            return refused
        try:
            return Reply(200, self.account.release_hold(reference))
        except GameballError as error:
            return self._error(error, v4)

    def read(
        self,
        what: Literal["balance", "transactions"],
        v4: bool,
        path: str,
        headers: Mapping[str, str],
        ident: str,
    ) -> Reply:
        reply = self._read(what, v4, headers, ident)
        self._log(path, reply, None, applied=False)
        return reply

    def _read(
        self,
        what: Literal["balance", "transactions"],
        v4: bool,
        headers: Mapping[str, str],
        ident: str,
    ) -> Reply:
        refused = self._refuse_read(headers)
        if refused is not None:
            return refused
        limited = (
            self._read_limited(self.customer_read_limits, "customers_get")
            if what == "balance"
            else self._read_limited(self.limits, "orders")  # an order's records: Orders, any
        )
        if limited is not None:
            return limited
        try:
            if what == "balance":
                return Reply(200, self.account.balance(ident, v4=v4))
            return Reply(200, self.account.order_transactions(ident, v4=v4))
        except GameballError as error:
            return self._error(error, v4)

    def _read_limited(self, limits: GameballRateLimits, bucket: str) -> Reply | None:
        """A read over its resource's limit is 429 (reads count like writes)."""
        if self.config.rate_limit_shared:
            bucket = "all"
        return None if limits.allow(bucket) else Reply(429, {"message": "Too Many Requests"})

    def _refuse_read(self, headers: Mapping[str, str]) -> Reply | None:
        """A read during an outage (503) or without the keys; None: go on."""
        if self.faults.config.outage:
            return Reply(503, {"code": 5003, "message": "Service Unavailable"})
        return self._check_keys(headers, need_secret=True)

    def list_transactions(
        self, v4: bool, path: str, headers: Mapping[str, str], query: Mapping[str, str]
    ) -> Reply:
        reply = self._list_transactions(v4, headers, query)
        self._log(path, reply, None, applied=False)
        return reply

    def _list_transactions(
        self, v4: bool, headers: Mapping[str, str], query: Mapping[str, str]
    ) -> Reply:
        """v3 ``GET transaction/list?transactionId=…&page=…&limit=…`` (the SDKs' filter) and
        v4 ``GET transactions?customerId=…&startAfter=…&limit=…`` (openapi.json: limit 50 by
        default, at most 200; parameters it does not document are ignored)."""
        refused = self._refuse_read(headers) or self._read_limited(self.limits, "transactions_get")
        if refused is not None:
            return refused
        try:
            if v4:
                listed = self.account.list_transactions_v4(
                    customer_id=query.get("customerId") or None,
                    start_after=_query_int(query, "startAfter", 0, 0, 2**63),
                    limit=min(_query_int(query, "limit", 50, 1, 10**9), V4_LIST_LIMIT),
                )
                return Reply(200, listed)
            limit = _query_int(query, "limit", 20, 1, 100)
            listed = self.account.list_transactions(
                transaction_id=query.get("transactionId") or None,
                player_id=query.get("playerUniqueId") or None,
                offset=(_query_int(query, "page", 1, 1, 10**9) - 1) * limit,
                limit=limit,
            )
            return Reply(200, listed)
        except GameballError as error:
            return self._error(error, v4)

    def preview(self, v4: bool, headers: Mapping[str, str], raw: bytes) -> Reply:
        refused = self._check_keys(headers, need_secret=False)
        if refused is not None:
            return refused
        try:
            body = _parse_json(raw)
            if isinstance(body, dict):  # a quote needs no customer or order id
                body = {"playerUniqueId": "-", "customerId": "-", "orderId": "-", **body}
            order = parse_order(body, v4=v4)
        except GameballError as error:
            return self._error(error, v4)
        earning = order_earning(
            self.account.rules,
            order.total_paid,
            order.lines,
            total_tax=order.total_tax,
            total_shipping=order.total_shipping,
        )
        lines = [
            {"productId": line.product_id, "totalPoints": points}
            for line, points in zip(order.lines, earning.line_points, strict=True)
        ]
        return Reply(200, {"totalPoints": earning.points, "totalScore": 0, "lineItems": lines})

    # --- helpers ----------------------------------------------------------------------------

    def _check_keys(self, headers: Mapping[str, str], *, need_secret: bool) -> Reply | None:
        api_key = headers.get("apikey")
        if not api_key:
            return Reply(403, {"code": 1002, "message": "APIKey header is missing"})
        if not hmac.compare_digest(api_key.encode(), self.config.api_key.encode()):
            return Reply(401, {"code": 1000, "message": "Invalid APIKey"})
        if need_secret:
            secret = headers.get("secretkey")
            if not secret:
                return Reply(401, {"code": 1001, "message": "Secret Key Required"})
            if not hmac.compare_digest(secret.encode(), self.config.secret_key.encode()):
                return Reply(401, {"code": 1000, "message": "Invalid secretKey"})
        return None

    def _error(self, error: GameballError, v4: bool) -> Reply:
        v4_code, v4_status = _V4_ERRORS.get(error.code, (4500, 400))
        if error.v4_code is not None:
            v4_code, v4_status = error.v4_code, _V4_STATUS.get(error.v4_code, v4_status)
        if self.config.error_style == "v2":
            status = 400 if error.code in _VALIDATION_CODES else 402
        else:
            status = v4_status
        if v4:
            body = {
                "code": v4_code,
                "type": _V4_TYPES.get(v4_code // 1000, "General Error"),
                "message": error.message,
                "documentationUrl": "https://docs.gameball.co/api-reference/overview/status-error-codes",
                "requestId": f"sandbox-{len(self.request_log) + 1}",
            }
        else:
            body = {"code": error.code, "message": error.message}
        return Reply(status, body)

    def _log(self, path: str, reply: Reply, loose: dict[str, Any] | None, *, applied: bool) -> None:
        loose = loose or {}
        code = reply.body.get("code") if reply.body else None
        answered = time.time()
        self.request_log.append(
            {
                "seq": len(self.request_log) + 1,
                "at": answered,
                "received_at": _RECEIVED.get() or answered,
                "path": path,
                "player": loose.get("playerUniqueId") or loose.get("customerId"),
                "transaction_id": (
                    loose.get("orderId")
                    or loose.get("transactionId")
                    or loose.get("refundTransactionId")
                ),
                "reverse_id": loose.get("reverseTransactionId"),
                "status": reply.status,
                "code": code,
                "applied": applied,
                "dropped": reply.drop,
            }
        )
        self.counts["total"] += 1
        self.counts[f"path:{path}"] += 1
        self.counts[f"status:{reply.status}"] += 1
        self.counts["applied"] += applied
        self.counts["dropped"] += reply.drop

    def state(self, *, with_transactions: bool = True) -> dict[str, Any]:
        counts = self.counts
        return {
            **self.account.snapshot(with_transactions=with_transactions),
            "request_counts": {
                "total": counts["total"],
                "applied": counts["applied"],
                "dropped": counts["dropped"],
                "by_path": {k[5:]: v for k, v in counts.items() if k.startswith("path:")},
                "by_status": {k[7:]: v for k, v in counts.items() if k.startswith("status:")},
            },
            "faults": self.faults.config.model_dump(),
            "rules": rules_json(self.account.rules),
        }


def _query_int(query: Mapping[str, str], name: str, default: int, low: int, high: int) -> int:
    raw = query.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise GameballError(7, f"Invalid Value: {name}") from None
    if not low <= value <= high:
        raise GameballError(7, f"Invalid Value: {name} must be {low} to {high}")
    return value


def _parse_json(raw: bytes) -> object:
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise GameballError(
            MISSING_ARGUMENTS, "Invalid Payload: body is not valid JSON", v4_code=3016
        ) from None


def _loose_json(raw: bytes) -> dict[str, Any] | None:
    try:
        parsed = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return None
    return parsed if isinstance(parsed, dict) else None


# --- HTTP ------------------------------------------------------------------------------------


class DroppedResponse(Exception):  # noqa: N818 - it is a signal, not an error
    """Raised after the status line went out, so the server closes the connection."""


class _DropConnection(Response):
    """Sends headers promising a body, then aborts: the client sees the connection drop."""

    def __init__(self) -> None:
        super().__init__()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"application/json"), (b"content-length", b"64")],
            }
        )
        raise DroppedResponse


def _respond(reply: Reply) -> Response:
    if reply.drop:
        return _DropConnection()
    return JSONResponse(
        reply.body if reply.body is not None else {}, reply.status, dict(reply.headers)
    )


def create_app(config: SandboxConfig | None = None) -> SandboxApp:
    """The Starlette app; ``app.state.sandbox`` is the :class:`Sandbox` behind it."""
    sandbox = Sandbox(config or SandboxConfig())

    async def health(_: Request) -> Response:
        return JSONResponse({"ok": True, "seed": sandbox.config.seed})

    async def state(request: Request) -> Response:
        with_transactions = request.query_params.get("transactions", "1") not in {"0", "false"}
        return JSONResponse(sandbox.state(with_transactions=with_transactions))

    async def faults(request: Request) -> Response:
        if request.method == "POST":
            try:
                sandbox.faults.update(await _json_object(request))
            except (ValidationError, ValueError, TypeError) as error:
                return _invalid(error)
        return JSONResponse(sandbox.faults.config.model_dump())

    async def rules(request: Request) -> Response:
        if request.method == "POST":
            try:
                sandbox.set_rules(await _json_object(request))
            except (ValidationError, ValueError, TypeError) as error:
                return _invalid(error)
        return JSONResponse(rules_json(sandbox.account.rules))

    async def reset(_: Request) -> Response:
        sandbox.reset()
        return JSONResponse({"ok": True})

    async def requests_log(request: Request) -> Response:
        try:
            since = int(request.query_params.get("since", "0"))
            limit = min(int(request.query_params.get("limit", "10000")), 100_000)
        except ValueError:
            return JSONResponse({"error": "since and limit must be integers"}, 400)
        rows = sandbox.request_log[max(0, since) : max(0, since) + limit]
        return JSONResponse({"requests": rows, "next": max(0, since) + len(rows)})

    routes = _api_routes(sandbox)
    routes += [
        Route("/_sandbox/health", health),
        Route("/_sandbox/state", state),
        Route("/_sandbox/faults", faults, methods=["GET", "POST"]),
        Route("/_sandbox/rules", rules, methods=["GET", "POST"]),
        Route("/_sandbox/reset", reset, methods=["POST"]),
        Route("/_sandbox/requests", requests_log),
    ]
    app = Starlette(routes=routes)
    app.state.sandbox = sandbox
    return SandboxApp(app)


def _api_routes(sandbox: Sandbox) -> list[Route]:
    v3 = "/api/v3.0/integrations"
    routes = [
        _write_route(sandbox, f"{v3}/order", "order", "v3.0"),
        _preview_route(sandbox, f"{v3}/order/cashback", "v3.0"),
        _write_route(sandbox, f"{v3}/transaction/refund", "refund", "v3.0"),
        _write_route(sandbox, f"{v3}/transaction/cashback", "cashback", "v3.0"),
        _write_route(sandbox, f"{v3}/transaction/hold", "hold", "v3.0"),
        _release_route(sandbox, f"{v3}/transaction/hold/{{ident}}", "v3.0"),
        _read_route(sandbox, f"{v3}/player/{{ident}}/balance", "balance", "v3.0"),
        _read_route(sandbox, f"{v3}/order/{{ident}}/transactions", "transactions", "v3.0"),
        _list_route(sandbox, f"{v3}/transaction/list", "v3.0"),
    ]
    for version in ("v4.0", "v4.1"):  # v4.1: the v4.0 surface, SecretKey always required
        v4 = f"/api/{version}/integrations"
        routes += [
            _write_route(sandbox, f"{v4}/orders", "order", version),
            _preview_route(sandbox, f"{v4}/orders/cashback", version),
            _write_route(sandbox, f"{v4}/transactions/refund", "refund", version),
            _write_route(sandbox, f"{v4}/transactions/cashback", "cashback", version),
            _write_route(sandbox, f"{v4}/transactions/hold", "hold", version),
            _release_route(sandbox, f"{v4}/transactions/hold/{{ident}}", version),
            _read_route(sandbox, f"{v4}/customers/{{ident}}/balance", "balance", version),
            _read_route(sandbox, f"{v4}/orders/{{ident}}/transactions", "transactions", version),
            _list_route(sandbox, f"{v4}/transactions", version),
        ]
    return routes


Handler = Callable[[Request, bool, bytes], Awaitable[Reply]]  # (request, v4, body) → answer


def _api_route(
    sandbox: Sandbox, path: str, version: str, method: str, handle: Handler, *, slow: bool = True
) -> Route:
    """One Gameball endpoint: injected latency, the account's minimum version, then
    ``handle`` with whether the version speaks v4. The body is read first: a request
    whose client gives up during the latency has landed, and is applied, as at Gameball."""

    async def endpoint(request: Request) -> Response:
        _RECEIVED.set(time.time())
        body = await request.body()
        latency = sandbox.faults.latency_s() if slow else 0.0
        if latency:
            await asyncio.sleep(latency)  # a slow Gameball, on purpose
        refused = sandbox.refuse_version(version)
        if refused is not None:
            return _respond(refused)
        return _respond(await handle(request, version != "v3.0", body))

    return _any_case(Route(path, endpoint, methods=[method]))


def _write_route(sandbox: Sandbox, path: str, operation: Operation, version: str) -> Route:
    async def handle(request: Request, v4: bool, body: bytes) -> Reply:
        return sandbox.write(operation, v4, path, request.headers, body)

    return _api_route(sandbox, path, version, "POST", handle)


def _read_route(
    sandbox: Sandbox, path: str, what: Literal["balance", "transactions"], version: str
) -> Route:
    async def handle(request: Request, v4: bool, _: bytes) -> Reply:
        ident = request.path_params["ident"]
        return sandbox.read(what, v4, request.url.path, request.headers, ident)

    return _api_route(sandbox, path, version, "GET", handle)


def _list_route(sandbox: Sandbox, path: str, version: str) -> Route:
    async def handle(request: Request, v4: bool, _: bytes) -> Reply:
        return sandbox.list_transactions(
            v4, request.url.path, request.headers, request.query_params
        )

    return _api_route(sandbox, path, version, "GET", handle)


def _release_route(sandbox: Sandbox, path: str, version: str) -> Route:
    async def handle(request: Request, v4: bool, _: bytes) -> Reply:
        return sandbox.release(v4, request.headers, request.path_params["ident"])

    return _api_route(sandbox, path, version, "DELETE", handle, slow=False)


def _preview_route(sandbox: Sandbox, path: str, version: str) -> Route:
    async def handle(request: Request, v4: bool, body: bytes) -> Reply:
        return sandbox.preview(v4, request.headers, body)

    return _api_route(sandbox, path, version, "POST", handle, slow=False)


def _any_case(route: Route) -> Route:
    """Gameball's paths are matched case-insensitively: the official SDKs write
    ``/Integrations/order``, the docs ``/integrations/order``."""
    route.path_regex = re.compile(route.path_regex.pattern, re.IGNORECASE)
    return route


class SandboxApp:
    """ASGI wrapper that reads ``//api/v3.0/…`` (the SDKs join base URL and path with a
    slash each) as ``/api/v3.0/…``, as Gameball's servers do."""

    def __init__(self, app: Starlette) -> None:
        self.app = app
        self.state = app.state

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and "//" in scope["path"]:
            scope = {**scope, "path": re.sub("/{2,}", "/", scope["path"])}
        await self.app(scope, receive, send)


async def _json_object(request: Request) -> dict[str, Any]:
    raw = await request.body()
    parsed = json.loads(raw) if raw.strip() else {}
    if not isinstance(parsed, dict):
        raise TypeError("body must be a JSON object")
    return parsed


def _invalid(error: ValidationError | ValueError | TypeError) -> Response:
    if isinstance(error, ValidationError):
        problems = [
            {"field": ".".join(str(p) for p in item["loc"]), "message": item["msg"]}
            for item in error.errors(include_url=False)
        ]
    else:
        problems = [{"field": "body", "message": str(error)}]
    return JSONResponse({"error": "invalid settings", "problems": problems}, 422)
