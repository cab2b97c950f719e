"""The event contract: what checkout code publishes (docs/publishing.md).

Four frozen pydantic models, one per kind, joined in the discriminated union
:data:`Event`. Money is ``Decimal`` (never float), times are timezone-aware and stored in
UTC, and :attr:`event_id` is derived from the shop's own ids so that publishing the same
event twice is a no-op everywhere downstream.

Validation refuses bad input field by field. Cross-field rules (``total_paid`` against
``total_price``, line items against totals, decimals against the currency) are field
validators, so each error names the field it is about. :func:`parse_event` turns
pydantic's errors into :class:`InvalidEventError`, whose ``problems`` list each field.

    InvalidEventError(ValueError)   an event failed validation; .problems names the fields
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Annotated, Any, Final, Literal, TypeAlias

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainValidator,
    StringConstraints,
    TypeAdapter,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from producers.untrusted import UnreadableError, load_json

SCHEMA_VERSION: Final = 1
MAX_ID_LENGTH: Final = 100
MAX_MONEY: Final = Decimal("1000000000000")  # exclusive; keeps every amount exact as a double
MAX_FUTURE_SKEW: Final = timedelta(minutes=5)
MAX_LINE_ITEMS: Final = 1000
MAX_EXTRA_ENTRIES: Final = 50
MAX_LABELS: Final = 50  # categories, collections or tags of one line
MAX_MONEY_DIGITS: Final = 16  # MAX_MONEY with three decimals fits
MAX_EXTRA_INT: Final = 2**53  # exact in every JSON reader
MAX_EVENT_BYTES: Final = 512 * 1024  # an event as JSON: what the queue carries
EARLIEST: Final = datetime(2000, 1, 1, tzinfo=UTC)  # before this: an unset or epoch-0 time
CANCEL_SUFFIX: Final = "-cancel"

# ISO 4217 minor units where they differ from 2. Gameball keeps the currency as an account
# setting, so the currency is used only to check how many decimals an amount may have.
_MINOR_UNITS: Final[Mapping[str, int]] = {
    **dict.fromkeys(("BHD", "IQD", "JOD", "KWD", "LYD", "OMR", "TND"), 3),
    **dict.fromkeys(
        (
            "BIF",
            "CLP",
            "DJF",
            "GNF",
            "ISK",
            "JPY",
            "KMF",
            "KRW",
            "PYG",
            "RWF",
            "UGX",
            "VND",
            "VUV",
            "XAF",
            "XOF",
            "XPF",
        ),
        0,
    ),
}


def currency_decimals(currency: str) -> int:
    """How many decimals an amount in ``currency`` may carry (ISO 4217 minor units)."""
    return _MINOR_UNITS.get(currency, 2)


# --- field types ---------------------------------------------------------------------------


_NOT_IN_TEXT: Final = frozenset({"Cc", "Cs"})  # control characters (NUL, ESC, …), surrogates
_NOT_IN_IDS: Final = _NOT_IN_TEXT | {"Cf", "Co", "Zl", "Zp"}  # also invisible/format chars


def _check_chars(value: str, refused: frozenset[str]) -> str:
    for char in value:
        category = unicodedata.category(char)
        if category in refused:
            kind = {"Cc": "control", "Cs": "surrogate"}.get(category, "invisible or format")
            raise ValueError(f"must not contain {kind} characters (found U+{ord(char):04X})")
    return value


def _check_text(value: str) -> str:
    return _check_chars(value, _NOT_IN_TEXT)


def _check_id(value: str) -> str:
    if value != value.strip():
        raise ValueError("must not start or end with whitespace (ids are matched exactly)")
    return _check_chars(value, _NOT_IN_IDS)


def _check_order_id(value: str) -> str:
    # ':' separates the parts of an event_id; allowing it would let two orders collide.
    if ":" in value:
        raise ValueError("must not contain ':'")
    return value


def _not_bool(value: Any) -> Any:
    """JSON's true/false are not numbers (pydantic would read true as 1)."""
    if isinstance(value, bool):
        raise ValueError("must be a number, not true or false")  # noqa: TRY004 - a field error
    return value


Id: TypeAlias = Annotated[
    str, StringConstraints(min_length=1, max_length=MAX_ID_LENGTH), AfterValidator(_check_id)
]
OrderId: TypeAlias = Annotated[Id, AfterValidator(_check_order_id)]
Currency: TypeAlias = Annotated[str, StringConstraints(pattern=r"^[A-Z]{3}$")]
_Checked = AfterValidator(_check_text)
ShortText: TypeAlias = Annotated[str, StringConstraints(min_length=1, max_length=255), _Checked]
Email: TypeAlias = Annotated[str, StringConstraints(min_length=3, max_length=254), _Checked]
Mobile: TypeAlias = Annotated[str, StringConstraints(min_length=3, max_length=32), _Checked]
ExtraKey: TypeAlias = Annotated[str, StringConstraints(min_length=1, max_length=100), _Checked]


def _check_extra_value(value: Any) -> str | int:
    if isinstance(value, str):
        if len(value) > 1000:
            raise ValueError("must be at most 1000 characters")
        return _check_text(value)
    if isinstance(value, int) and not isinstance(value, bool):
        if abs(value) > MAX_EXTRA_INT:
            raise ValueError("must be within ±2^53 (exact in JSON)")
        return value
    raise ValueError("must be a string or a whole number")


ExtraValue: TypeAlias = Annotated[str | int, PlainValidator(_check_extra_value)]
Money: TypeAlias = Annotated[
    Decimal, BeforeValidator(_not_bool), Field(max_digits=MAX_MONEY_DIGITS)
]
Count: TypeAlias = Annotated[int, BeforeValidator(_not_bool)]
Labels: TypeAlias = tuple[ShortText, ...]


def _decimal_places(value: Decimal) -> int:
    """Decimals of ``value`` ignoring trailing zeros, exactly (``normalize`` would round a
    tiny value to 0 under the default context)."""
    _, digits, exponent = value.as_tuple()
    if not isinstance(exponent, int):
        raise ValueError("must be a finite number")  # noqa: TRY004 - pydantic wants ValueError
    if not any(digits):
        return 0
    trailing = len(digits) - len("".join(map(str, digits)).rstrip("0"))
    return max(0, -(exponent + min(trailing, max(0, -exponent))))


def _check_money(value: Decimal, currency: str | None, *, allow_zero: bool) -> Decimal:
    """Refuse non-positive (or negative), too large and over-precise amounts."""
    if value < 0 or (value == 0 and not allow_zero):
        raise ValueError("must be greater than 0" if not allow_zero else "must not be negative")
    if value >= MAX_MONEY:
        raise ValueError(f"must be less than {MAX_MONEY}")
    if currency is not None:
        decimals = currency_decimals(currency)
        if _decimal_places(value) > decimals:
            raise ValueError(f"has more than {decimals} decimals, the most {currency} allows")
    return value


def _check_aware_utc(value: datetime, info: ValidationInfo) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError("must be timezone-aware, e.g. 2024-10-16T08:13:29Z")
    try:
        value = value.astimezone(UTC)
    except OverflowError:
        raise ValueError("is out of range") from None
    if value < EARLIEST:
        raise ValueError(f"is before {EARLIEST:%Y-%m-%d}: an unset or wrong clock?")
    # The one rule that depends on the clock of the process checking it: applied when
    # checkout publishes, never again when a worker reads an accepted event back (a worker
    # whose clock is behind the producer's would bury good events).
    if not _accepted(info) and value > datetime.now(UTC) + MAX_FUTURE_SKEW:
        raise ValueError(f"is in the future (more than {MAX_FUTURE_SKEW} ahead of this clock)")
    return value


_ACCEPTED: Final = {"accepted": True}  # validation context: re-reading an accepted event


def _accepted(info: ValidationInfo) -> bool:
    return isinstance(info.context, dict) and info.context.get("accepted") is True


UtcTime: TypeAlias = Annotated[datetime, AfterValidator(_check_aware_utc)]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)


class LineItem(_Frozen):
    """One order line, in Gameball's terms: unit ``price``, line-total ``discount``/``taxes``."""

    product_id: Id
    quantity: Count = Field(ge=1, le=1_000_000)
    price: Money = Field(description="Unit price before tax and discount.")
    # Before ``discount``, whose check reads it.
    taxes: Money = Field(default=Decimal(0), description="Total tax of the line.")
    discount: Money = Field(default=Decimal(0), description="Total discount of the line.")
    sku: ShortText | None = None
    title: ShortText | None = None
    category: Labels = Field(default=(), max_length=MAX_LABELS)
    collection: Labels = Field(default=(), max_length=MAX_LABELS)
    tags: Labels = Field(default=(), max_length=MAX_LABELS)
    vendor: ShortText | None = None
    weight: Money | None = Field(default=None, ge=0, decimal_places=6)

    @field_validator("price", "taxes", "discount")
    @classmethod
    def _non_negative(cls, value: Decimal) -> Decimal:
        return _check_money(value, None, allow_zero=True)

    @field_validator("discount")
    @classmethod
    def _discount_within_line(cls, value: Decimal, info: ValidationInfo) -> Decimal:
        """A line's discount may cover its tax too: Gameball's order-calculation examples
        (tutorials/.../order-calculation-examples.mdx, Example 8a: a free item's discount
        is its price and its tax) send exactly that. It may not exceed both."""
        price, quantity = info.data.get("price"), info.data.get("quantity")
        taxes = info.data.get("taxes")
        if price is None or quantity is None or taxes is None:
            return value  # refused for those fields already
        if value > price * quantity + taxes:
            raise ValueError(
                f"({value}) exceeds price x quantity ({price * quantity}) plus taxes ({taxes})"
            )
        return value

    @property
    def gross(self) -> Decimal:
        """``price × quantity``, before discount and tax."""
        return self.price * self.quantity


def _check_line_decimals(items: Iterable[LineItem], currency: str) -> None:
    for index, item in enumerate(items):
        for name in ("price", "discount", "taxes"):
            try:
                _check_money(getattr(item, name), currency, allow_zero=True)
            except ValueError as error:
                raise ValueError(f"line_items[{index}].{name} {error}") from None


def _money_validator(*fields: str, allow_zero: bool) -> Any:
    """A field validator checking amounts against the event's ``currency`` (declared first)."""

    def check(cls: type[BaseModel], value: Decimal | None, info: ValidationInfo) -> Decimal | None:
        if value is None:
            return None
        return _check_money(value, info.data.get("currency"), allow_zero=allow_zero)

    return field_validator(*fields)(classmethod(check))


# --- the events -----------------------------------------------------------------------------


Channel: TypeAlias = Literal["mobile", "pos", "web", "callcenter"]  # v4 (openapi.json)
ReturnWindow: TypeAlias = Annotated[int, BeforeValidator(_not_bool), Field(ge=0, le=7300)]


class Branch(_Frozen):
    unique_id: Id
    name: ShortText | None = None


class Merchant(_Frozen):
    """The merchant (and branch) of a multi-merchant account (v3 and v4 ``merchant``)."""

    unique_id: Id | None = None
    name: ShortText | None = None
    branch: Branch | None = None

    @model_validator(mode="after")
    def _identified(self) -> Merchant:
        if self.unique_id is None and self.branch is None:
            raise ValueError("needs unique_id or a branch")
        return self


class Redemption(_Frozen):
    """Points or Gameball coupons the customer redeemed on the order at checkout.

    ``points_hold_reference``: a hold made with Gameball's Hold API, consumed by the order
    (v3 ``holdReference``, v4 ``redemption.pointsHoldReference``); gbq never releases it.
    ``redeemed_amount``: the value of the points redeemed. Alone, gbq redeems it (v3
    ``redeemedAmount``; v4, which redeems through a hold only, by holding it first). With
    a hold, it is the hold's value: if the hold has expired before the order reaches
    Gameball, gbq holds that value again instead of parking the redemption for the
    operator (docs/gameball-contract.md). ``gameball_coupon_codes``: coupons *Gameball* issued,
    locked beforehand (v4 ``redemption.couponCodes`` with ``couponsLockReference``): not
    the shop's own discount codes, which are ``OrderPaid.discount_codes``.
    """

    points_hold_reference: Id | None = None
    redeemed_amount: Money | None = Field(default=None, gt=0)
    gameball_coupon_codes: tuple[ShortText, ...] = Field(default=(), max_length=50)
    coupons_lock_reference: Id | None = None

    @model_validator(mode="after")
    def _consistent(self) -> Redemption:
        if self.gameball_coupon_codes and self.coupons_lock_reference is None:
            raise ValueError(
                "gameball_coupon_codes need the coupons_lock_reference they were locked with"
            )
        return self


class _EventBase(_Frozen):
    schema_version: Annotated[Literal[1], BeforeValidator(_not_bool)] = SCHEMA_VERSION
    customer_id: Id = Field(description="Gameball playerUniqueId: the shop's permanent id.")
    email: Email | None = None
    mobile: Mobile | None = None
    occurred_at: UtcTime = Field(description="When it happened; sent as Gameball's time.")


class OrderPaid(_EventBase):
    """An order was paid: Gameball's Order API rewards cashback on ``total_paid``."""

    kind: Literal["paid"] = "paid"
    order_id: OrderId
    currency: Currency = "USD"
    total_price: Money = Field(description="Gross value incl. shipping and tax.")
    total_paid: Money = Field(description="What the customer paid: the reward basis.")
    total_discount: Money = Decimal(0)
    total_shipping: Money = Decimal(0)
    total_tax: Money = Decimal(0)
    line_items: tuple[LineItem, ...] = Field(default=(), max_length=MAX_LINE_ITEMS)
    discount_codes: tuple[ShortText, ...] = Field(default=(), max_length=50)
    extra: dict[ExtraKey, ExtraValue] = Field(default_factory=dict, max_length=MAX_EXTRA_ENTRIES)
    guest: bool = False
    redemption: Redemption | None = None
    merchant: Merchant | None = None
    channel: Channel | None = Field(default=None, description="v4: mobile, pos, web, callcenter.")
    cart_id: Id | None = Field(default=None, description="v4 cartId.")
    return_window_days: ReturnWindow | None = Field(
        default=None, description="v4: days the cashback stays pending (0 to 7300)."
    )

    _positive = _money_validator("total_price", allow_zero=False)
    # total_paid may be 0: an order paid entirely with points (how-refunds-work.mdx, "Entirely
    # Paid Using Points Balance") or fully discounted; the OpenAPI sets no minimum.
    _non_negative = _money_validator(
        "total_paid", "total_discount", "total_shipping", "total_tax", allow_zero=True
    )

    @field_validator("total_paid")
    @classmethod
    def _paid_within_price(cls, value: Decimal, info: ValidationInfo) -> Decimal:
        price = info.data.get("total_price")
        if price is not None and value > price:
            raise ValueError(f"({value}) must not exceed total_price ({price})")
        return value

    @field_validator("total_discount")
    @classmethod
    def _discount_within_price(cls, value: Decimal, info: ValidationInfo) -> Decimal:
        price, paid = info.data.get("total_price"), info.data.get("total_paid")
        if price is not None and paid is not None and paid + value > price:
            raise ValueError(f"({value}) plus total_paid ({paid}) exceeds total_price ({price})")
        return value

    @field_validator("total_tax")
    @classmethod
    def _tax_and_shipping_within_price(cls, value: Decimal, info: ValidationInfo) -> Decimal:
        price, shipping = info.data.get("total_price"), info.data.get("total_shipping")
        if price is not None and shipping is not None and value + shipping > price:
            raise ValueError(
                f"({value}) plus total_shipping ({shipping}) exceeds total_price ({price})"
            )
        return value

    @field_validator("line_items")
    @classmethod
    def _lines_match_totals(
        cls, items: tuple[LineItem, ...], info: ValidationInfo
    ) -> tuple[LineItem, ...]:
        data = info.data
        if not items or "currency" not in data:
            return items
        _check_line_decimals(items, data["currency"])
        price, shipping = data.get("total_price"), data.get("total_shipping")
        if price is not None and shipping is not None:
            lines = sum((item.gross + item.taxes for item in items), Decimal(0))
            if lines + shipping > price:
                raise ValueError(
                    f"add up to {lines} (price x quantity + taxes) plus total_shipping "
                    f"({shipping}), more than total_price ({price})"
                )
        discount = data.get("total_discount")
        line_discounts = sum((item.discount for item in items), Decimal(0))
        if discount is not None and line_discounts > discount:
            raise ValueError(
                f"carry discounts of {line_discounts}, more than total_discount ({discount})"
            )
        return items

    @property
    def event_id(self) -> str:
        return f"paid:{self.order_id}"


class OrderCancelled(_EventBase):
    """A paid order was cancelled: a full refund of everything it earned."""

    kind: Literal["cancelled"] = "cancelled"
    order_id: OrderId

    @property
    def event_id(self) -> str:
        return f"cancelled:{self.order_id}"

    @property
    def transaction_id(self) -> str:
        """Gameball's id for this cancellation, stable across attempts."""
        return f"{self.order_id}{CANCEL_SUFFIX}"


class OrderRefunded(_EventBase):
    """A refund of a paid order: partial with ``amount``, full without."""

    kind: Literal["refunded"] = "refunded"
    order_id: OrderId
    refund_id: Id = Field(description="The shop's refund id: Gameball's transactionId.")
    currency: Currency = "USD"
    amount: Money | None = Field(default=None, description="None means a full refund.")
    line_items: tuple[LineItem, ...] = Field(default=(), max_length=MAX_LINE_ITEMS)
    merchant: Merchant | None = Field(
        default=None, description="v4: the merchant or branch that made the refund."
    )

    _positive = _money_validator("amount", allow_zero=False)

    @field_validator("refund_id")
    @classmethod
    def _refund_id_not_an_order_id(cls, value: str, info: ValidationInfo) -> str:
        # Gameball ids share one namespace: reusing the order's id would be answered
        # "already exists" and silently count as delivered.
        order_id = info.data.get("order_id")
        if order_id is not None and value in {order_id, f"{order_id}{CANCEL_SUFFIX}"}:
            raise ValueError("must differ from the order_id and its cancellation id")
        return value

    @field_validator("line_items")
    @classmethod
    def _line_decimals(
        cls, items: tuple[LineItem, ...], info: ValidationInfo
    ) -> tuple[LineItem, ...]:
        if "currency" in info.data:
            _check_line_decimals(items, info.data["currency"])
        return items

    @property
    def is_full(self) -> bool:
        return self.amount is None

    @property
    def event_id(self) -> str:
        return f"refunded:{self.order_id}:{self.refund_id}"


class CashbackAwarded(_EventBase):
    """Cashback on a payment outside the Order API (Gameball's Cashback API)."""

    kind: Literal["cashback"] = "cashback"
    transaction_id: Id
    currency: Currency = "USD"
    amount: Money
    merchant: Merchant | None = None
    return_window_days: ReturnWindow | None = Field(
        default=None, description="v4: days the cashback stays pending (0 to 7300)."
    )

    _positive = _money_validator("amount", allow_zero=False)

    @property
    def event_id(self) -> str:
        return f"cashback:{self.transaction_id}"


Event: TypeAlias = Annotated[
    OrderPaid | OrderCancelled | OrderRefunded | CashbackAwarded, Field(discriminator="kind")
]
EVENT_CLASSES: Final = (OrderPaid, OrderCancelled, OrderRefunded, CashbackAwarded)
EventKind: TypeAlias = Literal["paid", "cancelled", "refunded", "cashback"]
EVENT_KINDS: Final[tuple[EventKind, ...]] = ("paid", "cancelled", "refunded", "cashback")
_EVENT_ADAPTER: Final[TypeAdapter[Event]] = TypeAdapter(Event)


# --- parsing with field-by-field errors -------------------------------------------------------


@dataclass(frozen=True)
class FieldProblem:
    """One reason an event was refused: the field's dotted path and what is wrong."""

    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.field}: {self.message}"


class InvalidEventError(ValueError):
    """An event failed validation; ``problems`` names every bad field."""

    def __init__(self, problems: Iterable[FieldProblem], kind: str | None = None) -> None:
        self.problems = tuple(problems)
        self.kind = kind
        what = f"{kind} event" if kind else "event"
        listing = "; ".join(str(problem) for problem in self.problems)
        super().__init__(f"invalid {what}: {listing}")

    @property
    def fields(self) -> tuple[str, ...]:
        return tuple(problem.field for problem in self.problems)


def problems_from(error: ValidationError) -> tuple[FieldProblem, ...]:
    """Translate pydantic's errors into field problems with readable messages."""
    problems = []
    for item in error.errors(include_url=False):
        loc = list(item["loc"])
        if loc and loc[0] in EVENT_KINDS:  # the discriminated union's tag
            loc = loc[1:]
        message = str(item["msg"]).removeprefix("Value error, ")
        if item["type"] == "union_tag_invalid" or item["type"] == "union_tag_not_found":
            loc, message = ["kind"], f"must be one of {', '.join(EVENT_KINDS)}"
        elif item["type"] == "extra_forbidden":
            message = "is not a field of this event"
        field = ".".join(str(part) for part in loc) or "event"
        problems.append(FieldProblem(field=field, message=message))
    return tuple(problems)


def parse_event(data: Mapping[str, Any] | str | bytes, *, accepted: bool = False) -> Event:
    """Validate a dict or a JSON document into an :data:`Event`.

    Raises :class:`InvalidEventError` naming each bad field, and nothing else, whatever
    ``data`` holds (JSON is read with bounded nesting and no NaN/Infinity). ``accepted``:
    the event was accepted at publish already (a worker reading it back), so rules that
    depend on this process's clock are not applied again.
    """
    if isinstance(data, str | bytes):
        try:
            data = load_json(data, max_bytes=MAX_EVENT_BYTES)
        except UnreadableError as error:
            raise InvalidEventError([FieldProblem("event", f"is {error}")]) from None
    if not isinstance(data, Mapping):
        raise InvalidEventError([FieldProblem("event", "must be a JSON object")])
    kind = data.get("kind") if data.get("kind") in EVENT_KINDS else None
    try:
        return _EVENT_ADAPTER.validate_python(data, context=_ACCEPTED if accepted else None)
    except ValidationError as error:
        raise InvalidEventError(problems_from(error), kind) from None
    except RecursionError:  # a Python object (not JSON) nested past the stack
        raise InvalidEventError([FieldProblem("event", "is nested too deeply")], kind) from None


def as_event(value: object) -> Event:
    """A validated :data:`Event` from an event model, a mapping or a JSON document; anything
    else (``None``, a list, another model) is an :class:`InvalidEventError`.

    A model is validated again: ``model_construct``, ``model_copy(update=…)`` and
    assignment through ``object.__setattr__`` skip validation, and what they hold (a NaN
    amount, a string for a time) would be queued and only die at the worker."""
    if isinstance(value, EVENT_CLASSES):
        try:
            fields = _model_fields(value)
        except RecursionError:
            raise InvalidEventError([FieldProblem("event", "is nested too deeply")]) from None
        return parse_event(fields)
    if isinstance(value, Mapping | str | bytes):
        return parse_event(value)
    raise InvalidEventError(
        [FieldProblem("event", f"must be an event, a mapping or JSON, not {type(value).__name__}")]
    )


def _model_fields(value: Any) -> Any:
    """A model's field values as plain data (nested models as dicts), for re-validation:
    pydantic takes a model instance as it is, unchecked."""
    if isinstance(value, BaseModel):
        return {
            name: _model_fields(item) if isinstance(item, BaseModel | list | tuple) else item
            for name, item in value.__dict__.items()
        }
    if isinstance(value, list | tuple):
        return [_model_fields(item) for item in value]
    return value


def shared_id_problems(events: Sequence[Event]) -> list[FieldProblem]:
    """Refunds and cashbacks whose Gameball id is the id of an order among ``events``.

    Gameball keeps order, refund and cashback ids in one namespace: such a refund or
    cashback would be answered "already exists" and never apply. The worker refuses the
    ones whose order it already knows (and settles any other "already exists" by reading
    Gameball's records); ``publish()`` refuses those it can see, in one call."""
    orders = {event.order_id for event in events if not isinstance(event, CashbackAwarded)}
    problems = []
    for index, event in enumerate(events):
        if isinstance(event, OrderRefunded) and event.refund_id in orders:
            name, value = "refund_id", event.refund_id
        elif isinstance(event, CashbackAwarded) and event.transaction_id in orders:
            name, value = "transaction_id", event.transaction_id
        else:
            continue
        where = f"[{index}].{name}" if len(events) > 1 else name
        problems.append(
            FieldProblem(
                where,
                f"{value!r} is also an order id: Gameball's order, refund and cashback ids "
                "share one namespace",
            )
        )
    return problems


def event_to_json(event: Event) -> str:
    """Serialize an event; :func:`parse_event` gives back an equal event (Decimals exact).

    Raises :class:`InvalidEventError` for an event larger than :data:`MAX_EVENT_BYTES`.
    """
    text = event.model_dump_json()
    size = len(text.encode())
    if size > MAX_EVENT_BYTES:
        problem = FieldProblem("event", f"is {size} bytes as JSON, more than {MAX_EVENT_BYTES}")
        raise InvalidEventError([problem], event.kind)
    return text
