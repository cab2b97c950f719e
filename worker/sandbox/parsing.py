"""Turn Gameball request bodies into typed commands, refusing bad ones as Gameball does.

Validation answers with Gameball's v3 codes (docs/gameball-contract.md): a required field that
is absent → 4 "Missing Arguments"; present but null → 5 "Null Arguments"; the wrong type,
an empty id, a non-positive amount or an unreadable time → 7 "Invalid Value". Amounts may
be JSON numbers or numeric strings (Gameball's own samples send strings).

v3.0 and v4.0 differ only in a few names (``playerUniqueId``/``customerId``, the refund's
``transactionId``/``refundTransactionId`` and ``amount``/``refundAmount``).

    GameballError(Exception)   an answer with Gameball's {code, message}
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any, Final

from worker.sandbox.rules import OrderLine, RefundLine

MISSING_ARGUMENTS: Final = 4
NULL_ARGUMENTS: Final = 5
INVALID_VALUE: Final = 7
MAX_AMOUNT: Final = Decimal("1e15")
CHANNELS: Final = frozenset({"mobile", "pos", "web", "callcenter"})  # openapi.json, v4 orders
MAX_RETURN_WINDOW_DAYS: Final = 7300  # openapi.json: returnWindow 0 to 7300 days


class GameballError(Exception):
    """A Gameball error answer (v3 code; the app maps it to v4 and an HTTP status)."""

    def __init__(self, code: int, message: str, v4_code: int | None = None) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.v4_code = v4_code  # when v4 has a finer code than v3 (e.g. 3016, malformed JSON)


@dataclass(frozen=True)
class OrderCommand:
    player_id: str
    order_id: str
    time: str
    total_paid: Decimal
    total_price: Decimal
    total_tax: Decimal
    total_shipping: Decimal
    total_discount: Decimal
    lines: tuple[OrderLine, ...]
    hold_reference: str | None = None  # v3 holdReference, v4 redemption.pointsHoldReference
    redeemed_amount: Decimal | None = None  # v3 redeemedAmount


@dataclass(frozen=True)
class RefundCommand:
    player_id: str
    transaction_id: str
    reverse_id: str
    time: str
    amount: Decimal | None  # None: a full refund
    lines: tuple[RefundLine, ...] = ()  # the refunded items: their bonus points go too


@dataclass(frozen=True)
class CashbackCommand:
    player_id: str
    transaction_id: str
    time: str
    amount: Decimal


@dataclass(frozen=True)
class HoldCommand:
    player_id: str
    amount: Decimal  # money to hold (v3 amount, v4 amountToHold)
    points: int | None = None  # v4 pointsToHold: points, not money


class _Fields:
    """Typed access to a JSON object that raises Gameball's codes, naming the field."""

    _absent = object()

    def __init__(self, body: object) -> None:
        if not isinstance(body, Mapping):
            raise GameballError(MISSING_ARGUMENTS, "Missing Arguments: body must be a JSON object")
        self._body: Mapping[str, Any] = body

    def raw(self, name: str, *, required: bool) -> Any:
        value = self._body.get(name, self._absent)
        if value is self._absent:
            if required:
                raise GameballError(MISSING_ARGUMENTS, f"Missing Arguments: {name}")
            return None
        if value is None and required:
            raise GameballError(NULL_ARGUMENTS, f"Null Arguments: {name}")
        return value

    def text(self, name: str) -> str:
        value = self.raw(name, required=True)
        if not isinstance(value, str | int) or isinstance(value, bool) or not str(value).strip():
            raise GameballError(INVALID_VALUE, f"Invalid Value: {name}")
        return str(value)

    def money(self, name: str, *, required: bool = True, positive: bool = True) -> Decimal | None:
        value = self.raw(name, required=required)
        if value is None:
            return None
        amount = to_decimal(value, name)
        if amount < 0 or (positive and amount == 0):
            raise GameballError(INVALID_VALUE, f"Invalid Value: {name} must be positive")
        return amount

    def money_or_zero(self, name: str) -> Decimal:
        return self.money(name, required=False, positive=False) or Decimal(0)

    def time(self, name: str, *, required: bool = True) -> str:
        value = self.raw(name, required=required)
        if value is None:
            return canonical_time(datetime.now(UTC))
        if not isinstance(value, str):
            raise GameballError(INVALID_VALUE, f"Invalid Value: {name}")
        try:
            moment = datetime.fromisoformat(value)
        except ValueError:
            raise GameballError(INVALID_VALUE, f"Invalid Value: {name} is not ISO-8601") from None
        return canonical_time(moment if moment.tzinfo else moment.replace(tzinfo=UTC))

    def lines(self, name: str) -> tuple[OrderLine, ...]:
        value = self.raw(name, required=False)
        if value is None:
            return ()
        if not isinstance(value, list):
            raise GameballError(INVALID_VALUE, f"Invalid Value: {name}")
        return tuple(_line(item, f"{name}[{index}]") for index, item in enumerate(value))


def to_decimal(value: object, name: str) -> Decimal:
    """A JSON number or numeric string as a Decimal, or code 7."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise GameballError(INVALID_VALUE, f"Invalid Value: {name}")
    try:
        amount = Decimal(str(value).strip())
    except InvalidOperation:
        raise GameballError(INVALID_VALUE, f"Invalid Value: {name}") from None
    if not amount.is_finite() or abs(amount) >= MAX_AMOUNT:
        raise GameballError(INVALID_VALUE, f"Invalid Value: {name}")
    return amount


def canonical_time(moment: datetime) -> str:
    """One spelling per instant (UTC, milliseconds) so equal times compare equal."""
    moment = moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def _line(item: object, where: str) -> OrderLine:
    fields = _Fields(item)
    categories = fields.raw("category", required=False) or ()
    if isinstance(categories, str):
        categories = (categories,)
    if not isinstance(categories, list | tuple) or not all(isinstance(c, str) for c in categories):
        raise GameballError(INVALID_VALUE, f"Invalid Value: {where}.category")
    quantity = fields.money("quantity", required=False, positive=True) or Decimal(1)
    return OrderLine(
        product_id=str(fields.raw("productId", required=False) or ""),
        quantity=quantity,
        price=fields.money("price", required=False, positive=False) or Decimal(0),
        discount=fields.money_or_zero("discount"),
        taxes=fields.money_or_zero("taxes"),
        categories=tuple(categories),
    )


def _player_field(v4: bool) -> str:
    return "customerId" if v4 else "playerUniqueId"


def _check_channel(body: object) -> None:
    """v4 ``channel``: one of openapi.json's values when present."""
    value = body.get("channel") if isinstance(body, Mapping) else None
    if value is not None and value not in CHANNELS:
        raise GameballError(
            INVALID_VALUE, f"Invalid Value: channel must be one of {', '.join(sorted(CHANNELS))}"
        )


def _check_return_window(body: object, container: str) -> None:
    """v4 ``<container>.returnWindow``: whole days, 0 to 7300, when present."""
    holder = body.get(container) if isinstance(body, Mapping) else None
    if holder is None:
        return
    name = f"{container}.returnWindow"
    if not isinstance(holder, Mapping):
        raise GameballError(INVALID_VALUE, f"Invalid Value: {container}")
    value = holder.get("returnWindow")
    if value is None:
        return
    if (
        isinstance(value, bool)
        or not isinstance(value, int)
        or not 0 <= value <= MAX_RETURN_WINDOW_DAYS
    ):
        raise GameballError(
            INVALID_VALUE,
            f"Invalid Value: {name} must be whole days, 0 to {MAX_RETURN_WINDOW_DAYS}",
        )


def parse_order(body: object, *, v4: bool = False) -> OrderCommand:
    fields = _Fields(body)
    if v4:
        _check_channel(body)
        _check_return_window(body, "cashbackConfigurations")
    return OrderCommand(
        player_id=fields.text(_player_field(v4)),
        order_id=fields.text("orderId"),
        time=fields.time("orderDate", required=False),
        # 0 is an order paid with points only (how-refunds-work.mdx; no minimum in openapi.json)
        total_paid=fields.money("totalPaid", positive=False) or Decimal(0),
        total_price=(
            fields.money_or_zero("totalPrice") if v4 else fields.money("totalPrice") or Decimal(0)
        ),
        total_tax=fields.money_or_zero("totalTax"),
        total_shipping=fields.money_or_zero("totalShipping"),
        total_discount=fields.money_or_zero("totalDiscount"),
        lines=fields.lines("lineItems"),
        hold_reference=_hold_reference(body, v4=v4),
        redeemed_amount=None if v4 else fields.money("redeemedAmount", required=False),
    )


def _hold_reference(body: object, *, v4: bool) -> str | None:
    if not isinstance(body, dict):
        return None
    source = body.get("redemption") if v4 else body
    key = "pointsHoldReference" if v4 else "holdReference"
    value = source.get(key) if isinstance(source, dict) else None
    return value if isinstance(value, str) and value else None


HOLD_BY: Final = ("amountToHold", "pointsToHold", "ruleId")


def parse_hold(body: object, *, v4: bool = False) -> HoldCommand:
    """v3: ``amount``. v4 (openapi.json): ``transactionTime`` required and exactly one of
    ``amountToHold`` and ``pointsToHold`` (``ruleId``, a dashboard rule, the sandbox has
    none of)."""
    fields = _Fields(body)
    player_id = fields.text(_player_field(v4))
    if not v4:
        return HoldCommand(player_id=player_id, amount=fields.money("amount") or Decimal(0))
    fields.time("transactionTime")
    given = [name for name in HOLD_BY if fields.raw(name, required=False) is not None]
    if len(given) != 1:
        missing = "" if given else f"Missing Arguments: one of {', '.join(HOLD_BY)}"
        raise GameballError(
            MISSING_ARGUMENTS if not given else INVALID_VALUE,
            missing or f"Invalid Value: give one of {', '.join(given)}",
        )
    if given[0] == "ruleId":
        raise GameballError(INVALID_VALUE, "Invalid Value: ruleId (no such redemption rule)")
    if given[0] == "pointsToHold":
        points = fields.raw("pointsToHold", required=True)
        if not isinstance(points, int) or isinstance(points, bool) or points <= 0:
            raise GameballError(
                INVALID_VALUE, "Invalid Value: pointsToHold must be a positive integer"
            )
        return HoldCommand(player_id=player_id, amount=Decimal(points), points=points)
    return HoldCommand(player_id=player_id, amount=fields.money("amountToHold") or Decimal(0))


def parse_refund(body: object, *, v4: bool = False) -> RefundCommand:
    fields = _Fields(body)
    return RefundCommand(
        player_id=fields.text(_player_field(v4)),
        transaction_id=fields.text("refundTransactionId" if v4 else "transactionId"),
        reverse_id=fields.text("reverseTransactionId"),
        time=fields.time("transactionTime"),
        amount=fields.money("refundAmount" if v4 else "amount", required=False),
        lines=tuple(
            RefundLine(line.product_id, line.quantity) for line in fields.lines("lineItems")
        ),
    )


def parse_cashback(body: object, *, v4: bool = False) -> CashbackCommand:
    fields = _Fields(body)
    if v4:
        _check_return_window(body, "configurations")
    return CashbackCommand(
        player_id=fields.text(_player_field(v4)),
        transaction_id=fields.text("transactionId"),
        time=fields.time("transactionTime"),
        amount=fields.money("amount") or Decimal(0),
    )
