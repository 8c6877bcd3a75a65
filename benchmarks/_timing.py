"""Timing helper shared by the benchmark scripts (run them as `python benchmarks/NAME.py`)."""

from __future__ import annotations

import time
from typing import Callable


def best(f: Callable[[], object], n: int = 3) -> float:
    """The fastest of ``n`` timed calls of ``f`` (seconds): the least disturbed by a noisy machine."""
    ts = []
    for _ in range(n):
        t = time.perf_counter()
        f()
        ts.append(time.perf_counter() - t)
    return min(ts)
