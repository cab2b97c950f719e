"""The sandbox without HTTP: keys, validation codes, business codes, limits, faults, seeds."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pytest

from worker.sandbox.account import Account
from worker.sandbox.app import Reply, Sandbox, SandboxConfig
from worker.sandbox.parsing import GameballError, HoldCommand, OrderCommand
from worker.sandbox.ratelimit import GameballRateLimits
from worker.sandbox.rules import CashbackRules
from worker.settings import SANDBOX_API_KEY, SANDBOX_SECRET_KEY, Settings

KEYS = {"apikey": SANDBOX_API_KEY, "secretkey": SANDBOX_SECRET_KEY}
ORDER_PATH = "/api/v3.0/integrations/order"
REFUND_PATH = "/api/v3.0/integrations/transaction/refund"


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def order(
    order_id: str = "O-1",
    paid: Any = 100,
    player: str = "p-1",
    time: str = "2024-01-01T00:00:00.000Z",
    **extra: Any,
) -> bytes:
    return json.dumps(
        {
            "playerUniqueId": player,
            "orderId": order_id,
            "orderDate": time,
            "totalPrice": paid,
            "totalPaid": paid,
            **extra,
        }
    ).encode()


def refund(
    txn: str,
    reverse: str = "O-1",
    amount: Any = None,
    player: str = "p-1",
    time: str = "2024-01-02T00:00:00.000Z",
) -> bytes:
    body = {
        "playerUniqueId": player,
        "transactionId": txn,
        "reverseTransactionId": reverse,
        "transactionTime": time,
    }
    if amount is not None:
        body["amount"] = amount
    return json.dumps(body).encode()


def post_order(sandbox: Sandbox, raw: bytes, headers: dict[str, str] = KEYS) -> Reply:
    return sandbox.write("order", False, ORDER_PATH, headers, raw)


def post_refund(sandbox: Sandbox, raw: bytes) -> Reply:
    return sandbox.write("refund", False, REFUND_PATH, KEYS, raw)


@pytest.fixture
def sandbox() -> Sandbox:
    return Sandbox(SandboxConfig(rate_limit_per_s=0, rate_limit_per_30s=0))


def test_worker_defaults_use_the_sandboxs_keys() -> None:
    """No configuration at all means the worker talks to the sandbox with its keys."""
    defaults, sandbox = Settings.model_construct(), SandboxConfig()
    assert (
        defaults.gameball_api_key.get_secret_value(),
        defaults.gameball_secret_key.get_secret_value(),
    ) == (sandbox.api_key, sandbox.secret_key)


@pytest.mark.parametrize(
    ("headers", "status", "code"),
    [
        ({}, 403, 1002),  # no APIKey
        ({"apikey": "wrong", "secretkey": SANDBOX_SECRET_KEY}, 401, 1000),  # wrong APIKey
        ({"apikey": SANDBOX_API_KEY}, 401, 1001),  # secretKey missing
        ({"apikey": SANDBOX_API_KEY, "secretkey": "nope"}, 401, 1000),  # wrong secretKey
    ],
)
def test_keys_are_checked(
    sandbox: Sandbox, headers: dict[str, str], status: int, code: int
) -> None:
    """Missing or wrong keys are refused before anything is applied."""
    reply = post_order(sandbox, order(), headers)
    assert (reply.status, reply.body and reply.body["code"]) == (status, code)
    assert sandbox.account.wallets == {}


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        (b"not json", 4),  # unreadable body
        (json.dumps({"orderId": "O", "totalPaid": 1, "totalPrice": 1}).encode(), 4),  # no player
        (order(paid=None), 5),  # null totalPaid
        (order(paid=0), 7),  # non-positive money
        (order(paid=-5), 7),
        (order(paid="abc"), 7),  # not a number
        (order(time="yesterday"), 7),  # unreadable time
        (order(order_id=""), 7),  # empty id
    ],
)
def test_validation_codes(sandbox: Sandbox, raw: bytes, code: int) -> None:
    """Gameball's 4 / 5 / 7 for missing, null and invalid values; nothing applied."""
    reply = post_order(sandbox, raw)
    assert reply.body is not None
    assert reply.body["code"] == code
    assert reply.status in (400, 422)
    assert sandbox.account.transactions == []


def test_numeric_strings_are_accepted_as_gameballs_samples_send_them(sandbox: Sandbox) -> None:
    """``"totalPaid": "90"`` works like 90."""
    reply = post_order(sandbox, order(paid="90"))
    assert (reply.status, reply.body and reply.body["rewardedPoints"]) == (200, 90)


def test_duplicate_order_is_305_without_side_effect(sandbox: Sandbox) -> None:
    """A resent orderId is refused with 305 and credits nothing."""
    assert post_order(sandbox, order()).status == 200
    reply = post_order(sandbox, order(time="2024-01-05T00:00:00.000Z"))
    assert (reply.status, reply.body and reply.body["code"]) == (422, 305)
    assert sandbox.account.wallets["p-1"].balance == 100


def test_refund_flow_codes(sandbox: Sandbox) -> None:
    """101 before the player exists, 306 for an unknown order, 302 after a full refund."""
    # Given no order yet
    assert post_refund(sandbox, refund("R-1")).body == {
        "code": 101,
        "message": "Player External ID Not Found",
    }
    post_order(sandbox, order())
    # An unknown order id (case-sensitive)
    reply = post_refund(sandbox, refund("R-1", reverse="o-1"))
    assert (reply.status, reply.body and reply.body["code"]) == (404, 306)
    # A partial refund, then a full one
    assert post_refund(sandbox, refund("R-1", amount=30)).status == 200
    full = post_refund(sandbox, refund("R-2", time="2024-01-03T00:00:00.000Z"))
    assert full.body is not None
    assert full.body["refundEquivalentPoints"] == 70
    # Then anything more is 302
    again = post_refund(sandbox, refund("R-3", amount=1, time="2024-01-04T00:00:00.000Z"))
    assert again.body is not None
    assert again.body["code"] == 302
    assert sandbox.account.wallets["p-1"].balance == 0


def test_same_instant_for_one_player_is_304(sandbox: Sandbox) -> None:
    """Two transactions of one player at the same instant: 304 (when strict)."""
    post_order(sandbox, order("O-1"))
    reply = post_order(sandbox, order("O-2"))
    assert reply.body is not None
    assert reply.body["code"] == 304
    lenient = Sandbox(SandboxConfig(strict_transaction_time=False, rate_limit_per_s=0))
    post_order(lenient, order("O-1"))
    assert post_order(lenient, order("O-2")).status == 200


def test_v2_error_style_uses_400_and_402(sandbox: Sandbox) -> None:
    """The HTTP status per code is configurable, as v3's real statuses are unknown."""
    v2 = Sandbox(SandboxConfig(error_style="v2", rate_limit_per_s=0))
    post_order(v2, order())
    assert post_order(v2, order()).status == 402
    assert post_order(v2, order(paid=0)).status == 400


def test_v4_paths_answer_with_v4_codes(sandbox: Sandbox) -> None:
    """Under v4.0 names, errors use the v4 envelope and codes."""
    raw = json.dumps(
        {"customerId": "c", "orderId": "O", "totalPaid": 5, "orderDate": "2024-01-01T00:00:00Z"}
    ).encode()
    assert sandbox.write("order", True, "/api/v4.0/integrations/orders", KEYS, raw).status == 200
    reply = sandbox.write("order", True, "/api/v4.0/integrations/orders", KEYS, raw)
    assert reply.body is not None
    assert (reply.status, reply.body["code"], reply.body["type"]) == (
        422,
        9004,
        "Transactions Error",
    )


def test_rate_limits_allow_30_per_second_and_360_per_30_seconds() -> None:
    """Both windows hold; a refused request does not use up the budget."""
    clock = FakeClock()
    limits = GameballRateLimits(30, 360, clock)
    per_second = []
    for _ in range(30):  # 40 tries in each of 30 seconds
        per_second.append(sum(limits.allow("orders") for _ in range(40)))
        clock.now += 1
    # 30 a second until the 30-second budget of 360 is gone (12 s), then nothing.
    assert per_second == [30] * 12 + [0] * 18
    # The first second's 30 slide out of the window: room for 30 again, no more.
    assert sum(limits.allow("orders") for _ in range(40)) == 30
    assert limits.allow("transactions")  # another bucket has its own budget


def test_sandbox_enforces_rate_limit_with_429_without_retry_after() -> None:
    """Over the limit Gameball answers 429 with no Retry-After."""
    clock = FakeClock()
    sandbox = Sandbox(SandboxConfig(rate_limit_per_s=2, rate_limit_per_30s=100), clock)
    replies = [
        post_order(sandbox, order(f"O-{n}", time=f"2024-01-01T00:00:0{n}.000Z")) for n in range(3)
    ]
    assert [reply.status for reply in replies] == [200, 200, 429]
    assert replies[2].headers == {}
    clock.now += 1.01
    assert post_order(sandbox, order("O-2", time="2024-01-01T00:00:02.000Z")).status == 200


def test_faults_pipeline(sandbox: Sandbox) -> None:
    """Outage, disabled account, forced 429 (with Retry-After), 5xx and drop-after-apply."""
    faults = sandbox.faults
    faults.update({"outage": True})
    assert post_order(sandbox, order()).status == 503
    faults.update({"reset": True, "account_disabled": True})
    disabled = post_order(sandbox, order())
    assert disabled.body is not None
    assert disabled.body["code"] == 50
    faults.update({"reset": True, "rate_limit_count": 1, "retry_after_s": 2})
    limited = post_order(sandbox, order())
    assert (limited.status, dict(limited.headers)) == (429, {"Retry-After": "2"})
    faults.update({"error_count": 1, "error_status": 502})
    assert post_order(sandbox, order()).status == 502
    faults.update({"drop_after_apply_count": 1})
    dropped = post_order(sandbox, order())
    assert (dropped.status, dropped.drop) == (200, True)
    assert sandbox.account.wallets["p-1"].balance == 100  # applied although dropped
    assert post_order(sandbox, order()).body == {
        "code": 305,
        "message": "Transaction ID Already Exists",
    }
    assert sandbox.state()["request_counts"]["dropped"] == 1


def test_unknown_fault_settings_are_refused(sandbox: Sandbox) -> None:
    """A typo in a fault setting is an error, not silently ignored."""
    with pytest.raises(ValueError, match="outtage"):
        sandbox.faults.update({"outtage": True})
    with pytest.raises(ValueError, match="error_rate"):
        sandbox.faults.update({"error_rate": 1.5})


def run_with_faults(seed: int) -> list[int]:
    sandbox = Sandbox(SandboxConfig(seed=seed, rate_limit_per_s=0, rate_limit_per_30s=0))
    sandbox.faults.update({"error_rate": 0.3, "drop_after_apply_rate": 0.3, "rate_limit_rate": 0.1})
    statuses = []
    for n in range(60):
        reply = post_order(sandbox, order(f"O-{n}", time=f"2024-01-01T00:{n:02d}:00.000Z"))
        statuses.append(-reply.status if reply.drop else reply.status)
    return statuses


def test_same_seed_same_faults() -> None:
    """Faults are deterministic given a seed and differ between seeds."""
    assert run_with_faults(7) == run_with_faults(7)
    assert run_with_faults(7) != run_with_faults(8)
    assert {200, -200, 500, 429} <= set(run_with_faults(7))


def test_rules_can_be_changed_at_run_time(sandbox: Sandbox) -> None:
    """POST /_sandbox/rules semantics: fields sent replace, others stay."""
    sandbox.set_rules({"points_per_unit": "2", "max_cashback_per_order": 150})
    reply = post_order(sandbox, order(paid=100))
    assert reply.body is not None
    assert reply.body["rewardedPoints"] == 150
    with pytest.raises(ValueError, match="points_per_unit"):
        sandbox.set_rules({"points_per_unit": "-1"})


def test_holds_reserve_points_expire_and_are_consumed_once() -> None:
    """A hold reserves points (more than the balance: 309 / 9008), lives hold_ttl_s, and
    an order consumes it once; a consumed, expired or unknown hold is 307 / 9006."""
    now = [0.0]
    account = Account(CashbackRules(), hold_ttl_s=600, clock=lambda: now[0])

    def order(order_id: str, time: str, hold: str | None) -> OrderCommand:
        zero = Decimal(0)
        return OrderCommand(
            "p", order_id, time, Decimal(10), Decimal(10), zero, zero, zero, (), hold
        )

    account.track_order(order("O-1", "2026-01-01T00:00:00.000Z", None))  # earns 10
    with pytest.raises(GameballError) as refused:
        account.hold(HoldCommand("p", Decimal(11)))
    assert (refused.value.code, refused.value.v4_code) == (309, 9008)
    first = account.hold(HoldCommand("p", Decimal("3.5")))["holdReference"]  # 4 points
    answer = account.track_order(order("O-2", "2026-01-01T00:00:01.000Z", first))
    assert (answer["redeemedPoints"], account.wallets["p"].balance) == (4, 16)
    with pytest.raises(GameballError) as reused:
        account.track_order(order("O-3", "2026-01-01T00:00:02.000Z", first))
    assert (reused.value.code, reused.value.v4_code) == (307, 9006)
    late = account.hold(HoldCommand("p", Decimal(1)))["holdReference"]
    now[0] = 601.0
    with pytest.raises(GameballError, match="Hold Reference Not Found"):
        account.track_order(order("O-4", "2026-01-01T00:00:03.000Z", late))
