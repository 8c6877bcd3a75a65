"""Gaussian expectations E_z[f(sqrt(q) z)], z ~ N(0, 1), in float64.

Plain Gauss-Hermite converges slowly when f has a kink (ReLU, hard tanh) or a
feature much narrower than the Gaussian (tanh at q = 10^6). We therefore use a
composite Gauss-Legendre rule in z on [-12.5, 12.5] with panel breakpoints at
0, at +-2^k (k = -12..0) and on a unit-ish grid beyond; extra breakpoints
``kink / sqrt(q)`` are inserted where the integrand's derivative jumps away
from 0. The tail beyond |z| = 12.5 carries mass 2 Phi(-12.5) < 1.6e-35.

The error of the default rule (12 nodes per panel) is estimated by the
difference with the 8-node rule; for the built-in smooth activations it is at
the level of rounding (< 1e-14 relative) for 1e-12 <= q <= 1e4 (tested).
"""

from __future__ import annotations

from functools import lru_cache
from typing import Callable, Sequence

import numpy as np
from numpy.polynomial.legendre import leggauss

__all__ = ["gauss_nodes", "expect", "expect_with_error", "Z_MAX"]

Z_MAX = 12.5
_BASE_BREAKS = tuple(
    sorted({0.0, *(2.0**k for k in range(-12, 1)), 1.5, 2.0, 2.5, 3.0, 3.5, 4.0, 5.0, 6.0, 7.0, 8.0, 10.0, Z_MAX})
)
_INV_SQRT_2PI = 1.0 / np.sqrt(2.0 * np.pi)
_CHUNK_NODES = 2**20  # integrand values per vectorised evaluation (8 MiB per temporary)


@lru_cache(maxsize=16)
def _leggauss(order: int) -> tuple[np.ndarray, np.ndarray]:
    x, w = leggauss(order)
    x.setflags(write=False)
    w.setflags(write=False)
    return x, w


def legendre_panels(breaks: np.ndarray, order: int = 12) -> tuple[np.ndarray, np.ndarray]:
    """Composite Gauss-Legendre nodes and weights (unit weight function) on the panels between ``breaks``."""
    x, w = _leggauss(int(order))
    a, b = breaks[:-1, None], breaks[1:, None]
    z = (0.5 * (a + b) + 0.5 * (b - a) * x).ravel()
    wz = (0.5 * (b - a) * w).ravel()
    return z, wz


def _panels(breaks: np.ndarray, order: int) -> tuple[np.ndarray, np.ndarray]:
    z, wz = legendre_panels(breaks, order)
    return z, wz * np.exp(-0.5 * z * z) * _INV_SQRT_2PI


@lru_cache(maxsize=64)
def _cached_nodes(extra: tuple[float, ...], order: int) -> tuple[np.ndarray, np.ndarray]:
    half = np.array(_BASE_BREAKS)
    br = np.unique(np.concatenate([-half[::-1], half, np.asarray(extra, dtype=float)]))
    br = br[(br >= -Z_MAX) & (br <= Z_MAX)]
    z, w = _panels(br, order)
    z.setflags(write=False)
    w.setflags(write=False)
    return z, w


def gauss_nodes(breaks: Sequence[float] = (), order: int = 12) -> tuple[np.ndarray, np.ndarray]:
    """Nodes z_i and weights w_i with sum_i w_i f(z_i) ~= E[f(z)], z ~ N(0, 1).

    ``breaks`` are extra panel boundaries in z (e.g. ``kink / sqrt(q)``).
    """
    extra = tuple(sorted(float(b) for b in breaks if np.isfinite(b) and abs(b) < Z_MAX))
    return _cached_nodes(extra, int(order))


def _breaks_for(q: float, kinks: Sequence[float]) -> tuple[float, ...]:
    s = np.sqrt(q)
    return tuple(k / s for k in kinks if k != 0.0)


def expect(f: Callable[[np.ndarray], np.ndarray], q, kinks: Sequence[float] = (), order: int = 12) -> np.ndarray:
    """E_z[f(sqrt(q) z)] for z ~ N(0, 1), vectorised over an array ``q >= 0``.

    ``kinks`` are the points h where f (or its derivative) jumps; kinks at 0 are
    always panel boundaries, others are inserted per value of q.
    """
    q = np.asarray(q, dtype=float)
    if np.any(q < 0) or not np.all(np.isfinite(q)):
        raise ValueError(f"q must be finite and >= 0, got {q!r}")
    off_zero = [k for k in kinks if k != 0.0]
    if not off_zero:
        z, w = gauss_nodes(order=order)
        if q.ndim == 0:
            return np.dot(f(np.sqrt(q) * z), w)
        out = np.empty(q.shape)
        flat, o = q.ravel(), out.reshape(-1)
        step = max(1, _CHUNK_NODES // z.size)  # q values per evaluation: bounded temporary memory
        for i in range(0, flat.size, step):
            o[i:i + step] = np.asarray(f(np.sqrt(flat[i:i + step])[:, None] * z)) @ w
        return out
    out = np.empty(q.shape)
    for idx in np.ndindex(q.shape):
        qi = float(q[idx])
        z, w = gauss_nodes(_breaks_for(qi, off_zero) if qi > 0 else (), order)
        out[idx] = np.dot(f(np.sqrt(qi) * z), w)
    return out if out.shape else out[()]


def expect_with_error(f, q, kinks: Sequence[float] = ()) -> tuple[np.ndarray, np.ndarray]:
    """(E[f(sqrt(q) z)], error estimate) from the 12- vs 8-node composite rules."""
    hi = expect(f, q, kinks, order=12)
    lo = expect(f, q, kinks, order=8)
    return hi, np.abs(hi - lo)
