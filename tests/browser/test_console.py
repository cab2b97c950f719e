"""The console in a real browser (Chromium), against a real worker, scheduler, ledger and
sandbox: what an operator does, click by click."""

from __future__ import annotations

import pytest
import redis
from playwright.sync_api import Page, expect

from harness.processes import SandboxProcess, wait_until
from harness.stack import Stack
from producers.keys import BREAKER_KEY
from tests.console import ConsoleProcess, paid
from worker.rules.breaker import Breaker

pytestmark = pytest.mark.integration


@pytest.fixture
def stack(make_stack: type[Stack], sqlite_url: str) -> Stack:
    return make_stack(sqlite_url, GBQ_BREAKER_COOLDOWN_S="60")


def test_the_overview_shows_the_breaker_open_during_an_outage(
    stack: Stack, sandbox: SandboxProcess, redis_url: str, page: Page
) -> None:
    stack.start_worker(concurrency=2)
    stack.start_scheduler()
    console = ConsoleProcess(stack)
    sandbox.faults(outage=True)
    stack.publisher.publish_many([paid(f"OUT-{n}") for n in range(12)])
    client = redis.Redis.from_url(redis_url)
    wait_until(
        lambda: Breaker.from_json(client.get(BREAKER_KEY)).state.value == "open",
        timeout_s=60,
        what="the breaker opens",
    )
    client.close()
    page.goto(console.url + "/")
    expect(page.locator("#breaker")).to_have_text("open")
    expect(page.locator("#breaker-explanation")).to_contain_text("Gameball is failing")
    expect(page.locator("#workers tr")).to_have_count(3)  # a header, two pool processes
    expect(page.locator("[data-state=scheduled] b")).not_to_have_text("0")
    expect(page.locator("#chart svg polyline")).to_have_count(1)  # the backlog
    expect(page.locator("#chart")).to_contain_text("backlog (max")
    expect(page.locator("#waiting-in-redis")).to_be_visible()
    sandbox.faults(outage=False)


def test_find_a_dead_letter_retry_it_and_see_it_delivered(
    stack: Stack, sandbox: SandboxProcess, page: Page
) -> None:
    stack.start_worker(concurrency=1)
    stack.start_scheduler()
    sandbox.faults(reject_count=1, reject_code=7)
    stack.publisher.publish(paid("WEB-DEAD-1", 15, customer="c-web-retry"))
    assert stack.wait_settled(1) == {"dead": 1}
    console = ConsoleProcess(stack)

    page.goto(console.url + "/dlq")
    page.select_option("select[name=reason]", "rejected")
    page.click("text=Filter")
    expect(page.locator("#total")).to_contain_text("1 dead letter(s) match")
    page.click("text=paid:WEB-DEAD-1")
    expect(page.locator("#state")).to_have_text("dead: rejected")
    expect(page.locator("#attempts")).to_contain_text("dead/rejected")
    page.click("#retry")
    expect(page.locator(".note")).to_contain_text("retried 1 dead letter")

    def delivered() -> bool:
        page.reload()
        return page.locator("#state").inner_text() == "delivered"

    wait_until(delivered, timeout_s=60, what="the retried event is delivered")
    expect(page.locator("#attempts")).to_contain_text("delivered/accepted")
    assert sandbox.balance("c-web-retry") == 15


def test_an_action_without_the_csrf_token_is_refused(
    stack: Stack, sandbox: SandboxProcess, page: Page
) -> None:
    stack.start_worker(concurrency=1)
    sandbox.faults(reject_count=1, reject_code=7)
    stack.publisher.publish(paid("WEB-CSRF-1"))
    stack.start_scheduler()
    assert stack.wait_settled(1) == {"dead": 1}
    console = ConsoleProcess(stack)
    page.goto(console.url + "/events/paid:WEB-CSRF-1")
    page.evaluate("document.querySelectorAll('input[name=csrf]').forEach(e => e.remove())")
    page.click("#retry")
    expect(page.locator("body")).to_contain_text("missing or stale CSRF token")
    assert stack.event("paid:WEB-CSRF-1").state == "dead"
