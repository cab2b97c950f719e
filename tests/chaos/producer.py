"""One producer process of the soak: rebuilds the seeded history and publishes its share,
one ``publish()`` per event as checkout code would, paced over the publishing window.

    python -m tests.chaos.producer --seed 1 --events 2000 --producers 3 --producer 0 --window-s 30

Prints one JSON line: how many publications went to Redis ("queued") and to the spool.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from datetime import UTC, datetime

import httpx

from producers.events import Event, OrderPaid
from producers.publisher import Publisher
from tests.chaos.histories import generate
from worker.settings import SANDBOX_API_KEY, SANDBOX_SECRET_KEY, load_settings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.chaos.producer")
    parser.add_argument("--seed", type=int, required=True)
    parser.add_argument("--events", type=int, required=True)
    parser.add_argument("--producers", type=int, required=True)
    parser.add_argument("--producer", type=int, required=True)
    parser.add_argument("--window-s", type=float, required=True)
    args = parser.parse_args(argv)
    history = generate(args.seed, args.events, args.producers)
    mine = history.for_producer(args.producer)
    counts: Counter[str] = Counter()
    settings = load_settings()
    holder = CheckoutHolds(settings.gameball_base_url, history.checkout_holds)
    with Publisher(settings) as publisher:
        started = time.monotonic()
        for publication in mine:
            delay = started + publication.at * args.window_s - time.monotonic()
            if delay > 0:
                time.sleep(delay)  # pacing the load like real checkouts, not synchronising
            counts[publisher.publish(holder.as_published(publication.event))] += 1
    counts["checkout holds"] = holder.made
    print(json.dumps(dict(counts)), flush=True)
    return 0


class CheckoutHolds:
    """A checkout that holds the customer's points before it publishes the order, and
    names the hold with its value (so that gbq can hold again if it expires). The same
    event published twice names the same hold."""

    def __init__(self, base_url: str, event_ids: set[str]) -> None:
        self.base_url, self.event_ids = base_url, event_ids
        self.published: dict[str, Event] = {}
        self.made = 0

    def as_published(self, event: Event) -> Event:
        if event.event_id not in self.event_ids or not isinstance(event, OrderPaid):
            return event
        if event.event_id not in self.published:
            self.published[event.event_id] = self._held(event)
        return self.published[event.event_id]

    def _held(self, event: OrderPaid) -> Event:
        assert event.redemption is not None
        assert event.redemption.redeemed_amount is not None
        body = {
            "customerId": event.customer_id,
            "transactionTime": datetime.now(UTC).isoformat(),
            "amountToHold": float(event.redemption.redeemed_amount),
        }
        try:
            answer = httpx.post(
                f"{self.base_url}/api/v4.1/integrations/transactions/hold",
                json=body,
                headers={"APIKey": SANDBOX_API_KEY, "secretKey": SANDBOX_SECRET_KEY},
                timeout=5,
            )
        except httpx.HTTPError:
            return event  # Gameball down at checkout: the order goes with its value alone
        if answer.status_code != 200:
            return event
        self.made += 1
        held = event.redemption.model_copy(
            update={"points_hold_reference": answer.json()["holdReference"]}
        )
        return event.model_copy(update={"redemption": held})


if __name__ == "__main__":
    sys.exit(main())
