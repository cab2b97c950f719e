"""Benchmark 5: a worker killed (SIGKILL) with deliveries in flight.

Gameball answers after 3 s so that four deliveries are surely in flight; the worker
(prefork × 4) and its pool are SIGKILLed and a new worker starts at once, as supervisor
would. Measured: how long until each in-flight event is delivered. gbq gets it back when
its lease expires (GBQ_LEASE_S) through the scheduler's sweep; plain Celery with late acks
gets the message back only after Redis's visibility timeout (kombu: 3,600 s by default),
and with Celery's default early acks the tasks are gone.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

from bench.baseline import counters, send_naive_posts, start_celery_worker
from bench.common import (
    LIMITS_OFF,
    Report,
    Services,
    services,
    wait_ready,
)
from producers.events import Event
from tests.processes import SandboxProcess, pool_children, wait_until
from tests.scenario import generate
from tests.stack import Process
from worker.gameball.payloads import build_request

LATENCY_S = 3.0
IN_FLIGHT = 4


def paid_events(prefix: str) -> list[Event]:
    """Four paid events of four orders: nothing waits on anything else."""
    scenario = generate(seed=500, orders=IN_FLIGHT, total_events=IN_FLIGHT, prefix=prefix)
    return [event for event in scenario.events if event.kind == "paid"]


def kill(process: Process) -> float:
    os.killpg(process.popen.pid, signal.SIGKILL)
    process.popen.wait(timeout=30)
    return time.time()


def gbq_case(
    running: Services, sandbox: SandboxProcess, lease_s: int, *, children_only: bool = False
) -> list[float]:
    """Seconds from the kill to each in-flight event's delivery. ``children_only`` kills
    the pool processes alone (an OOM kill), not the worker."""
    running.flush_redis()
    sandbox.reset()
    sandbox.faults(latency_s=LATENCY_S)
    events = paid_events(f"G{lease_s}{'c' if children_only else ''}")
    stack = running.stack(running.ledger(), sandbox.url, GBQ_LEASE_S=str(lease_s), **LIMITS_OFF)
    worker = stack.start_worker("w1", concurrency=IN_FLIGHT)
    stack.start_scheduler()
    wait_ready(worker)
    stack.publisher.publish_many(events)
    wait_until(
        lambda: stack.states()["in_flight"] == IN_FLIGHT,
        timeout_s=30,
        what="four deliveries in flight",
    )
    if children_only:
        for child in pool_children(worker.popen.pid):
            os.kill(child, signal.SIGKILL)
        killed = time.time()  # Celery starts new pool processes by itself
    else:
        killed = kill(worker)
        wait_ready(stack.start_worker("w2", concurrency=IN_FLIGHT))
    stack.wait_settled(IN_FLIGHT, timeout_s=lease_s + 60)
    rows = [stack.ledger.get(event.event_id) for event in events]
    running.close_stacks()
    # the redelivered call's start: delivery time less Gameball's answer time
    return [
        row.delivered_at.timestamp() - LATENCY_S - killed
        for row in rows
        if row and row.delivered_at
    ]


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
    ids = {build_request(event).transaction_id for event in events}

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
    with services(folder) as running:
        sandbox = running.sandbox()
        sandbox.faults(latency_s=LATENCY_S)
        for lease_s in (60, 15):
            times = gbq_case(running, sandbox, lease_s)
            label = "default" if lease_s == 60 else "lowered"
            report.rows.append(
                [
                    f"gbq, GBQ_LEASE_S={lease_s} ({label})",
                    IN_FLIGHT,
                    len(times),
                    span(times, watch_s),
                    IN_FLIGHT - len(times),
                ]
            )
            report.data[f"gbq_lease_{lease_s}"] = times
        times = gbq_case(running, sandbox, 60, children_only=True)
        report.rows.append(
            [
                "gbq, only the pool processes SIGKILLed (an OOM kill), GBQ_LEASE_S=60",
                IN_FLIGHT,
                len(times),
                span(times, watch_s),
                IN_FLIGHT - len(times),
            ]
        )
        report.data["gbq_children_only"] = times
        for acks_late in (True, False):
            times = celery_case(running, sandbox, acks_late=acks_late, watch_s=watch_s)
            report.rows.append(
                [
                    "plain Celery, late acks (visibility timeout 3,600 s)"
                    if acks_late
                    else "plain Celery, default early acks",
                    IN_FLIGHT,
                    len(times),
                    span(times, watch_s),
                    0 if acks_late else IN_FLIGHT - len(times),
                ]
            )
            report.data[f"celery_acks_late_{acks_late}"] = times
    report.notes = [
        (
            f"Times run from the SIGKILL to the redelivered call's start (the sandbox answers "
            f"after {LATENCY_S:.0f} s). gbq takes an event back when its lease expires: the "
            "lease bounds the recovery, so GBQ_LEASE_S trades recovery time against the "
            "longest call (it must exceed connect + write + read timeouts; 60 s by default)."
        ),
        (
            "Plain Celery with late acks gets its messages back only once kombu's visibility "
            "timeout (3,600 s by default) has passed since delivery: an hour, not watched to "
            "the end here. With early acks (Celery's default) the in-flight tasks are lost."
        ),
        (
            "When only pool processes die, the worker's main process knows they are gone "
            "and hands their leases back at once (worker/tasks.py): no wait for the lease."
        ),
    ]
    return report
