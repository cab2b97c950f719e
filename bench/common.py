"""What every benchmark shares: machine facts, services on loopback, CPU and percentiles,
and the results writer (a Markdown table and JSON per benchmark under bench/results/).

The services are the ones the tests use (harness/services.py, harness/processes.py,
harness/stack.py), so a benchmark measures the same processes the tests prove correct.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import subprocess
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import celery
import redis

from bench.baseline import start_celery_worker
from harness.processes import NO_RATE_LIMIT, SandboxProcess, proc_stats, wait_until
from harness.services import PostgresSchema, RedisServer, sqlite_ledger
from harness.stack import FAST, Process, Stack
from producers.embedded_redis import redis_server_binary
from worker.settings import Settings

RESULTS = Path(__file__).resolve().parent / "results"
PG_URL_VAR = "GBQ_TEST_DATABASE_URL"
# Benchmarks run the shipped defaults, not the tests' fast timings (harness/stack.py FAST).
DEFAULTS = {
    key: str(Settings.model_fields[key[4:].lower()].default)
    for key in FAST
    if key != "GBQ_METRICS_PORT"
}
LIMITS_OFF = {"GBQ_RATE_LIMIT_PER_S": "0", "GBQ_RATE_LIMIT_PER_30S": "0"}


def machine() -> dict[str, Any]:
    """The facts a reader needs to compare figures between machines."""
    server = subprocess.run(
        [redis_server_binary(), "--version"], capture_output=True, text=True, check=True
    ).stdout.split()
    redis_version = next((w.split("=")[1] for w in server if w.startswith("v=")), "?")
    return {
        "cores": os.cpu_count(),
        "cpu": _cpu_model(),
        "python": platform.python_version(),
        "redis": redis_version,
        "celery": celery.__version__,
        "redis_py": redis.__version__,
        "platform": platform.platform(terse=True),
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
    }


def _cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "?"


def percentile(values: Sequence[float], share: float) -> float:
    """Nearest-rank percentile (share in 0..1) of a non-empty sample."""
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(share * len(ordered) + 0.5)))
    return ordered[rank - 1]


def group_cpu_s(pgid: int) -> float:
    """User+system CPU seconds of every live process in a process group, plus what their
    reaped children used (so a prefork pool's children count)."""
    ticks = sum(
        sum(int(value) for value in fields[11:15])  # utime stime cutime cstime
        for _, fields in proc_stats()
        if int(fields[2]) == pgid
    )
    return ticks / os.sysconf("SC_CLK_TCK")


def postgres_server_cpu_s() -> float:
    """User+system CPU seconds of this machine's PostgreSQL server: every ``postgres``
    process, with the backends its postmaster has reaped (a backend's time moves into its
    parent's when it exits, so a difference of two readings counts each once)."""
    ticks = 0
    for pid, fields in proc_stats():
        with contextlib.suppress(OSError):
            if Path(f"/proc/{pid}/comm").read_text().strip() in ("postgres", "postmaster"):
                ticks += sum(int(value) for value in fields[11:15])
    return ticks / os.sysconf("SC_CLK_TCK")


def processes_cpu_s(processes: Sequence[Process]) -> float:
    return sum(group_cpu_s(p.popen.pid) for p in processes if p.alive())


def wait_ready(process: Process, timeout_s: float = 60) -> None:
    """A Celery worker is consuming once it logged 'ready.'."""

    def ready() -> bool:
        if not process.alive():
            raise RuntimeError(f"{process.name} exited: {process.output()[-2000:]}")
        return " ready." in process.output()

    wait_until(ready, timeout_s=timeout_s, what=f"{process.name} to be ready")


@dataclass
class Services:
    """Redis (AOF on, like production), the sandbox and ledgers, all on loopback."""

    folder: Path
    redis: RedisServer = field(init=False)
    _sandboxes: list[SandboxProcess] = field(default_factory=list)
    _schemas: list[PostgresSchema] = field(default_factory=list)
    _stacks: list[Stack] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        self.redis = RedisServer(self.folder / "redis").start()

    def flush_redis(self) -> None:
        client = redis.Redis.from_url(self.redis.url)
        client.flushall()
        client.close()

    def sandbox(self, *args: str) -> SandboxProcess:
        log = self.folder / f"sandbox-{len(self._sandboxes)}.log"
        process = SandboxProcess(log, args or NO_RATE_LIMIT)
        self._sandboxes.append(process)
        return process

    def ledger(self, kind: str = "sqlite") -> str:
        if kind == "sqlite":
            folder = self.folder / f"ledger-{len(self._schemas)}-{time.monotonic_ns()}"
            folder.mkdir()
            return sqlite_ledger(folder)
        base = os.environ.get(PG_URL_VAR)
        if not base:
            raise RuntimeError(f"{PG_URL_VAR} is not set: no PostgreSQL to measure")
        schema = PostgresSchema(base)
        self._schemas.append(schema)
        return schema.url

    def stack(self, database_url: str, gameball_url: str, **env: str) -> Stack:
        folder = self.folder / f"stack-{time.monotonic_ns()}"
        folder.mkdir()
        stack = Stack(
            folder,
            redis_url=self.redis.url,
            database_url=database_url,
            gameball_url=gameball_url,
            **{**DEFAULTS, "GBQ_METRICS_PORT": "0", **env},
        )
        self._stacks.append(stack)
        return stack

    def close_stacks(self) -> None:
        while self._stacks:
            self._stacks.pop().close()

    def close(self) -> None:
        self.close_stacks()
        for sandbox in self._sandboxes:
            sandbox.stop()
        for schema in self._schemas:
            schema.drop()
        self.redis.kill()


@contextlib.contextmanager
def services(folder: Path) -> Iterator[Services]:
    running = Services(folder)
    try:
        yield running
    finally:
        running.close()


def postgres_available() -> bool:
    return bool(os.environ.get(PG_URL_VAR))


@dataclass
class Report:
    """One benchmark's result: rows of figures, notes, and where they came from."""

    name: str
    title: str
    command: str
    columns: list[str]
    rows: list[list[Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    data: dict[str, Any] = field(default_factory=dict)

    def markdown(self, info: dict[str, Any]) -> str:
        lines = [
            f"## {self.title}",
            "",
            (
                f"`{self.command}` · {info['date']} · {info['cores']} cores ({info['cpu']}) · "
                f"Python {info['python']} · Redis {info['redis']} · Celery {info['celery']}"
            ),
            "",
            "| " + " | ".join(self.columns) + " |",
            "|" + "|".join("---" for _ in self.columns) + "|",
        ]
        lines += ["| " + " | ".join(_cell(value) for value in row) + " |" for row in self.rows]
        if self.notes:
            lines += ["", *(f"- {note}" for note in self.notes)]
        return "\n".join(lines) + "\n"

    def write(self, folder: Path = RESULTS) -> Path:
        folder.mkdir(parents=True, exist_ok=True)
        info = machine()
        (folder / f"{self.name}.json").write_text(
            json.dumps(
                {
                    "name": self.name,
                    "title": self.title,
                    "command": self.command,
                    "machine": info,
                    "columns": self.columns,
                    "rows": self.rows,
                    "notes": self.notes,
                    "data": self.data,
                },
                indent=2,
                default=str,
            )
            + "\n"
        )
        path = folder / f"{self.name}.md"
        path.write_text(self.markdown(info))
        return path


def _cell(value: Any) -> str:
    if isinstance(value, float):
        if value == 0:
            return "0"
        if abs(value) >= 100:
            return f"{value:,.0f}"
        if abs(value) >= 1:
            return f"{value:.2f}"
        return f"{value:.3g}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def sandbox_calls(sandbox: SandboxProcess) -> int:
    return int(sandbox.state(transactions=False)["request_counts"]["total"])


def fresh_celery_worker(
    running: Services, sandbox: SandboxProcess, *, latency_s: float, concurrency: int, pool: str
) -> Process:
    """A plain Celery worker (bench/naive_app.py) on an emptied Redis, against a reset
    sandbox answering after ``latency_s``: each baseline run starts the same way."""
    running.flush_redis()
    sandbox.reset()
    sandbox.faults(reset=True, latency_s=latency_s)
    return start_celery_worker(
        running.folder,
        redis_url=running.redis.url,
        gameball_url=sandbox.url,
        name=f"celery-{time.monotonic_ns()}",
        concurrency=concurrency,
        pool=pool,
    )
