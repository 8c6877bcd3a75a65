"""Argument checks and resource estimates shared by the whole package (NumPy only, no torch).

Validators take the parameter's name first and return the value in its canonical type. Wrong
types raise ``TypeError`` and wrong values ``ValueError``; both messages name the parameter, the
value and the valid range. Booleans are never numbers (``depth=True`` is a ``TypeError``, not
depth 1), and NaN or infinities are refused wherever a finite number is needed.

Resources: :func:`available_memory` is what this process can still allocate (the least of the
system's available memory, the container's cgroup limit and the address-space rlimit);
:func:`check_fits` refuses a request whose estimated memory exceeds it, saying how much it would
need, before anything is allocated.

Example:
    >>> check_int("depth", 3)
    3
    >>> check_positive("q_star", 0.5)
    0.5
    >>> check_choice("weights", "orthogonal", ("orthogonal", "gaussian"))
    'orthogonal'
    >>> format_bytes(3 * 2**30)
    '3 GiB'
"""

from __future__ import annotations

import math
import numbers
import os
from collections.abc import Iterable
from typing import Any

import numpy as np

__all__ = [
    "is_number", "check_int", "check_real", "check_positive", "check_nonnegative", "check_probability",
    "check_bool", "check_choice", "real_array", "nonnegative_array", "available_memory", "physical_memory",
    "format_bytes", "format_seconds", "check_fits", "check_seconds",
]


# ------------------------------------------------------------------------ scalars
def _is_bool(value: Any) -> bool:
    return isinstance(value, (bool, np.bool_))


def is_number(value: Any) -> bool:
    """Whether ``value`` is a real number (an int, a float, a NumPy integer or float, a 0-d real
    array); booleans are not numbers."""
    if isinstance(value, np.ndarray):
        return value.ndim == 0 and value.dtype.kind in "iuf"
    return not _is_bool(value) and isinstance(value, (numbers.Real, np.integer, np.floating))


def _kind(value: Any) -> str:
    """The type and a short one-line repr of ``value`` (arrays and tensors by their shape)."""
    shape = getattr(value, "shape", None)
    if isinstance(shape, tuple) or (shape is not None and hasattr(value, "dtype")):
        return f"{type(value).__name__} of shape {tuple(shape)}"
    try:
        text = repr(value)
    except Exception:  # noqa: BLE001  (a repr that fails is no reason to hide the real error)
        text = f"<{type(value).__name__}>"
    text = " ".join(text.split())
    return f"{type(value).__name__} {text if len(text) <= 80 else text[:77] + '...'}"


def _int_text(n: int) -> str:
    """An integer bound for messages: powers of ten from 10^6 on as ``1e+07``."""
    return f"{n:.0e}" if abs(n) >= 10**6 and str(abs(n)).rstrip("0") == "1" else str(n)


def check_int(name: str, value: Any, lo: int = 1, *, hi: int | None = None, none: bool = False,
              integral_float: bool = False) -> int | None:
    """``value`` as an int in [``lo``, ``hi``] (None allowed when ``none``).

    Booleans and strings raise ``TypeError``; floats too unless ``integral_float`` (then a float
    with an integer value, such as ``3.0``, is accepted and a fraction or NaN is a ``ValueError``).
    """
    if value is None and none:
        return None
    rng = f"[{_int_text(lo)}, {_int_text(hi)}]" if hi is not None else f">= {_int_text(lo)}"
    kind = f"an integer {'in ' if hi is not None else ''}{rng}" + (" or None" if none else "")
    if isinstance(value, np.ndarray) and value.ndim == 0 and value.dtype.kind in "iuf":
        value = value[()]
    if _is_bool(value) or not isinstance(value, (numbers.Integral, np.integer)):
        if integral_float and isinstance(value, (numbers.Real, np.floating)) and not _is_bool(value):
            v = float(value)
            if not (math.isfinite(v) and v == int(v)):
                raise ValueError(f"{name} must be {kind}, got {value!r}")
            value = int(v)
        else:
            raise TypeError(f"{name} must be {kind}, got {_kind(value)}")
    v = int(value)
    if v < lo or (hi is not None and v > hi):
        raise ValueError(f"{name} must be {kind}, got {value!r}")
    return v


def check_real(name: str, value: Any, *, lo: float | None = None, hi: float | None = None,
               lo_open: bool = False, hi_open: bool = False, finite: bool = True, none: bool = False) -> float | None:
    """``value`` as a float, optionally in the interval between ``lo`` and ``hi`` (open ends with
    ``lo_open``/``hi_open``). NaN is always refused; infinities unless ``finite=False``."""
    if value is None and none:
        return None
    if not is_number(value):
        raise TypeError(f"{name} must be a real number{' or None' if none else ''}, got {_kind(value)}")
    v = float(value)
    ok = not math.isnan(v) and (math.isfinite(v) or not finite)
    if lo is not None:
        ok = ok and (v > lo if lo_open else v >= lo)
    if hi is not None:
        ok = ok and (v < hi if hi_open else v <= hi)
    if not ok:
        parts = []
        if lo is not None and hi is not None:
            parts.append(f"in {'(' if lo_open else '['}{lo:g}, {hi:g}{')' if hi_open else ']'}")
        elif lo is not None:
            parts.append(f"{'>' if lo_open else '>='} {lo:g}")
        elif hi is not None:
            parts.append(f"{'<' if hi_open else '<='} {hi:g}")
        what = ("a finite number " if finite else "a number ") + " ".join(parts)
        raise ValueError(f"{name} must be {what.strip()}, got {value!r}")
    return v


def check_positive(name: str, value: Any, *, none: bool = False) -> float | None:
    """``value`` as a finite float > 0 (None allowed when ``none``)."""
    return check_real(name, value, lo=0.0, lo_open=True, none=none)


def check_nonnegative(name: str, value: Any, *, none: bool = False) -> float | None:
    """``value`` as a finite float >= 0 (None allowed when ``none``)."""
    return check_real(name, value, lo=0.0, none=none)


def check_probability(name: str, value: Any, *, open: bool = False) -> float:
    """``value`` as a probability: in [0, 1], or in (0, 1) when ``open``."""
    return check_real(name, value, lo=0.0, hi=1.0, lo_open=open, hi_open=open)


def check_bool(name: str, value: Any) -> bool:
    """``value`` as a bool: only ``True``/``False`` (and NumPy booleans); 0, 1 and strings are refused."""
    if not _is_bool(value):
        raise TypeError(f"{name} must be True or False, got {_kind(value)}")
    return bool(value)


def check_choice(name: str, value: Any, choices: Iterable[str]) -> str:
    """``value`` as one of the strings ``choices``; anything else raises naming the valid values."""
    choices = tuple(choices)
    valid = ", ".join(repr(c) for c in choices)
    if not isinstance(value, str):
        raise TypeError(f"{name} must be one of {valid}, got {_kind(value)}")
    if value not in choices:
        raise ValueError(f"{name} must be one of {valid}, got {value!r}")
    return value


# ------------------------------------------------------------------------ arrays
def real_array(name: str, value: Any) -> np.ndarray:
    """``value`` as a float64 array; booleans, complex numbers, strings and other non-numbers
    raise ``TypeError`` (NaN and infinities are kept: the caller decides)."""
    arr = value if isinstance(value, np.ndarray) else None
    if arr is None:
        try:
            arr = np.asarray(value)
        except (TypeError, ValueError, RecursionError):  # ragged or self-referencing sequences
            raise TypeError(f"{name} must be real numbers, got {type(value).__name__}") from None
    shown = f"{value!r}" if arr.size < 8 else f"an array of dtype {arr.dtype} and shape {arr.shape}"
    if arr.dtype.kind == "O":
        if not all(is_number(x) for x in arr.ravel()):
            raise TypeError(f"{name} must be real numbers, got {shown}")
    elif arr.dtype.kind not in "iuf":
        raise TypeError(f"{name} must be real numbers, got {shown}")
    return np.asarray(arr, dtype=float)


def nonnegative_array(name: str, value: Any, *, positive: bool = False) -> np.ndarray:
    """``value`` as a float64 array of finite values >= 0 (> 0 with ``positive``)."""
    v = real_array(name, value)
    bad = ~np.isfinite(v) | ((v <= 0) if positive else (v < 0))
    if np.any(bad):
        shown = v if v.size < 8 else v[bad].ravel()[0]
        raise ValueError(f"{name} must be finite and {'> 0' if positive else '>= 0'}, got {shown}")
    return v


# ------------------------------------------------------------------------ memory and time
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


def physical_memory() -> int | None:
    """The machine's physical memory in bytes (None when it cannot be read)."""
    try:
        return int(os.sysconf("SC_PAGE_SIZE")) * int(os.sysconf("SC_PHYS_PAGES"))
    except (AttributeError, ValueError, OSError):  # pragma: no cover - platforms without sysconf
        return None


def format_bytes(n: float) -> str:
    """``n`` bytes in the largest binary unit that keeps it >= 1 (``"3.2 GiB"``)."""
    n = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if abs(n) < 1024 or unit == "PiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.3g} {unit}"
        n /= 1024
    raise AssertionError("unreachable")  # pragma: no cover


def format_seconds(s: float) -> str:
    """A duration for messages: seconds, minutes, hours, days or years."""
    for unit, size in (("years", 365.25 * 86400.0), ("days", 86400.0), ("hours", 3600.0), ("min", 60.0)):
        if s >= 2 * size:
            return f"{s / size:.3g} {unit}"
    return f"{s:.2g} s"


def check_fits(need: float, what: str, advice: str, *, have: int | None = None, limit: str | None = None) -> None:
    """Raise ``ValueError`` when ``need`` bytes exceed the memory at hand.

    ``what`` names the request and its parameters (``"depth=10000000, width=64"``); ``advice``
    says what to change. ``have`` is the limit in bytes (default :func:`available_memory`;
    nothing is checked when it cannot be read) and ``limit`` names it in the message when it is
    not the available memory (e.g. ``"max_memory"``).
    """
    if have is None:
        if limit is not None:
            raise ValueError("check_fits: a named limit needs have=")
        have = available_memory()
    if have is not None and need > have:
        source = f"more than {limit} ({format_bytes(have)})" if limit else f"but only {format_bytes(have)} is available"
        raise ValueError(f"{what}: needs about {format_bytes(need)} of memory, {source}; {advice}")


def check_seconds(seconds: float, limit: float, what: str, advice: str) -> None:
    """Raise ``ValueError`` when an estimated ``seconds`` exceeds ``limit``, saying both."""
    if seconds > limit:
        raise ValueError(f"{what}: would take about {format_seconds(seconds)} (the limit is {format_seconds(limit)}); "
                         f"{advice}")
