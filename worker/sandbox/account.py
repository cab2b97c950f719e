"""The sandbox's Gameball account: wallets, orders and transactions, in memory.

Business rules as Gameball documents them (docs/gameball-contract.md, docs/sandbox.md):
- order and cashback create the player if unknown; refunds of an unknown player → 101;
- every ``orderId``/``transactionId`` is unique per account → 305 and no side effect;
- a refund whose ``reverseTransactionId`` matches nothing (case-sensitive) → 306;
- any refund after a full refund/cancel of the same order → 302;
- refunds reverse base points by money (proportionally, capped at what the order earned)
  and bonus points only for the line items they name (``rules.refund_reversal``), then
  give back the points the order redeemed for what they refund beyond the paid amount
  (``rules.redemption_return``); once all of it is refunded (the paid amount and the
  redeemed points) the order counts as cancelled (a later cancel → 302);
- optionally, two transactions of one player at the same instant → 304.

No I/O and no asyncio: the app calls it from one event loop, so each call is atomic.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from decimal import ROUND_CEILING, Decimal
from typing import Any

from worker.sandbox.parsing import (
    CashbackCommand,
    GameballError,
    HoldCommand,
    OrderCommand,
    RefundCommand,
)
from worker.sandbox.rules import (
    CashbackRules,
    EarnedLine,
    cashback_points,
    order_earning,
    redemption_return,
    refund_reversal,
)


@dataclass
class Wallet:
    player_id: str
    balance: int = 0
    earned: int = 0
    reversed: int = 0


@dataclass
class Reversible:
    """An order or cashback that refunds can reverse: its base points and each line's bonus."""

    transaction_id: str
    kind: str  # "order" | "cashback"
    player_id: str
    total_paid: Decimal
    earned: int
    base: int = 0
    lines: list[EarnedLine] = field(default_factory=list)
    refunded: Decimal = Decimal(0)
    reversed: int = 0
    base_reversed: int = 0
    redeemed: int = 0  # points the order redeemed (its hold or redeemedAmount)
    redeemed_returned: int = 0
    cancelled: bool = False


@dataclass(frozen=True)
class Hold:
    reference: str
    player_id: str
    points: int
    expires_at: float  # on the account's clock


@dataclass(frozen=True)
class Transaction:
    gameball_id: int
    transaction_id: str
    type: str  # PaymentReward | Cashback | Refund | PartialRefund
    player_id: str
    points: int  # signed: credits positive, reversals negative
    amount: Decimal | None
    time: str
    reverses: str | None = None


def _transaction_json(txn: Transaction) -> dict[str, Any]:
    """A row of v3's order transactions and transaction list."""
    return {
        "transactionDate": txn.time,
        "gameballTransactionId": str(txn.gameball_id),
        "transactionType": txn.type,
        "amount": None if txn.amount is None else number(txn.amount),
        "transactionId": txn.transaction_id,
        "customerId": txn.player_id,
        "equivalentPoints": txn.points,
    }


# v4 names no "Cashback" type (openapi.json lists PaymentReward, Refund, PartialRefund, …):
# a cashback is a reward for a payment made elsewhere.
_V4_TYPES: dict[str, str] = {"Cashback": "PaymentReward", "RedemptionRefund": "Refund"}


def _v4_order_row(txn: Transaction) -> dict[str, Any]:
    """A row of v4's ``GET orders/{orderId}/transactions`` (openapi.json)."""
    row: dict[str, Any] = {
        "transactionDate": txn.time,
        "gameballTransactionId": txn.gameball_id,
        "transactionType": _V4_TYPES.get(txn.type, txn.type),
        "transactionId": txn.transaction_id,
        "equivalentPoints": txn.points,
    }
    if txn.amount is not None:
        row["amount"] = number(txn.amount)
    return row


def _v4_list_row(txn: Transaction) -> dict[str, Any]:
    """A row of v4's ``GET transactions`` (openapi.json): points unsigned, direction + or -."""
    row: dict[str, Any] = {
        "transactionId": txn.transaction_id,
        "gameballTransactionId": str(txn.gameball_id),
        "type": _V4_TYPES.get(txn.type, txn.type),
        "direction": "-" if txn.points < 0 else "+",
        "customerId": txn.player_id,
        "points": abs(txn.points),
        "transactionTime": txn.time,
        "status": "Active",
    }
    if txn.amount is not None:
        row["amount"] = number(txn.amount)
    return row


def number(amount: Decimal) -> int | float:
    return int(amount) if amount == amount.to_integral_value() else float(amount)


class Account:
    """One Gameball account's state and its business rules."""

    def __init__(
        self,
        rules: CashbackRules,
        *,
        strict_transaction_time: bool = True,
        hold_ttl_s: float = 600.0,  # Gameball's default: 10 minutes
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.rules = rules
        self.strict_transaction_time = strict_transaction_time
        self.hold_ttl_s, self.clock = hold_ttl_s, clock
        self.holds: dict[str, Hold] = {}
        self.wallets: dict[str, Wallet] = {}
        self.reversible: dict[str, Reversible] = {}
        self.transactions: list[Transaction] = []
        self._ids: set[str] = set()
        self._times: set[tuple[str, str]] = set()

    # --- writes ---------------------------------------------------------------------------

    def hold(self, command: HoldCommand) -> dict[str, Any]:
        """Reserve points worth ``amount`` (1 point per unit) until the hold expires or an
        order consumes it."""
        wallet = self.wallets.get(command.player_id)
        if wallet is None:
            raise GameballError(101, "Player External ID Not Found")
        points = command.points or int(command.amount.to_integral_value(rounding=ROUND_CEILING))
        if points > wallet.balance - self._held(command.player_id):
            raise GameballError(309, "Insufficient Balance Points", v4_code=9008)
        reference = str(uuid.uuid4())
        self.holds[reference] = Hold(
            reference, command.player_id, points, self.clock() + self.hold_ttl_s
        )
        return {
            "holdReference": reference,
            "holdAmount": number(command.amount),
            "holdEquivalentPoints": points,
        }

    def release_hold(self, reference: str) -> dict[str, Any]:
        hold = self._live_hold(reference, None)
        del self.holds[hold.reference]
        return {"success": True, "message": "Hold released successfully"}

    def _held(self, player_id: str) -> int:
        now = self.clock()
        return sum(
            h.points for h in self.holds.values() if h.player_id == player_id and h.expires_at > now
        )

    def _live_hold(self, reference: str, player_id: str | None) -> Hold:
        hold = self.holds.get(reference)
        if (
            hold is None
            or hold.expires_at <= self.clock()
            or player_id not in (None, hold.player_id)
        ):
            raise GameballError(307, "Transaction Hold Reference Not Found", v4_code=9006)
        return hold

    def _redeem(self, order: OrderCommand) -> int:
        """Points the order redeems: its hold (consumed now) or its redeemedAmount."""
        if order.hold_reference is not None:
            hold = self._live_hold(order.hold_reference, order.player_id)
            del self.holds[hold.reference]
            return hold.points
        if order.redeemed_amount is not None:
            points = int(order.redeemed_amount.to_integral_value(rounding=ROUND_CEILING))
            wallet = self.wallets.get(order.player_id)
            if wallet is None or points > wallet.balance - self._held(order.player_id):
                raise GameballError(309, "Insufficient Balance Points", v4_code=9008)
            return points
        return 0

    def track_order(self, order: OrderCommand) -> dict[str, Any]:
        self._check_new(order.order_id, order.player_id, order.time)
        redeemed = self._redeem(order)
        earning = order_earning(
            self.rules,
            order.total_paid,
            order.lines,
            total_tax=order.total_tax,
            total_shipping=order.total_shipping,
        )
        self.reversible[order.order_id] = Reversible(
            order.order_id,
            "order",
            order.player_id,
            order.total_paid,
            earning.points,
            base=earning.base,
            lines=[
                EarnedLine(line.product_id, line.quantity, bonus)
                for line, bonus in zip(order.lines, earning.line_bonus, strict=True)
            ],
            redeemed=redeemed,
        )
        self._record(
            transaction_id=order.order_id,
            kind="PaymentReward",
            player_id=order.player_id,
            points=earning.points,
            amount=order.total_paid,
            time=order.time,
        )
        if redeemed:
            self._record(
                transaction_id=f"{order.order_id}#redemption",
                kind="Redemption",
                player_id=order.player_id,
                points=-redeemed,
                amount=None,
                time=order.time,
                reverses=order.order_id,
            )
        return {
            "rewardedPoints": earning.points,
            "redeemedPoints": redeemed,
            "lineItems": [
                {
                    "productId": line.product_id,
                    "quantity": number(line.quantity),
                    "points": points,
                    "score": 0,
                }
                for line, points in zip(order.lines, earning.line_points, strict=True)
            ],
        }

    def cashback(self, command: CashbackCommand) -> dict[str, Any]:
        self._check_new(command.transaction_id, command.player_id, command.time)
        points = cashback_points(self.rules, command.amount)
        self.reversible[command.transaction_id] = Reversible(
            command.transaction_id, "cashback", command.player_id, command.amount, points, points
        )
        txn = self._record(
            transaction_id=command.transaction_id,
            kind="Cashback",
            player_id=command.player_id,
            points=points,
            amount=command.amount,
            time=command.time,
        )
        return {"gameballTransactionId": txn.gameball_id, "rewardedPoints": points}

    def refund(self, command: RefundCommand) -> dict[str, Any]:
        if command.transaction_id in self._ids:
            raise GameballError(305, "Transaction ID Already Exists")
        if command.player_id not in self.wallets:
            raise GameballError(101, "Player External ID Not Found")
        original = self.reversible.get(command.reverse_id)
        if original is None or original.player_id != command.player_id:
            raise GameballError(306, "Transaction Reversed ID Not Found")
        if original.cancelled:
            raise GameballError(302, "Transaction Already Canceled")
        self._check_time(command.player_id, command.time)
        if self.rules.full_refund_at_paid and command.amount == original.total_paid:
            # openapi.json: "refundAmount equal to the total paid in the original order"
            # is one way to ask for a full refund
            command = replace(command, amount=None)
        reversal = refund_reversal(
            base=original.base,
            total_paid=original.total_paid,
            refunded_before=original.refunded,
            base_reversed_before=original.base_reversed,
            amount=command.amount,
            earned_lines=original.lines,
            refund_lines=command.lines,
        )
        returned = redemption_return(
            redeemed=original.redeemed,
            returned_before=original.redeemed_returned,
            amount=command.amount,
            cash_refunded=reversal.amount,
        )
        original.refunded += reversal.amount
        original.reversed += reversal.points
        original.base_reversed += reversal.base_points
        original.redeemed_returned += returned
        for line, (quantity, bonus_reversed) in zip(original.lines, reversal.lines, strict=True):
            line.refunded_quantity, line.bonus_reversed = quantity, bonus_reversed
        original.cancelled = command.amount is None or (
            original.refunded >= original.total_paid
            and original.redeemed_returned >= original.redeemed
        )
        kind = "Refund" if command.amount is None else "PartialRefund"
        txn = self._record(
            transaction_id=command.transaction_id,
            kind=kind,
            player_id=command.player_id,
            points=-reversal.points,
            amount=reversal.amount,
            time=command.time,
            reverses=original.transaction_id,
        )
        if returned:
            self._record(
                transaction_id=f"{command.transaction_id}#redemption",
                kind="RedemptionRefund",
                player_id=command.player_id,
                points=returned,
                amount=None,
                time=command.time,
                reverses=original.transaction_id,
            )
        return {
            "gameballTransactionId": str(txn.gameball_id),
            "transactionId": command.transaction_id,
            "refundAmount": number(reversal.amount),
            "refundEquivalentPoints": reversal.points,
        }

    # --- reads ----------------------------------------------------------------------------

    def balance(self, player_id: str, *, v4: bool) -> dict[str, Any]:
        """v3 ``player/{id}/balance``; v4 ``customers/{id}/balance`` (openapi.json's
        CustomerBalanceResponse). A point is worth one currency unit here."""
        wallet = self.wallets.get(player_id)
        if wallet is None:
            raise GameballError(101, "Player External ID Not Found")
        available = wallet.balance - self._held(player_id)
        if not v4:
            return {
                "playerUniqueId": player_id,
                "pointsBalance": wallet.balance,
                "availablePointsBalance": available,
                "pendingPoints": 0,
                "totalEarnedPoints": wallet.earned,
                "totalReversedPoints": wallet.reversed,
            }
        return {
            "totalPointsBalance": wallet.balance,
            "totalPointsValue": wallet.balance,
            "availablePointsBalance": available,
            "availablePointsValue": available,
            "pendingPoints": 0,
            "pendingPointsValue": 0,
            "currency": "USD",
            "pointsName": "Points",
            "totalEarnedPoints": wallet.earned,
        }

    def order_transactions(self, order_id: str, *, v4: bool) -> dict[str, Any]:
        if order_id not in self.reversible:
            raise GameballError(303, "Transaction Not Found")
        shape = _v4_order_row if v4 else _transaction_json
        rows = [
            shape(txn)
            for txn in self.transactions
            if order_id in (txn.transaction_id, txn.reverses)
        ]
        return {"transactions": rows, "count": len(rows)}

    def list_transactions(
        self,
        *,
        transaction_id: str | None = None,
        player_id: str | None = None,
        offset: int = 0,
        limit: int = 20,
    ) -> dict[str, Any]:
        """v3 ``transaction/list``, filtered by ``transactionId``, newest last."""
        rows = [
            txn
            for txn in self.transactions
            if transaction_id in (None, txn.transaction_id) and player_id in (None, txn.player_id)
        ]
        page = [_transaction_json(txn) for txn in rows[offset : offset + limit]]
        return {"transactions": page, "count": len(page), "total": len(rows)}

    def list_transactions_v4(
        self, *, customer_id: str | None, start_after: int, limit: int
    ) -> dict[str, Any]:
        """v4 ``GET transactions`` (openapi.json): the rows after Gameball's transaction id
        ``start_after``, oldest first, ``limit`` of them, and whether more follow."""
        rows = [
            txn
            for txn in self.transactions
            if txn.gameball_id > start_after and customer_id in (None, txn.player_id)
        ]
        page = [_v4_list_row(txn) for txn in rows[:limit]]
        return {"transactions": page, "count": len(page), "hasMore": len(rows) > limit}

    def snapshot(self, *, with_transactions: bool = True) -> dict[str, Any]:
        state: dict[str, Any] = {
            "wallets": {pid: asdict(wallet) for pid, wallet in self.wallets.items()},
            "orders": {
                tid: {
                    **asdict(item),
                    "total_paid": str(item.total_paid),
                    "refunded": str(item.refunded),
                    "lines": [
                        {
                            **asdict(line),
                            "quantity": str(line.quantity),
                            "refunded_quantity": str(line.refunded_quantity),
                        }
                        for line in item.lines
                    ],
                }
                for tid, item in self.reversible.items()
            },
        }
        if with_transactions:
            state["transactions"] = [
                {**asdict(txn), "amount": None if txn.amount is None else str(txn.amount)}
                for txn in self.transactions
            ]
        return state

    # --- helpers --------------------------------------------------------------------------

    def _check_new(self, transaction_id: str, player_id: str, time: str) -> None:
        if transaction_id in self._ids:
            raise GameballError(305, "Transaction ID Already Exists")
        self._check_time(player_id, time)

    def _check_time(self, player_id: str, time: str) -> None:
        if self.strict_transaction_time and (player_id, time) in self._times:
            raise GameballError(304, "Transaction Time Already Exists")

    def _record(
        self,
        *,
        transaction_id: str,
        kind: str,
        player_id: str,
        points: int,
        amount: Decimal | None,
        time: str,
        reverses: str | None = None,
    ) -> Transaction:
        wallet = self.wallets.setdefault(player_id, Wallet(player_id))
        wallet.balance += points
        if points >= 0:
            wallet.earned += points
        else:
            wallet.reversed -= points
        txn = Transaction(
            len(self.transactions) + 1,
            transaction_id,
            kind,
            player_id,
            points,
            amount,
            time,
            reverses,
        )
        self.transactions.append(txn)
        self._ids.add(transaction_id)
        self._times.add((player_id, time))
        return txn
