"""The sandbox answers as Gameball's own OpenAPI documents, and gbq's real client asks as it
documents: every v4 call gbq makes (orders, refunds, cashback, record reads, balances) and
every other v4 call the sandbox serves (holds, the cashback quote), over HTTP on loopback,
each request and each answer judged strictly by tests/openapi/gameball-v4.json."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
import pytest

from harness.processes import SandboxProcess
from producers.events import CashbackAwarded, OrderCancelled, OrderPaid, OrderRefunded, parse_event
from tests.conftest import settings_for
from tests.factories import EXAMPLE_8A
from tests.openapi.recording import RecordingTransport
from worker.gameball.client import GameballClient
from worker.gameball.payloads import build_request, gameball_time
from worker.gameball.records import customer_balance, order_records, transaction_records
from worker.rules.outcomes import Reason
from worker.settings import SANDBOX_API_KEY, SANDBOX_SECRET_KEY

pytestmark = pytest.mark.integration
T0 = datetime(2026, 2, 1, 9, 0, tzinfo=UTC)
KEYS = {"APIKey": SANDBOX_API_KEY, "secretKey": SANDBOX_SECRET_KEY}


@pytest.fixture
def recorded() -> Iterator[RecordingTransport]:
    transport = RecordingTransport()
    yield transport
    transport.close()


def _paid(order: str, total: str, seconds: int, **fields: Any) -> OrderPaid:
    return OrderPaid(
        order_id=order,
        customer_id="judged",
        occurred_at=T0 + timedelta(seconds=seconds),
        total_price=Decimal(total),
        total_paid=Decimal(total),
        **fields,
    )


@pytest.mark.parametrize("version", ["v4.0", "v4.1"])
def test_every_v4_exchange_conforms_to_gameballs_openapi(
    sandbox: SandboxProcess, recorded: RecordingTransport, version: str
) -> None:
    settings = settings_for(sandbox.url, gameball_api_version=version)
    base = f"/api/{version}/integrations"
    with (
        GameballClient(settings, transport=recorded) as gameball,
        httpx.Client(base_url=sandbox.url, headers=KEYS, transport=recorded) as raw,
    ):

        def send(event: Any) -> None:
            outcome = gameball.send(build_request(event, version)).outcome
            assert outcome.reason in {Reason.ACCEPTED, Reason.ID_TAKEN}, outcome

        send(_paid("J-1", "200", 0, channel="web", cart_id="cart-9", return_window_days=0))
        example = parse_event({**EXAMPLE_8A, "customer_id": "judged"})
        send(example)
        send(
            OrderRefunded(
                order_id="J-1",
                refund_id="J-1-R1",
                customer_id="judged",
                occurred_at=T0 + timedelta(minutes=1),
                amount=Decimal(50),
            )
        )
        send(
            CashbackAwarded(
                transaction_id="J-CB",
                customer_id="judged",
                occurred_at=T0 + timedelta(minutes=2),
                amount=Decimal("12.5"),
            )
        )
        moment = gameball_time(T0 + timedelta(minutes=3))
        for hold in ({"amountToHold": 10}, {"pointsToHold": 5}):
            held = raw.post(
                f"{base}/transactions/hold",
                json={"customerId": "judged", "transactionTime": moment, "ignoreOTP": True, **hold},
            )
            assert held.status_code == 200, held.text
        reference = held.json()["holdReference"]
        assert raw.delete(f"{base}/transactions/hold/{reference}").status_code == 200
        held = raw.post(
            f"{base}/transactions/hold",
            json={"customerId": "judged", "transactionTime": moment, "amountToHold": 20},
        )
        send(
            _paid(
                "J-2",
                "30",
                240,
                redemption={"points_hold_reference": held.json()["holdReference"]},
            )
        )
        send(
            OrderCancelled(
                order_id="J-2", customer_id="judged", occurred_at=T0 + timedelta(minutes=5)
            )
        )
        quoted = {"totalPaid": 80, "totalDiscount": 0, "totalShipping": 0}
        quote = raw.post(f"{base}/orders/cashback", json=quoted)
        assert quote.status_code == 200, quote.text
        assert [r.transaction_id for r in order_records(gameball, "J-1", version)] == [
            "J-1",
            "J-1-R1",
        ]
        assert {r.type for r in order_records(gameball, "J-2", version)} == {
            "PaymentReward",
            "Redemption",
            "Refund",
        }  # the order, the points it redeemed, the cancellation and the points it gave back
        found = transaction_records(gameball, "J-CB", "judged", version)
        assert [(r.type, r.points, r.amount) for r in found] == [("PaymentReward", 12, 12.5)]
        balance = customer_balance(gameball, "judged", version)
        assert balance is not None
        assert balance["totalPointsBalance"] == sandbox.balance("judged")
    calls = {(e.method, e.path.removeprefix(base)) for e in recorded.exchanges}
    assert calls >= {
        ("POST", "/orders"),
        ("POST", "/transactions/refund"),
        ("POST", "/transactions/cashback"),
        ("POST", "/transactions/hold"),
        ("POST", "/orders/cashback"),
        ("GET", "/orders/J-1/transactions"),
        ("GET", "/transactions"),
        ("GET", "/customers/judged/balance"),
    }
    errors = [error for e in recorded.exchanges for error in e.errors()]
    assert not errors, "\n".join(errors)


def test_a_customers_transactions_are_read_page_by_page_after_the_last_id(
    sandbox: SandboxProcess, recorded: RecordingTransport
) -> None:
    """450 transactions: three pages of at most 200, each starting after the previous
    page's last gameballTransactionId, until hasMore is false; every row is found."""
    version = "v4.1"
    with GameballClient(settings_for(sandbox.url, gameball_api_version=version)) as gameball:
        for n in range(450):
            event = CashbackAwarded(
                transaction_id=f"PAGE-{n}",
                customer_id="pager",
                occurred_at=T0 + timedelta(seconds=n),
                amount=Decimal(1),
            )
            assert gameball.send(build_request(event, version)).outcome.reason is Reason.ACCEPTED
    with GameballClient(
        settings_for(sandbox.url, gameball_api_version=version), transport=recorded
    ) as gameball:
        assert [
            r.transaction_id for r in transaction_records(gameball, "PAGE-449", "pager", version)
        ] == ["PAGE-449"]
    pages = [e for e in recorded.exchanges if e.path.endswith("/transactions")]
    assert [(e.query.get("startAfter"), e.query["limit"]) for e in pages] == [
        (None, "200"),
        (pages[0].answer["transactions"][-1]["gameballTransactionId"], "200"),  # type: ignore[index]
        (pages[1].answer["transactions"][-1]["gameballTransactionId"], "200"),  # type: ignore[index]
    ]
    assert [e.answer["hasMore"] for e in pages] == [True, True, False]  # type: ignore[index]
    errors = [error for e in recorded.exchanges for error in e.errors()]
    assert not errors, "\n".join(errors)
