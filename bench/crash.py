"""Benchmark 5: a worker killed (SIGKILL) with deliveries in flight.

The victim worker (prefork × 4) has four deliveries in flight when it is SIGKILLed with
its pool, as a lost host would be. Measured: seconds from the kill to each in-flight
event's redelivered call. gbq hands a dead process's leases back once its heartbeat
lapses (GBQ_HEARTBEAT_TTL_S, 6 s by default; the scheduler looks every tick), then the
events go at the front of the queue:

- to an idle replacement (Gameball answers after 3 s, as before);
- to a replacement that is busy with a backlog of paid events and the refunds they
  release, Gameball answering at once or after 2 s (the recovered work must not wait
  behind a process's run of inline deliveries, nor a full prefetch);
- only the pool processes killed (an OOM kill): the main process hands back at once.

Plain Celery with late acks gets its messages back only after Redis's visibility timeout
(kombu: 3,600 s by default), and with Celery's default early acks the tasks are gone.
"""

from __future__ import annotations

import os
import signal
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

from bench.baseline import counters, send_naive_posts, start_celery_worker
from bench.common import (
    LIMITS_OFF,
    Report,
    Services,
    services,
    wait_ready,
)
from harness.processes import SandboxProcess, pool_children, wait_until
from harness.stack import Process, Stack
from producers.events import Event, OrderPaid, OrderRefunded
from worker.gameball.payloads import build_request
from worker.sandbox.stream import generate

LATENCY_S = 3.0
IN_FLIGHT = 4
REFUNDS = 6  # per order of the busy replacement's backlog


def paid_events(prefix: str) -> list[Event]:
    """Four paid events of four orders: nothing waits on anything else."""
    scenario = generate(seed=500, orders=IN_FLIGHT, total_events=IN_FLIGHT, prefix=prefix)
    return [event for event in scenario.events if event.kind == "paid"]


def kill(process: Process) -> float:
    os.killpg(process.popen.pid, signal.SIGKILL)
    process.popen.wait(timeout=30)
    return time.time()


def refunds_then_paid(prefix: str, orders: int) -> list[Event]:
    """``orders`` orders, each as REFUNDS refunds published before the paid event: each
    refund waits, and the paid event's settle releases them all to its own task."""
    at = datetime(2026, 11, 1, tzinfo=UTC)
    events: list[Event] = []
    for number in range(orders):
        order, customer = f"{prefix}-{number}", f"{prefix}-c{number}"
        events += [
            OrderRefunded(
                order_id=order,
                refund_id=f"{order}-R{refund}",
                customer_id=customer,
                occurred_at=at + timedelta(minutes=refund),
                amount=Decimal(1),
            )
            for refund in range(1, REFUNDS + 1)
        ]
        events.append(
            OrderPaid(
                order_id=order,
                customer_id=customer,
                occurred_at=at,
                total_price=Decimal(100),
                total_paid=Decimal(100),
            )
        )
    return events


def four_in_flight(stack: Stack, name: str, events: list[Event]) -> Process:
    """A worker (prefork × 4) and the scheduler, the events published and all four
    deliveries in flight (Gameball holds their calls)."""
    worker = stack.start_worker(name, concurrency=IN_FLIGHT)
    stack.start_scheduler()
    wait_ready(worker)
    stack.publisher.publish_many(events)
    wait_until(
        lambda: stack.states()["in_flight"] == IN_FLIGHT,
        timeout_s=30,
        what="four deliveries in flight",
    )
    return worker


def gbq_case(
    running: Services, sandbox: SandboxProcess, lease_s: int, *, children_only: bool = False
) -> list[float]:
    """Seconds from the kill to each in-flight event's redelivered call. ``children_only``
    kills the pool processes alone (an OOM kill), not the worker."""
    running.flush_redis()
    sandbox.reset()
    sandbox.faults(latency_s=LATENCY_S)
    events = paid_events(f"G{lease_s}{'c' if children_only else ''}")
    stack = running.stack(running.ledger(), sandbox.url, GBQ_LEASE_S=str(lease_s), **LIMITS_OFF)
    worker = four_in_flight(stack, "w1", events)
    if children_only:
        for child in pool_children(worker.popen.pid):
            os.kill(child, signal.SIGKILL)
        killed = time.time()  # Celery starts new pool processes by itself
    else:
        killed = kill(worker)
        wait_ready(stack.start_worker("w2", concurrency=IN_FLIGHT))
    stack.wait_settled(IN_FLIGHT, timeout_s=lease_s + 60)
    times = wait_until(
        lambda: redelivered_calls(sandbox, events, killed),
        timeout_s=60,
        what="the redelivered calls in Gameball's log",
    )
    running.close_stacks()
    return times


def redelivered_calls(
    sandbox: SandboxProcess, events: list[Event], killed: float
) -> list[float] | None:
    """Seconds from the kill to the first call for each event that reached Gameball after
    it (the sandbox logs when each request came in), or None until all have. Gameball's
    log, not the ledger's delivery time: a redelivered call that finds the killed one
    applied ("already exists") reads Gameball's records before it is settled, which is a
    second call, not a later redelivery."""
    ids = {build_request(event, "v3.0").transaction_id for event in events}
    first: dict[str, float] = {}
    for row in sandbox.requests():
        arrived = float(row["received_at"])
        if row["transaction_id"] in ids and arrived > killed:
            first.setdefault(row["transaction_id"], arrived - killed)
    return sorted(first.values()) if len(first) == len(ids) else None


def busy_replacement_case(
    running: Services, sandbox: SandboxProcess, latency_s: float, backlog_orders: int
) -> list[float]:
    """Seconds from the kill to each in-flight event's redelivered call, with the
    replacement worker busy: ``backlog_orders`` orders of REFUNDS refunds published before
    their paid event (each paid event's settle releases them), Gameball answering after
    ``latency_s``. The shipped defaults, rate limit off."""
    running.flush_redis()
    sandbox.reset()
    sandbox.faults(slow_count=IN_FLIGHT, slow_s=120)  # the victim's four calls hang
    victims = paid_events(f"HB{latency_s:g}")
    stack = running.stack(running.ledger(), sandbox.url, **LIMITS_OFF)
    victim = four_in_flight(stack, "victim", victims)
    replacement = stack.start_worker("replacement", concurrency=IN_FLIGHT)
    wait_ready(replacement)
    sandbox.faults(latency_s=latency_s)
    backlog = refunds_then_paid(f"B{latency_s:g}", backlog_orders)
    for start in range(0, len(backlog), 500):
        stack.publisher.publish_many(backlog[start : start + 500])
    wait_until(
        lambda: stack.states()["delivered"] >= IN_FLIGHT,
        timeout_s=60,
        what="the replacement at work",
    )
    killed = kill(victim)

    times = wait_until(
        lambda: redelivered_calls(sandbox, victims, killed),
        timeout_s=120,
        what="the in-flight events redelivered",
    )
    running.close_stacks()
    return times


def celery_case(
    running: Services, sandbox: SandboxProcess, *, acks_late: bool, watch_s: float
) -> list[float]:
    """Seconds from the kill to each in-flight task's redelivered call, within watch_s."""
    sandbox.reset()
    sandbox.faults(latency_s=LATENCY_S)
    running.flush_redis()
    url = running.redis.url
    events = paid_events(f"C{int(acks_late)}")
    env = {"BENCH_ACKS_LATE": "1" if acks_late else "0"}

    def worker(name: str) -> Process:
        process = start_celery_worker(
            running.folder,
            redis_url=url,
            gameball_url=sandbox.url,
            name=f"{name}-{int(acks_late)}",
            concurrency=IN_FLIGHT,
            **env,
        )
        wait_ready(process)
        return process

    first = worker("naive")
    send_naive_posts(url, events)
    wait_until(lambda: counters(url)["calls"] >= IN_FLIGHT, timeout_s=30, what="calls in flight")
    killed = kill(first)
    again = worker("naive-again")
    ids = {build_request(event, "v3.0").transaction_id for event in events}

    def resent() -> list[float]:
        return [
            float(row["at"]) - LATENCY_S - killed
            for row in sandbox.requests()
            if row["transaction_id"] in ids and float(row["at"]) - LATENCY_S > killed
        ]

    deadline = time.monotonic() + watch_s
    while time.monotonic() < deadline and len(resent()) < IN_FLIGHT:
        time.sleep(0.5)  # watching for redelivery until the window ends
    again.stop()
    return resent()


def span(times: list[float], watch_s: float) -> str:
    if not times:
        return f"none within {watch_s:.0f} s watched"
    return f"{min(times):.1f} to {max(times):.1f}"


def run(folder: Path, *, quick: bool = False) -> Report:
    watch_s = 20.0 if quick else 120.0
    report = Report(
        name="crash",
        title="5. Crash recovery: a worker SIGKILLed with 4 deliveries in flight",
        command="make bench BENCH=crash",
        columns=["what", "in flight", "redelivered", "time to redelivery s", "lost"],
    )

    def row(label: str, key: str, times: list[float], lost: int | None = None) -> None:
        report.rows.append(
            [
                label,
                IN_FLIGHT,
                len(times),
                span(times, watch_s),
                IN_FLIGHT - len(times) if lost is None else lost,
            ]
        )
        report.data[key] = times

    with services(folder) as running:
        sandbox = running.sandbox()
        sandbox.faults(latency_s=LATENCY_S)
        row(
            f"gbq, whole worker SIGKILLed, idle replacement, Gameball {LATENCY_S:.0f} s",
            "gbq_idle_replacement",
            gbq_case(running, sandbox, 60),
        )
        for latency_s, orders in ((0.0, 10 if quick else 300), (2.0, 10 if quick else 40)):
            row(
                "gbq, whole worker SIGKILLed, replacement busy, "
                f"Gameball {latency_s * 1000:.0f} ms",
                f"gbq_busy_replacement_{latency_s:g}s",
                busy_replacement_case(running, sandbox, latency_s, orders),
            )
        sandbox.reset()
        sandbox.faults(latency_s=LATENCY_S)
        row(
            "gbq, only the pool processes SIGKILLed (an OOM kill)",
            "gbq_children_only",
            gbq_case(running, sandbox, 60, children_only=True),
        )
        for acks_late in (True, False):
            times = celery_case(running, sandbox, acks_late=acks_late, watch_s=watch_s)
            row(
                "plain Celery, late acks (visibility timeout 3,600 s)"
                if acks_late
                else "plain Celery, default early acks",
                f"celery_acks_late_{acks_late}",
                times,
                0 if acks_late else None,
            )
    report.notes = [
        (
            "Times run from the SIGKILL to the redelivered call's arrival at Gameball (the "
            "sandbox logs when each request comes in). Shipped defaults: "
            "GBQ_HEARTBEAT_TTL_S=6 (a process silent that long is gone), the scheduler's 1 s "
            "tick, GBQ_LEASE_S=60 (which no longer bounds "
            "recovery: the heartbeat does). The rate limit is off."
        ),
        (
            f"Busy replacement: a backlog of paid events, each published after its {REFUNDS} "
            "refunds, so each paid event's settle releases them. A task delivers "
            "released events inline only within its first second (INLINE_BUDGET_S), so with "
            "Gameball at 2 s a pool process is free after one call and the recovered events, "
            "queued at the front, go next."
        ),
        (
            "Plain Celery with late acks gets its messages back only once kombu's visibility "
            "timeout (3,600 s by default) has passed since delivery: an hour, not watched to "
            "the end here. With early acks (Celery's default) the in-flight tasks are lost."
        ),
        (
            "When only pool processes die, the worker's main process knows they are gone and "
            "hands their leases back at once (worker/process/tasks.py): no wait for the heartbeat."
        ),
    ]
    return report
