"""Timing helper shared by the benchmark scripts (run them as `python benchmarks/NAME.py`)."""

from __future__ import annotations

import os
import resource
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


def cpu_seconds() -> float:
    """CPU time of this process and its finished child processes (``getrusage``: user + system), the
    time that is meaningful on a shared machine where wall time is not."""
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def load_average() -> str:
    """The 1, 5 and 15 minute load averages, as "1.2/1.5/1.7" ("?" where the system has none)."""
    try:
        return "/".join(f"{x:.1f}" for x in os.getloadavg())
    except OSError:  # pragma: no cover
        return "?"
