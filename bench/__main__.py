"""``python -m bench [NAME ...] [--quick]``: run benchmarks, write bench/results/.

Each benchmark starts its own Redis, sandbox and ledgers on loopback, runs the baseline
and the candidate in the same run, and writes ``bench/results/<name>.md`` and ``.json``.
``bench/results/latest.md`` collects the latest table of every benchmark.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import tempfile
import time
from pathlib import Path

from bench.common import RESULTS

MARKER = "<!-- latest results: written by python -m bench -->"
BENCHMARKS = [
    "publish",
    "delivery",
    "drain",
    "outage",
    "crash",
    "ledger_scale",
    "scale_out",
    "retention",
    "cli",
    "latency",
    "memory",
    "failover",
]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("names", nargs="*", choices=[[], *BENCHMARKS], default=[])
    parser.add_argument("--quick", action="store_true", help="small sizes: a smoke run")
    parser.add_argument("--out", type=Path, default=RESULTS, help="results folder")
    parser.add_argument("--keep", type=Path, help="keep services' logs and files here")
    args = parser.parse_args(argv)
    names = args.names or BENCHMARKS
    for name in names:
        module = importlib.import_module(f"bench.{name}")
        started = time.monotonic()
        print(f"== {name} ...", flush=True)
        if args.keep:
            report = module.run(args.keep / name, quick=args.quick)
        else:
            with tempfile.TemporaryDirectory(prefix=f"gbq-bench-{name}-") as folder:
                report = module.run(Path(folder), quick=args.quick)
        path = report.write(args.out)
        print(path.read_text(), flush=True)
        print(f"== {name}: {time.monotonic() - started:.0f} s, written to {path}", flush=True)
    collect(args.out)
    return 0


def collect(folder: Path) -> None:
    """Concatenate the latest table of every benchmark into latest.md, in order, and put
    them in bench/README.md below its marker when the results are the repository's own."""
    parts = [
        (folder / f"{name}.md").read_text()
        for name in BENCHMARKS
        if (folder / f"{name}.md").exists()
    ]
    tables = "\n".join(parts)
    (folder / "latest.md").write_text("# Latest benchmark results\n\n" + tables)
    readme = Path(__file__).resolve().parent / "README.md"
    if folder.resolve() == RESULTS.resolve() and readme.exists():
        intro = readme.read_text().split(MARKER)[0]
        readme.write_text(f"{intro}{MARKER}\n\n{tables}")


if __name__ == "__main__":
    sys.exit(main())
