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

from producers.publisher import Publisher
from tests.chaos.histories import generate
from worker.settings import load_settings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.chaos.producer")
    parser.add_argument("--seed", type=int, required=True)
    parser.add_argument("--events", type=int, required=True)
    parser.add_argument("--producers", type=int, required=True)
    parser.add_argument("--producer", type=int, required=True)
    parser.add_argument("--window-s", type=float, required=True)
    args = parser.parse_args(argv)
    mine = generate(args.seed, args.events, args.producers).for_producer(args.producer)
    counts: Counter[str] = Counter()
    with Publisher(load_settings()) as publisher:
        started = time.monotonic()
        for publication in mine:
            delay = started + publication.at * args.window_s - time.monotonic()
            if delay > 0:
                time.sleep(delay)  # pacing the load like real checkouts, not synchronising
            counts[publisher.publish(publication.event)] += 1
    print(json.dumps(dict(counts)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
