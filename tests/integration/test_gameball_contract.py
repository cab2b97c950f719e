"""Contract: the real client against the sandbox over HTTP on loopback."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import httpx
import pytest
from pydantic import SecretStr

from harness.processes import SandboxProcess, free_port, wait_until
from producers.events import (
    CashbackAwarded,
    Event,
    OrderCancelled,
    OrderPaid,
    OrderRefunded,
    Redemption,
    parse_event,
)
from tests.conftest import settings_for
from tests.factories import EXAMPLE_8A
from worker.gameball.client import GameballClient
from worker.gameball.payloads import build_request
from worker.gameball.records import customer_balance, order_records, transaction_records
from worker.ops.status import explain
from worker.rules.breaker import Breaker, State
from worker.rules.outcomes import Outcome, OutcomeKind, Reason
from worker.settings import SANDBOX_API_KEY, SANDBOX_SECRET_KEY

pytestmark = pytest.mark.integration
T0 = datetime(2026, 1, 10, 9, 0, tzinfo=UTC)


def paid(
    order_id: str = "ORD-1", customer: str = "cust-1", total: str = "100", seconds: int = 0
) -> OrderPaid:
    return OrderPaid(
        order_id=order_id,
        customer_id=customer,
        occurred_at=T0 + timedelta(seconds=seconds),
        total_price=Decimal(total),
        total_paid=Decimal(total),
    )


def refund(
    refund_id: str,
    amount: str | None,
    order_id: str = "ORD-1",
    customer: str = "cust-1",
    minutes: int = 1,
) -> OrderRefunded:
    return OrderRefunded(
        order_id=order_id,
        refund_id=refund_id,
        customer_id=customer,
        occurred_at=T0 + timedelta(minutes=minutes),
        amount=None if amount is None else Decimal(amount),
    )


@pytest.fixture
def client(sandbox: SandboxProcess) -> Iterator[GameballClient]:
    with GameballClient(settings_for(sandbox.url)) as gameball:
        yield gameball


def send(client: GameballClient, event: Event, version: str = "v3.0") -> Outcome:
    return client.send(build_request(event, version)).outcome  # type: ignore[arg-type]


def test_paid_order_credits_the_wallet(client: GameballClient, sandbox: SandboxProcess) -> None:
    """A paid order is accepted and rewards total_paid at the account's rate."""
    sandbox.rules(points_per_unit="2")
    outcome = send(client, paid(total="327.50"))
    assert (outcome.kind, outcome.reason, outcome.status) == (
        OutcomeKind.DELIVERED,
        Reason.ACCEPTED,
        200,
    )
    assert sandbox.balance("cust-1") == 655
    status, body = client.get_json("/api/v3.0/integrations/player/cust-1/balance")
    assert status == 200
    assert isinstance(body, dict)
    assert body["availablePointsBalance"] == 655


def test_partial_then_full_refund(client: GameballClient, sandbox: SandboxProcess) -> None:
    """A partial refund takes back its share; a full refund the rest."""
    send(client, paid())
    assert send(client, refund("RF-1", "30")).kind == OutcomeKind.DELIVERED
    assert sandbox.balance("cust-1") == 70
    assert send(client, refund("RF-2", None, minutes=2)).kind == OutcomeKind.DELIVERED
    assert sandbox.balance("cust-1") == 0
    status, body = client.get_json("/api/v3.0/integrations/order/ORD-1/transactions")
    assert status == 200
    assert isinstance(body, dict)
    assert [row["transactionType"] for row in body["transactions"]] == [
        "PaymentReward",
        "PartialRefund",
        "Refund",
    ]


def test_cancel_reverses_everything_and_a_repeat_counts_as_applied(
    client: GameballClient, sandbox: SandboxProcess
) -> None:
    """Cancel = full refund; resending it is 305 (the delivery flow settles whose id it
    is); another full refund (302) is delivered."""
    send(client, paid())
    cancel = OrderCancelled(
        order_id="ORD-1", customer_id="cust-1", occurred_at=T0 + timedelta(hours=1)
    )
    assert send(client, cancel).reason == Reason.ACCEPTED
    assert sandbox.balance("cust-1") == 0
    again = send(client, cancel)
    assert (again.kind, again.reason, again.code) == (OutcomeKind.UNSETTLED, Reason.ID_TAKEN, 305)
    full = send(client, refund("RF-9", None, minutes=90))
    assert (full.kind, full.code) == (OutcomeKind.DELIVERED, 302)
    assert sandbox.balance("cust-1") == 0


def test_cashback(client: GameballClient, sandbox: SandboxProcess) -> None:
    """Cashback on an amount outside an order."""
    event = CashbackAwarded(
        transaction_id="tra_1", customer_id="p-9", occurred_at=T0, amount=Decimal("99.98")
    )
    assert send(client, event).kind == OutcomeKind.DELIVERED
    assert sandbox.balance("p-9") == 99


def test_duplicate_resend_is_delivered_and_credits_once(
    client: GameballClient, sandbox: SandboxProcess
) -> None:
    """Same ids → 305, unsettled until the delivery flow reads whose id it is; balance
    unchanged."""
    first, second = send(client, paid()), send(client, paid())
    assert first.reason == Reason.ACCEPTED
    assert (second.kind, second.reason, second.code) == (
        OutcomeKind.UNSETTLED,
        Reason.ID_TAKEN,
        305,
    )
    counts = sandbox.state()["request_counts"]
    assert (counts["total"], counts["applied"]) == (2, 1)
    assert sandbox.balance("cust-1") == 100


def test_refund_before_paid_waits(client: GameballClient, sandbox: SandboxProcess) -> None:
    """A refund ahead of its order is 'waiting' (101 or 306), then goes through after it."""
    early = send(client, refund("RF-1", "10"))
    assert (early.kind, early.code) == (OutcomeKind.WAITING, 101)
    send(client, paid("OTHER", total="5", seconds=5))  # the player exists, the order not yet
    still = send(client, refund("RF-1", "10", minutes=3))
    assert (still.kind, still.code) == (OutcomeKind.WAITING, 306)
    send(client, paid())
    assert send(client, refund("RF-1", "10", minutes=4)).kind == OutcomeKind.DELIVERED
    assert sandbox.balance("cust-1") == 95


def test_bad_key_pauses(sandbox: SandboxProcess) -> None:
    """A wrong key is 'paused' for everyone, and nothing is applied."""
    settings = settings_for(sandbox.url, gameball_api_key=SecretStr("not-the-key"))
    with GameballClient(settings) as client:
        outcome = send(client, paid())
    assert (outcome.kind, outcome.reason, outcome.status) == (
        OutcomeKind.PAUSED,
        Reason.UNAUTHORIZED,
        401,
    )
    assert sandbox.state()["wallets"] == {}


def test_injected_5xx_is_retried(client: GameballClient, sandbox: SandboxProcess) -> None:
    """A 5xx is a retry; the next attempt delivers."""
    sandbox.faults(error_count=1, error_status=503)
    failed = send(client, paid())
    assert (failed.kind, failed.reason, failed.status) == (
        OutcomeKind.RETRY,
        Reason.SERVER_ERROR,
        503,
    )
    assert send(client, paid()).reason == Reason.ACCEPTED
    assert sandbox.balance("cust-1") == 100


def test_timeout_is_retried_and_the_late_apply_is_not_doubled(sandbox: SandboxProcess) -> None:
    """The client times out while Gameball still applies: the retry gets 305, one credit."""
    sandbox.faults(latency_s=1.0)
    with GameballClient(settings_for(sandbox.url, gameball_read_timeout_s=0.2)) as client:
        timed_out = send(client, paid())
        assert (timed_out.kind, timed_out.reason) == (OutcomeKind.RETRY, Reason.TIMEOUT)
        wait_until(
            lambda: sandbox.balance("cust-1") == 100,
            timeout_s=10,
            what="the slow request to be applied",
        )
        sandbox.faults(latency_s=0)
        retried = send(client, paid())
    assert (retried.kind, retried.reason) == (OutcomeKind.UNSETTLED, Reason.ID_TAKEN)
    assert sandbox.balance("cust-1") == 100


def test_dropped_response_is_retried_without_double_credit(
    client: GameballClient, sandbox: SandboxProcess
) -> None:
    """Applied then the connection dropped: retry, 305, credited once."""
    sandbox.faults(drop_after_apply_count=1)
    lost = send(client, paid())
    assert (lost.kind, lost.reason) == (OutcomeKind.RETRY, Reason.RESPONSE_LOST)
    assert sandbox.balance("cust-1") == 100
    assert send(client, paid()).reason == Reason.ID_TAKEN
    assert sandbox.balance("cust-1") == 100


def test_429_without_and_with_retry_after(client: GameballClient, sandbox: SandboxProcess) -> None:
    """429 is a retry; a Retry-After, when sent, is passed on."""
    sandbox.faults(rate_limit_count=1)
    plain = send(client, paid())
    assert (plain.kind, plain.reason, plain.retry_after_s) == (
        OutcomeKind.RETRY,
        Reason.RATE_LIMITED,
        None,
    )
    sandbox.faults(rate_limit_count=1, retry_after_s=3)
    told = send(client, paid())
    assert (told.reason, told.retry_after_s) == (Reason.RATE_LIMITED, 3.0)
    assert sandbox.state()["wallets"] == {}


def test_sandbox_enforces_gameballs_limit(start_sandbox: type[SandboxProcess]) -> None:
    """Past the 30-second budget the sandbox answers 429 (no Retry-After)."""
    limited = start_sandbox("--rate-limit-per-s", "0", "--rate-limit-per-30s", "3")
    with GameballClient(settings_for(limited.url)) as client:
        outcomes = [send(client, paid(f"O-{n}", customer=f"c-{n}")) for n in range(5)]
    assert [o.reason for o in outcomes] == [Reason.ACCEPTED] * 3 + [Reason.RATE_LIMITED] * 2
    assert outcomes[3].retry_after_s is None


def test_outage_and_disabled_account(client: GameballClient, sandbox: SandboxProcess) -> None:
    """An outage is a retry; a disabled account pauses."""
    sandbox.faults(outage=True)
    assert (send(client, paid()).reason, sandbox.state()["wallets"]) == (Reason.SERVER_ERROR, {})
    sandbox.faults(reset=True, account_disabled=True)
    disabled = send(client, paid())
    assert (disabled.kind, disabled.reason, disabled.code) == (
        OutcomeKind.PAUSED,
        Reason.ACCOUNT_DISABLED,
        50,
    )


def test_a_time_clash_keeps_gameballs_code_until_the_flow_settles_it(
    client: GameballClient, sandbox: SandboxProcess
) -> None:
    """Two transactions of one player at the same instant: 304 and its message, unsettled
    (the delivery flow reads whose transaction holds the instant)."""
    send(client, paid("A"))
    clash = send(client, paid("B"))
    assert (clash.kind, clash.reason, clash.code, clash.message) == (
        OutcomeKind.UNSETTLED,
        Reason.TIME_TAKEN,
        304,
        "Transaction Time Already Exists",
    )


def test_v4_client_against_v4_paths(sandbox: SandboxProcess) -> None:
    """The v4.0 mapping works end to end: order, partial refund, duplicate (9004)."""
    with GameballClient(settings_for(sandbox.url, gameball_api_version="v4.0")) as client:
        assert send(client, paid(), "v4.0").reason == Reason.ACCEPTED
        assert send(client, refund("RF-1", "25"), "v4.0").reason == Reason.ACCEPTED
        again = send(client, refund("RF-1", "25"), "v4.0")
    assert (again.reason, again.code) == (Reason.ID_TAKEN, 9004)
    assert sandbox.balance("cust-1") == 75


def test_wrong_base_url_pauses_instead_of_killing(sandbox: SandboxProcess) -> None:
    """A 404 that is not Gameball's (wrong path prefix) pauses delivery."""
    with GameballClient(settings_for(f"{sandbox.url}/not-gameball")) as client:
        outcome = send(client, paid())
    assert (outcome.kind, outcome.reason) == (OutcomeKind.PAUSED, Reason.MISCONFIGURED_ENDPOINT)


def test_nothing_listening_is_a_connection_error() -> None:
    """Connection refused is a retry, not an exception."""
    with GameballClient(settings_for(f"http://127.0.0.1:{free_port()}")) as client:
        outcome = send(client, paid())
    assert (outcome.kind, outcome.reason) == (OutcomeKind.RETRY, Reason.CONNECTION_ERROR)


@pytest.mark.parametrize("version", ["v3.0", "v4.0", "v4.1"])
def test_an_account_with_a_minimum_version_refuses_older_calls_and_pauses(
    start_sandbox: type[SandboxProcess], version: str
) -> None:
    """introduction-v4.1.mdx: with "minimum allowed version = v4.1" Gameball rejects
    v3.0 and v4.0 calls. The refusal pauses delivery (nothing is dead-lettered) and
    `gbq status` says to set GBQ_GAMEBALL_API_VERSION=v4.1; v4.1 is accepted."""
    strict = start_sandbox("--minimum-version", "v4.1", "--rate-limit-per-s", "0")
    with GameballClient(settings_for(strict.url, gameball_api_version=version)) as gameball:
        outcome = gameball.send(build_request(paid(), version)).outcome  # type: ignore[arg-type]
    if version == "v4.1":
        assert (outcome.kind, outcome.reason) == (OutcomeKind.DELIVERED, Reason.ACCEPTED)
        return
    assert (outcome.kind, outcome.reason, outcome.status) == (
        OutcomeKind.PAUSED,
        Reason.UNAUTHORIZED,
        403,
    )
    assert "minimum is v4.1" in outcome.message
    hint = explain(Breaker(State.PAUSED, 0.0, f"{outcome.reason}: {outcome.message}"))
    assert "GBQ_GAMEBALL_API_VERSION=v4.1" in hint


@pytest.mark.parametrize(
    "path",
    [
        "/api/v3.0/Integrations/order",  # the official SDKs' spelling
        "//api/v3.0/integrations/order",  # base URL with a trailing slash, path with a leading one
        "/API/V3.0/INTEGRATIONS/ORDER",
    ],
)
def test_the_sandbox_takes_the_paths_the_official_sdks_send(
    sandbox: SandboxProcess, path: str
) -> None:
    request = build_request(paid(order_id=f"SDK-{len(path)}"), "v3.0")
    headers = {"APIKey": SANDBOX_API_KEY, "secretKey": SANDBOX_SECRET_KEY}
    answer = httpx.post(sandbox.url + path, content=request.body, headers=headers, timeout=10)
    assert answer.status_code == 200, answer.text
    assert answer.json()["rewardedPoints"] == 100


def test_v4_errors_carry_gameballs_categories_and_3016_for_malformed_json(
    client: GameballClient,
) -> None:
    """status-error-codes.mdx: v4 errors have a `type` by code range; malformed JSON is 3016."""
    request = build_request(paid(), "v4.0")
    outcome = client.send(replace(request, body=b"{not json")).outcome
    assert (outcome.kind, outcome.code, outcome.status) == (OutcomeKind.DEAD, 3016, 400)
    assert json.loads(outcome.body_excerpt)["type"] == "Payload Error"


@pytest.mark.parametrize("version", ["v3.0", "v4.0", "v4.1"])
def test_an_orders_transactions_are_read_in_every_version(
    sandbox: SandboxProcess, version: str
) -> None:
    """Reconciliation reads GET …/order(s)/{orderId}/transactions (openapi.json)."""
    with GameballClient(settings_for(sandbox.url, gameball_api_version=version)) as gameball:
        assert order_records(gameball, "ORD-1", version) == []  # type: ignore[arg-type]
        gameball.send(build_request(paid(), version))  # type: ignore[arg-type]
        gameball.send(build_request(refund("R-1", "10"), version))  # type: ignore[arg-type]
        held = order_records(gameball, "ORD-1", version)  # type: ignore[arg-type]
    assert [(r.transaction_id, r.type) for r in held] == [
        ("ORD-1", "PaymentReward"),
        ("R-1", "PartialRefund"),
    ]


SDK_BODIES = json.loads(
    (Path(__file__).resolve().parents[1] / "fixtures" / "sdk_python_v3_bodies.json").read_text()
)


def test_the_sandbox_accepts_what_the_official_python_sdk_sends(sandbox: SandboxProcess) -> None:
    """The official SDK's v3 bodies (nulls for every absent field, line items without a
    price, `source`, microsecond times): accepted, with the wallet moving as Gameball's
    rules say, in the order the SDK would send them."""
    headers = {"APIKey": SANDBOX_API_KEY, "secretKey": SANDBOX_SECRET_KEY}
    balance = 0
    for call in ("order", "partial_refund", "full_refund", "cashback"):
        spec = SDK_BODIES[call]
        answer = httpx.post(sandbox.url + spec["path"], json=spec["body"], headers=headers)
        assert answer.status_code == 200, (call, answer.text)
        balance += spec["points"]
        assert sandbox.balance("sdk-player") == balance, call


def test_v4_answers_have_the_openapi_shapes(
    client: GameballClient, sandbox: SandboxProcess
) -> None:
    """openapi.json: cashback answers rewardAmount/rewardEquivalentPoints, a refund
    refundTransactionId and refundEquivalentPoints."""
    headers = {"APIKey": SANDBOX_API_KEY, "secretKey": SANDBOX_SECRET_KEY}
    base = f"{sandbox.url}/api/v4.1/integrations"
    cashback = {
        "customerId": "shape",
        "transactionId": "SHAPE-CB",
        "transactionTime": "2026-01-10T09:00:00.000Z",
        "amount": 12.5,
    }
    answer = httpx.post(f"{base}/transactions/cashback", json=cashback, headers=headers).json()
    assert set(answer) == {
        "customerId",
        "gameballTransactionId",
        "rewardAmount",
        "rewardEquivalentPoints",
    }
    assert (answer["rewardAmount"], answer["rewardEquivalentPoints"]) == (12.5, 12)
    refund = {
        "customerId": "shape",
        "refundTransactionId": "SHAPE-R",
        "reverseTransactionId": "SHAPE-CB",
        "transactionTime": "2026-01-10T09:01:00.000Z",
        "refundAmount": 2.5,
    }
    answer = httpx.post(f"{base}/transactions/refund", json=refund, headers=headers).json()
    assert answer["refundTransactionId"] == "SHAPE-R"
    assert "transactionId" not in answer
    assert answer["refundEquivalentPoints"] == 2


@pytest.mark.parametrize("version", ["v3.0", "v4.0", "v4.1"])
def test_an_order_consumes_the_points_hold_it_names(sandbox: SandboxProcess, version: str) -> None:
    """Hold made at checkout (Gameball's Hold API), then the order names it: the held
    points leave the wallet once; naming it again is 307/9006 (dead, with the code)."""
    v4 = version != "v3.0"
    with GameballClient(settings_for(sandbox.url, gameball_api_version=version)) as gameball:
        gameball.send(build_request(paid(customer="holder"), version))  # type: ignore[arg-type]
        reference = sandbox.hold(version, "holder", 30)
        redeeming = paid(order_id="ORD-2", customer="holder", total="50", seconds=60)
        redeeming = redeeming.model_copy(
            update={"redemption": Redemption(points_hold_reference=reference)}
        )
        outcome = gameball.send(build_request(redeeming, version)).outcome  # type: ignore[arg-type]
        assert (outcome.kind, outcome.reason) == (OutcomeKind.DELIVERED, Reason.ACCEPTED)
        assert sandbox.balance("holder") == 100 - 30 + 50
        again = paid(order_id="ORD-3", customer="holder", total="5", seconds=120)
        again = again.model_copy(update={"redemption": redeeming.redemption})
        outcome = gameball.send(build_request(again, version)).outcome  # type: ignore[arg-type]
    assert (outcome.kind, outcome.code) == (OutcomeKind.DEAD, 9006 if v4 else 307)


@pytest.mark.parametrize("version", ["v3.0", "v4.0", "v4.1"])
def test_refunds_give_back_the_points_an_order_redeemed(
    sandbox: SandboxProcess, version: str
) -> None:
    """Gameball's own example (how-refunds-work.mdx): 100 paid as 60 in money and 40 in
    points earns 60; a refund of 80 takes the 60 back and returns 20 points; the
    cancellation returns the other 20. The hold the order consumed is never released."""
    with GameballClient(settings_for(sandbox.url, gameball_api_version=version)) as gameball:

        def deliver(event: Event) -> Outcome:
            return gameball.send(build_request(event, version)).outcome  # type: ignore[arg-type]

        assert deliver(paid(customer="spender")).kind is OutcomeKind.DELIVERED  # 100 points
        reference = sandbox.hold(version, "spender", 40)
        order = OrderPaid(
            order_id="MIXED",
            customer_id="spender",
            occurred_at=T0 + timedelta(minutes=5),
            total_price=Decimal(100),
            total_paid=Decimal(60),
            total_discount=Decimal(40),
            redemption=Redemption(points_hold_reference=reference),
        )
        assert deliver(order).reason is Reason.ACCEPTED
        assert sandbox.balance("spender") == 100 - 40 + 60
        assert deliver(refund("MIXED-R1", "80", "MIXED", "spender", 6)).reason is Reason.ACCEPTED
        assert sandbox.balance("spender") == 120 - 60 + 20
        cancel = OrderCancelled(
            order_id="MIXED", customer_id="spender", occurred_at=T0 + timedelta(minutes=7)
        )
        assert deliver(cancel).reason is Reason.ACCEPTED
        assert sandbox.balance("spender") == 100  # where the customer started
        # "Already cancelled": the delivery flow's ledger says whether the cancellation
        # came after this refund (then it took its share back) or before (then dead)
        again = refund("MIXED-R2", "1", "MIXED", "spender", 8)
        late = deliver(again)
        assert (late.reason, sandbox.balance("spender")) == (Reason.ORDER_CANCELLED, 100)


@pytest.mark.parametrize("version", ["v3.0", "v4.1"])
def test_an_order_paid_entirely_with_points_earns_nothing_and_its_refunds_return_the_points(
    sandbox: SandboxProcess, version: str
) -> None:
    """Gameball's how-refunds-work.mdx, "Full and Partial Refund - Entirely Paid Using
    Points Balance": a product bought with 100 points worth 100 USD earns no cashback (a
    zero payment); returning 20 USD of it gives 20 points back, returning the other 80
    gives back the rest, leaving the customer with their original 100 points."""
    with GameballClient(settings_for(sandbox.url, gameball_api_version=version)) as gameball:

        def deliver(event: Event) -> Outcome:
            return gameball.send(build_request(event, version)).outcome  # type: ignore[arg-type]

        assert deliver(paid(customer="saver")).reason is Reason.ACCEPTED  # 100 points saved
        reference = sandbox.hold(version, "saver", 100)
        order = OrderPaid(
            order_id="ALL-POINTS",
            customer_id="saver",
            occurred_at=T0 + timedelta(minutes=5),
            total_price=Decimal(100),
            total_discount=Decimal(100),
            total_paid=Decimal(0),
            redemption=Redemption(points_hold_reference=reference),
        )
        assert deliver(order).reason is Reason.ACCEPTED
        assert sandbox.balance("saver") == 0  # spent, and no cashback on a zero payment
        first = refund("ALL-POINTS-R1", "20", "ALL-POINTS", "saver", 6)
        assert deliver(first).reason is Reason.ACCEPTED
        assert sandbox.balance("saver") == 20
        second = refund("ALL-POINTS-R2", "80", "ALL-POINTS", "saver", 7)
        assert deliver(second).reason is Reason.ACCEPTED
        assert sandbox.balance("saver") == 100


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("channel", "kiosk"),
        ("channel", "WEB"),
        ("cashbackConfigurations", {"returnWindow": 7301}),
        ("cashbackConfigurations", {"returnWindow": -1}),
        ("cashbackConfigurations", {"returnWindow": 1.5}),
        ("cashbackConfigurations", {"returnWindow": "7"}),
        ("cashbackConfigurations", "7"),
    ],
)
def test_the_sandbox_refuses_v4_channels_and_return_windows_outside_the_openapi(
    sandbox: SandboxProcess, field: str, value: object
) -> None:
    """openapi.json: channel is mobile, pos, web or callcenter; returnWindow 0 to 7300
    days. Anything else is refused with the field named and nothing credited; what gbq
    sends is accepted (its own validation keeps to the same ranges)."""
    headers = {"APIKey": SANDBOX_API_KEY, "secretKey": SANDBOX_SECRET_KEY}
    body = {"customerId": "ranges", "orderId": "RANGE", "totalPrice": 5, "totalPaid": 5}
    url = f"{sandbox.url}/api/v4.1/integrations/orders"
    answer = httpx.post(url, json={**body, field: value}, headers=headers)
    assert answer.status_code in (400, 422)
    assert field in answer.json()["message"]
    assert sandbox.balance("ranges") == 0
    fine = {**body, "channel": "pos", "cashbackConfigurations": {"returnWindow": 7300}}
    assert httpx.post(url, json=fine, headers=headers).status_code == 200
    cashback = {
        "customerId": "ranges",
        "transactionId": "RANGE-CB",
        "transactionTime": "2026-01-10T09:00:00.000Z",
        "amount": 1,
    }
    cashback_url = f"{sandbox.url}/api/v4.1/integrations/transactions/cashback"
    late = {**cashback, "configurations": {"returnWindow": 9000}}
    assert httpx.post(cashback_url, json=late, headers=headers).status_code in (400, 422)


@pytest.mark.parametrize("version", ["v3.0", "v4.0", "v4.1"])
def test_gameballs_transaction_lists_find_a_cashback_by_its_id(
    sandbox: SandboxProcess, version: str
) -> None:
    """The read that settles a cashback's "already exists" and reconciles cashbacks: v3.0
    lists by transaction id (any customer), v4 by customer, paged (150 transactions here:
    two pages)."""
    with GameballClient(settings_for(sandbox.url, gameball_api_version=version)) as gameball:
        for n in range(150):
            event = CashbackAwarded(
                transaction_id=f"LIST-{n}",
                customer_id="lister",
                occurred_at=T0 + timedelta(seconds=n),
                amount=Decimal(1),
            )
            assert gameball.send(build_request(event, version)).outcome.reason is Reason.ACCEPTED  # type: ignore[arg-type]
        found = transaction_records(gameball, "LIST-149", "lister", version)  # type: ignore[arg-type]
        assert [(r.transaction_id, r.customer_id, r.amount) for r in found] == [
            ("LIST-149", "lister", 1)
        ]
        assert transaction_records(gameball, "LIST-150", "lister", version) == []  # type: ignore[arg-type]
        balance = customer_balance(gameball, "lister", version)  # type: ignore[arg-type]
        assert balance is not None
        total = "pointsBalance" if version == "v3.0" else "totalPointsBalance"
        assert balance[total] == 150
        assert customer_balance(gameball, "nobody", version) is None  # type: ignore[arg-type]


@pytest.mark.parametrize("version", ["v3.0", "v4.1"])
def test_gameballs_example_8a_a_free_items_discount_covers_its_tax(
    client: GameballClient, sandbox: SandboxProcess, version: str
) -> None:
    """Gameball's order-calculation-examples.mdx, Example 8a, as published and sent: the
    free line's discount is its price plus its tax ($345); Gameball accepts it and the
    customer earns on totalPaid ($230) only."""
    event = parse_event({**EXAMPLE_8A, "customer_id": "cust-8a", "occurred_at": T0.isoformat()})
    request = build_request(event, version)  # type: ignore[arg-type]
    body = json.loads(request.body)
    assert body["lineItems"][0]["discount"] == 345
    outcome = client.send(request).outcome
    assert (outcome.kind, outcome.reason) == (OutcomeKind.DELIVERED, Reason.ACCEPTED)
    assert sandbox.balance("cust-8a") == 230


def test_a_time_in_gameballs_future_is_retried_not_dead(sandbox: SandboxProcess) -> None:
    """9007 "Transaction Time Not Valid" (status-error-codes.mdx: a future timestamp), as
    Gameball answers it on v4.1 (422): retried, and the same request accepted once
    Gameball's clock has caught up (here: once the injected refusal is spent)."""
    sandbox.faults(reject_count=1, reject_code=9007)
    with GameballClient(settings_for(sandbox.url, gameball_api_version="v4.1")) as gameball:
        request = build_request(paid("FUTURE", customer="cust-future"), "v4.1")
        first = gameball.send(request).outcome
        assert (first.kind, first.reason, first.status, first.code) == (
            OutcomeKind.RETRY,
            Reason.TRANSIENT_REJECTION,
            422,
            9007,
        )
        again = gameball.send(request).outcome
    assert (again.kind, again.reason) == (OutcomeKind.DELIVERED, Reason.ACCEPTED)
    assert sandbox.balance("cust-future") == 100


def test_the_sandbox_takes_fractional_quantities_and_line_extras_as_the_openapi_types_them(
    sandbox: SandboxProcess,
) -> None:
    """openapi.json types lineItems[].quantity as a number (1.5 kg of coffee) and gives each
    line an open `extra` object: both accepted, the line valued at price x quantity."""
    headers = {"APIKey": SANDBOX_API_KEY, "secretKey": SANDBOX_SECRET_KEY}
    order = {
        "customerId": "weigher",
        "orderId": "KG-1",
        "orderDate": "2026-01-10T09:00:00.000Z",
        "totalPrice": 15,
        "totalPaid": 15,
        "lineItems": [
            {"productId": "COFFEE", "quantity": 1.5, "price": 10, "extra": {"unit": "kg"}}
        ],
    }
    url = f"{sandbox.url}/api/v4.1/integrations/orders"
    answer = httpx.post(url, json=order, headers=headers)
    assert answer.status_code == 200, answer.text
    assert sandbox.balance("weigher") == 15
