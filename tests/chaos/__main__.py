"""``python -m tests.chaos``: the long soak (``make soak SEED=… EVENTS=…``).

Writes bench/results/soak-<seed>-<events>.md and exits 1 on any divergence, printing the
seed and the first divergence.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

from tests.chaos.runner import SoakConfig, run_soak

RESULTS = Path(__file__).resolve().parents[2] / "bench" / "results"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.chaos", description=__doc__)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--producers", type=int, default=3)
    parser.add_argument("--workers", type=int, default=3)
    parser.add_argument("--per-kind", type=int, default=3, help="faults of each kind")
    parser.add_argument("--window-s", type=float, help="publishing window (default events/100)")
    parser.add_argument(
        "--postgres", action="store_true", help="ledger on GBQ_TEST_DATABASE_URL (PostgreSQL)"
    )
    parser.add_argument("--keep", type=Path, help="keep logs and files here")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    database_url = None
    schema = None
    if args.postgres:
        from harness.services import PostgresSchema  # noqa: PLC0415 - only with --postgres

        base = os.environ.get("GBQ_TEST_DATABASE_URL")
        if not base:
            parser.error("--postgres needs GBQ_TEST_DATABASE_URL (postgresql://user@host/db)")
        schema = PostgresSchema(base)
        database_url = schema.url
    config = SoakConfig(
        seed=args.seed,
        events=args.events,
        producers=args.producers,
        workers=args.workers,
        per_kind=args.per_kind,
        window_s=args.window_s,
        database_url=database_url,
    )
    try:
        if args.keep:
            result = run_soak(args.keep, config)
        else:
            with tempfile.TemporaryDirectory(prefix="gbq-soak-") as folder:
                result = run_soak(Path(folder), config)
    finally:
        if schema is not None:
            schema.drop()
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"soak-{args.seed}-{args.events}.md"
    path.write_text(result.markdown())
    print(result.summary())
    print(f"written to {path}")
    return 0 if result.ok else 1


if __name__ == "__main__":
    sys.exit(main())
