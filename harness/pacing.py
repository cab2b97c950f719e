"""A steady rate, as checkout publishes: for the benchmarks and the failover tests."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import TypeVar

T = TypeVar("T")


def on_schedule(items: Sequence[T], rate: float, act: Callable[[T], object]) -> list[float]:
    """``act`` on each item, ``rate`` a second on a schedule (a late one is not made up by
    a burst); when each returned (epoch s)."""
    returned = []
    started = time.perf_counter()
    for number, item in enumerate(items):
        wait = started + number / rate - time.perf_counter()
        if wait > 0:
            time.sleep(wait)  # the producer's pace, not a wait for a result
        act(item)
        returned.append(time.time())
    return returned
