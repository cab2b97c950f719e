"""Benchmark: how long a `gbq` command takes to answer, as a whole process.

Each command runs as an operator runs it (the installed ``gbq`` script, a fresh process
each time), interleaved with the baselines so all see the same machine: the interpreter
alone (``python -c pass``), and importing every command the way the CLI did before it
loaded them on first use. `gbq status` reads a migrated SQLite ledger and the embedded
Redis (started before the runs). The median and the 90th percentile of the wall time.
"""

from __future__ import annotations

import os
import site
import statistics
import subprocess
import sys
import time
from pathlib import Path

from bench.common import Report, percentile
from producers import embedded_redis

GBQ = str(Path(sys.executable).parent / "gbq")
EAGER = "import worker.ops.cli as cli\nfor name in cli.COMMANDS:\n    cli.load_command(name)\n"
TARGETS = {
    "gbq --version": 0.3,
    "gbq --help": 0.3,
    "gbq status": 1.0,
    "gbq status, a plain install": 1.0,
}
ROOT = Path(__file__).resolve().parent.parent


def run(folder: Path, *, quick: bool = False) -> Report:
    rounds = 3 if quick else 15
    home = folder / "home"
    env = {**os.environ, "GBQ_HOME": str(home), "GBQ_METRICS_PORT": "0"}
    for name in ("GBQ_REDIS_URL", "GBQ_DATABASE_URL", "GBQ_LOG_FORMAT"):
        env.pop(name, None)
    subprocess.run([GBQ, "migrate"], env=env, check=True, capture_output=True)
    # As a plain `pip install` runs it: the same code without the editable install's
    # import finder (python -S skips site; the project and its packages on the path).
    plain_env = {**env, "PYTHONPATH": f"{ROOT}:{site.getsitepackages()[0]}"}
    plain = [sys.executable, "-S", "-c", "from worker.entry import main; main()"]
    commands = {
        "python -c pass (the interpreter)": ([sys.executable, "-c", "pass"], env),
        "gbq --version": ([GBQ, "--version"], env),
        "gbq --help": ([GBQ, "--help"], env),
        "gbq status": ([GBQ, "status"], env),
        "gbq status, a plain install": ([*plain, "status"], plain_env),
        "every command imported (the CLI before)": ([sys.executable, "-c", EAGER], env),
    }
    try:
        for argv, its_env in commands.values():  # warm the caches, start the embedded Redis
            subprocess.run(argv, env=its_env, check=True, capture_output=True)
        times: dict[str, list[float]] = {name: [] for name in commands}
        for _ in range(rounds):
            for name, (argv, its_env) in commands.items():
                started = time.perf_counter()
                subprocess.run(argv, env=its_env, check=True, capture_output=True)
                times[name].append(time.perf_counter() - started)
    finally:
        embedded_redis.stop(home)
    interpreter = statistics.median(times["python -c pass (the interpreter)"])
    report = Report(
        name="cli",
        title="gbq command start-up (a whole process per run)",
        command="python -m bench cli",
        columns=["command", "median s", "p90 s", "× the interpreter", "target s", "met"],
    )
    for name, runs in times.items():
        median = statistics.median(runs)
        target = TARGETS.get(name)
        report.rows.append(
            [
                name,
                median,
                percentile(runs, 0.9),
                median / interpreter,
                "" if target is None else target,
                "" if target is None else ("yes" if percentile(runs, 0.9) <= target else "NO"),
            ]
        )
    report.notes += [
        f"{rounds} rounds, each command once per round in the order above.",
        (
            "Met: the 90th percentile within the target (--version and --help in 0.3 s, "
            "status in 1 s)."
        ),
        (
            "`gbq` is the project's editable install (`make install`), whose import finder "
            "is asked for every module; a plain install runs the same code without it."
        ),
    ]
    report.data = {"runs_s": times}
    return report
