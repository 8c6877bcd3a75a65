"""Argument checks, random-state resolution and memory estimates shared by :mod:`isometry.torch`.

Wrong types raise ``TypeError`` and wrong values ``ValueError``, both naming the parameter
(booleans are not numbers). :func:`check_fits` refuses, before any work starts, a request whose
estimated memory exceeds what the machine has available, saying how much it would need.
"""

from __future__ import annotations

import math
import numbers
import os

import numpy as np
import torch

__all__ = ["as_generator", "check_int", "check_positive", "available_memory", "format_bytes", "check_fits"]


def as_generator(generator: torch.Generator | int | None) -> torch.Generator | None:
    """``generator`` as torch's random state: a ``torch.Generator`` as is, an int seeds a new CPU
    generator, None means torch's global generator (as in ``torch.nn.init``)."""
    if generator is None or isinstance(generator, torch.Generator):
        return generator
    if isinstance(generator, (int, np.integer)) and not isinstance(generator, (bool, np.bool_)):
        if not 0 <= int(generator) < 2**64:
            raise ValueError(f"generator must be a seed in [0, 2**64), got {generator!r}")
        return torch.Generator().manual_seed(int(generator))
    raise TypeError(f"generator must be a torch.Generator, an int seed or None, got {type(generator).__name__}")


def check_int(name: str, value, lo: int = 1, *, none: bool = False) -> int | None:
    """``value`` as an int >= ``lo`` (None allowed when ``none``); bools and floats are refused."""
    if value is None and none:
        return None
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (numbers.Integral, np.integer)):
        kind = "an integer" + (" or None" if none else "")
        raise TypeError(f"{name} must be {kind}, got {type(value).__name__} {value!r}")
    if int(value) < lo:
        raise ValueError(f"{name} must be an integer >= {lo}, got {value!r}")
    return int(value)


def check_positive(name: str, value, *, none: bool = False) -> float | None:
    """``value`` as a finite float > 0 (None allowed when ``none``); bools and strings are refused."""
    if value is None and none:
        return None
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (numbers.Real, np.floating, np.integer)):
        kind = "a number" + (" or None" if none else "")
        raise TypeError(f"{name} must be {kind}, got {type(value).__name__} {value!r}")
    v = float(value)
    if not (math.isfinite(v) and v > 0):
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    return v


def _meminfo_available() -> int | None:
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
    except (AttributeError, OSError, ValueError):
        return None


def _cgroup_available() -> int | None:
    try:
        with open("/sys/fs/cgroup/memory.max") as fh:
            limit = fh.read().strip()
        if limit == "max":
            return None
        with open("/sys/fs/cgroup/memory.current") as fh:
            used = int(fh.read().strip())
        return max(int(limit) - used, 0)
    except (OSError, ValueError):
        return None


def _rlimit_available() -> int | None:
    try:
        import resource

        soft, _ = resource.getrlimit(resource.RLIMIT_AS)
        if soft == resource.RLIM_INFINITY or soft < 0:
            return None
        with open("/proc/self/statm") as fh:
            used = int(fh.read().split()[0]) * int(os.sysconf("SC_PAGE_SIZE"))
        return max(int(soft) - used, 0)
    except (ImportError, OSError, ValueError, AttributeError):
        return None


def available_memory() -> int | None:
    """Bytes this process can still allocate: the least of the system's available memory, the
    container (cgroup v2) limit and the address-space rlimit; None when none can be read."""
    found = [v for v in (_meminfo_available(), _cgroup_available(), _rlimit_available()) if v is not None]
    return min(found) if found else None


def format_bytes(n: float) -> str:
    """``n`` bytes in the largest binary unit that keeps it >= 1 (``"3.2 GiB"``)."""
    n = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if abs(n) < 1024 or unit == "PiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.3g} {unit}"
        n /= 1024
    raise AssertionError("unreachable")  # pragma: no cover


def format_seconds(s: float) -> str:
    """A duration for messages: seconds, minutes, hours or days."""
    for unit, size in (("days", 86400.0), ("hours", 3600.0), ("min", 60.0)):
        if s >= 2 * size:
            return f"{s / size:.3g} {unit}"
    return f"{s:.2g} s"


def check_fits(need: float, what: str, advice: str) -> None:
    """Raise ``ValueError`` when ``need`` bytes exceed :func:`available_memory`.

    ``what`` names the request and its parameters (``"depth=10000000, width=64"``); ``advice``
    says what to change. Nothing is checked when the available memory cannot be read.
    """
    have = available_memory()
    if have is not None and need > have:
        raise ValueError(
            f"{what}: needs about {format_bytes(need)} of memory, but only {format_bytes(have)} is available; {advice}"
        )
