"""S-transforms of the weight Gram matrices W^T W, normalised to mean 1.

The spectrum engine works with the *normalised* factors W / sigma_w and
D / sqrt(mu_1), whose squares have mean 1; the scale chi^L = (sigma_w2 mu_1)^L is
carried separately (in log form).  A weight law supplies, for complex z,

* ``log_s(z)``  = log S_{W^T W}(z) with S(0) = 1,
* ``dlog_s(z)`` = d/dz log S(z),
* ``series(K)`` = the first K Taylor coefficients of S (exact moment recursions).

Built in (Pennington, Schoenholz & Ganguli 2017, sec. 2.4):
scaled orthogonal (Haar) weights, S(z) = 1; Gaussian weights (square
Marchenko-Pastur), S(z) = 1 / (1 + z).  Any other law is given by its S-transform
(a callable, analytic near z in [-1, 0]); it is normalised by S(0) so that only
its shape matters, and its scale is set by ``sigma_w2``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

__all__ = ["WeightLaw", "weight_law", "ORTHOGONAL", "GAUSSIAN"]


@dataclass(frozen=True, eq=False)
class WeightLaw:
    """A normalised (mean 1) law of W^T W given through its S-transform.

    ``log_s(z, opz)`` and ``dlog_s(z, opz)`` take z and, optionally, 1 + z computed
    without cancellation (used where z -> -1).
    """

    name: str
    log_s: Callable[[np.ndarray], np.ndarray]
    dlog_s: Callable[[np.ndarray], np.ndarray]
    coeffs: Callable[[int], np.ndarray]

    @property
    def s1(self) -> float:
        """S(z) = 1 + s1 z + ...: -s1 is the variance of the normalised W^T W (0 orthogonal, -1 Gaussian)."""
        return float(self.coeffs(2)[1])

    def series(self, K: int) -> np.ndarray:
        return np.asarray(self.coeffs(K), dtype=float)


def _orth_coeffs(K: int) -> np.ndarray:
    c = np.zeros(K)
    c[0] = 1.0
    return c


ORTHOGONAL = WeightLaw(
    "orthogonal",
    log_s=lambda z, opz=None: np.zeros_like(np.asarray(z, dtype=complex)),
    dlog_s=lambda z, opz=None: np.zeros_like(np.asarray(z, dtype=complex)),
    coeffs=_orth_coeffs,
)

GAUSSIAN = WeightLaw(
    "gaussian",
    log_s=lambda z, opz=None: -np.log(1.0 + np.asarray(z, dtype=complex) if opz is None else opz),
    dlog_s=lambda z, opz=None: -1.0 / (1.0 + np.asarray(z, dtype=complex) if opz is None else opz),
    coeffs=lambda K: (-1.0) ** np.arange(K),
)


def _custom(fn: Callable, name: str) -> WeightLaw:
    try:
        s0 = complex(np.asarray(fn(np.array([0.0 + 0.0j])), dtype=complex).ravel()[0])
    except Exception as exc:
        raise ValueError(f"weights: the S-transform callable failed at z = 0 ({exc})") from None
    if not (np.isfinite(s0) and abs(s0.imag) < 1e-12 * max(abs(s0), 1e-300) and s0.real > 0):
        raise ValueError(f"weights: the S-transform must be real and > 0 at z = 0, got S(0) = {s0}")
    s0 = s0.real

    def S(z):
        z = np.asarray(z, dtype=complex)
        return np.asarray(fn(z), dtype=complex).reshape(z.shape) / s0

    def log_s(z, opz=None):
        return np.log(S(z))

    def dlog_s(z, opz=None):
        z = np.asarray(z, dtype=complex)
        h = 1e-5 * (1.0 + np.abs(z))
        return (S(z + h) - S(z - h)) / (2.0 * h) / S(z)

    def coeffs(K: int) -> np.ndarray:
        n = 64
        r = 0.25
        th = 2 * np.pi * np.arange(n) / n
        vals = S(r * np.exp(1j * th))
        c = np.fft.fft(vals) / n
        return (c[:K] / r ** np.arange(K)).real

    for z in (-0.9, -0.5, 0.5, 2.0):
        v = S(np.array([z + 0j]))[0]
        if not np.isfinite(v) or v == 0:
            raise ValueError(f"weights: the S-transform must be finite and nonzero on [-0.9, 2], got S({z}) = {v}")
    return WeightLaw(name, log_s, dlog_s, coeffs)


_BUILT_IN = {"orthogonal": ORTHOGONAL, "gaussian": GAUSSIAN}


def weight_law(weights: "str | WeightLaw | Callable") -> WeightLaw:
    """The one resolver of weight laws: ``"orthogonal"``, ``"gaussian"``, a :class:`WeightLaw`, or an
    S-transform callable (its shape only: it is normalised by S(0)).

    Names are exact (no aliases); anything else raises ``ValueError`` listing the valid names.
    The resolved law's ``.name`` is the canonical string.

    >>> weight_law("gaussian").s1
    -1.0
    """
    if isinstance(weights, WeightLaw):
        return weights
    if isinstance(weights, str):
        try:
            return _BUILT_IN[weights]
        except KeyError:
            raise ValueError(
                f"weights must be one of {', '.join(repr(k) for k in _BUILT_IN)}, a WeightLaw or an S-transform "
                f"callable, got {weights!r}"
            ) from None
    if callable(weights):
        return _custom(weights, getattr(weights, "__name__", "custom"))
    raise TypeError(f"weights must be one of {', '.join(repr(k) for k in _BUILT_IN)}, a WeightLaw or an S-transform "
                    f"callable, got {type(weights).__name__}")
