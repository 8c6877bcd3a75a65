"""Timing helper shared by the benchmark scripts (run them as `python benchmarks/NAME.py`)."""

from __future__ import annotations

import time
from typing import Callable


def best(f: Callable[[], object], n: int = 3, clock: Callable[[], float] = time.perf_counter) -> float:
    """The fastest of ``n`` timed calls of ``f`` (seconds of ``clock``: wall time by default,
    ``time.process_time`` for CPU time): the least disturbed by a noisy machine."""
    ts = []
    for _ in range(n):
        t = clock()
        f()
        ts.append(clock() - t)
    return min(ts)
