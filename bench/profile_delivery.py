"""Where a delivery's time goes: py-spy on one worker process, end to end.

``python -m bench.profile_delivery [--events N] [--postgres]`` starts Redis, the sandbox
(0 ms) and a ledger, runs ``gbq worker --pool solo`` (one process, so every sample is a
delivery's), publishes N events, records the worker with py-spy while they are delivered,
and prints the functions that take the most wall time (inclusive, the share of samples
whose stack holds them), grouped the way the optimisation work reads them: SQL, Redis,
HTTP, JSON and validation. Needs ``py-spy`` (``pip install py-spy``); not part of
``make bench`` or the tests.
"""

from __future__ import annotations

import argparse
import collections
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from bench.common import LIMITS_OFF, services, wait_ready
from harness.processes import wait_until
from harness.scenario import generate

ROOT = Path(__file__).resolve().parents[1]
OURS = (f"{ROOT / 'worker'}/", f"{ROOT / 'producers'}/")
GROUPS = {
    "SQL (SQLAlchemy, driver)": ("sqlalchemy/", "sqlite3", "psycopg"),
    "Redis (redis-py)": ("redis/",),
    "HTTP (httpx, httpcore)": ("httpx/", "httpcore/"),
    "Celery and kombu": ("celery/", "kombu/", "billiard/"),
    "pydantic validation": ("pydantic", "producers/events.py"),
    "JSON": ("json/",),
}


def profile(events: int, postgres: bool, seconds_cap: float) -> str:
    spy = shutil.which("py-spy")
    if spy is None:
        raise SystemExit("py-spy is not installed: pip install py-spy")
    folder = Path(tempfile.mkdtemp(prefix="gbq-profile-"))
    scenario = generate(seed=3, orders=events // 3, total_events=events)
    with services(folder) as running:
        sandbox = running.sandbox()
        url = running.ledger("postgresql" if postgres else "sqlite")
        stack = running.stack(url, sandbox.url, **LIMITS_OFF)
        worker = stack.start_worker("w1", concurrency=1, pool="solo")
        stack.start_scheduler()
        wait_ready(worker)
        raw = folder / "profile.txt"
        recorder = subprocess.Popen(
            [
                spy,
                "record",
                "--pid",
                str(worker.popen.pid),
                "--format",
                "raw",
                "--output",
                str(raw),
                "--rate",
                "200",
                "--duration",
                str(int(seconds_cap)),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        started = time.perf_counter()
        for start in range(0, len(scenario.events), 100):
            stack.publisher.publish_many(scenario.events[start : start + 100])
        wait_until(
            lambda: stack.states()["delivered"] + stack.states()["dead"] >= events,
            timeout_s=seconds_cap,
            what=f"{events} events",
            interval_s=0.1,
        )
        took = time.perf_counter() - started
        recorder.send_signal(2)  # SIGINT: py-spy writes what it has
        recorder.wait(timeout=60)
        text = raw.read_text()
        (Path(tempfile.gettempdir()) / "gbq-profile-raw.txt").write_text(text)
        summary = summarize(text)
    shutil.rmtree(folder, ignore_errors=True)
    return f"{events} events in {took:.1f} s ({events / took:.0f}/s, one process)\n{summary}"


def summarize(collapsed: str, top: int = 25) -> str:
    """Inclusive share of samples per function and per group, from py-spy's raw format."""
    per_function: collections.Counter[str] = collections.Counter()
    per_group: collections.Counter[str] = collections.Counter()
    total = 0
    for line in collapsed.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack:
            continue
        count = int(count_text)
        total += count
        frames = stack.split(";")
        for frame in set(frames):
            if _ours(frame):
                per_function[frame] += count
        for group, needles in GROUPS.items():
            if any(needle in frame for frame in frames for needle in needles):
                per_group[group] += count
    lines = [f"{total} samples", "", "by kind of work (inclusive):"]
    lines += [f"  {share(n, total):>5}  {group}" for group, n in per_group.most_common()]
    lines += ["", "gbq functions (inclusive):"]
    lines += [f"  {share(n, total):>5}  {frame}" for frame, n in per_function.most_common(top)]
    return "\n".join(lines)


def _ours(frame: str) -> bool:
    """A frame of this project's code (py-spy writes paths absolute or relative)."""
    return any(root in frame for root in OURS) or "(worker/" in frame or "(producers/" in frame


def share(count: int, total: int) -> str:
    return f"{100 * count / max(total, 1):.0f} %"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=1500)
    parser.add_argument("--postgres", action="store_true")
    parser.add_argument("--cap-s", type=float, default=300)
    options = parser.parse_args()
    print(profile(options.events, options.postgres, options.cap_s))


if __name__ == "__main__":
    main()
