"""Closed forms and the small-L polynomial baseline (Pennington, Schoenholz & Ganguli 2017, sec. 2.5).

* Fuss-Catalan law (linear network, Gaussian weights): moments
  m_k = binom((L+1)k, k) / (Lk + 1), edge lambda_max = (L+1)^{L+1} / L^L, and the
  parametric density of Haagerup & Moller (2012).
* Bernoulli D^2 (ReLU p = 1/2, hard tanh p = erf(1/sqrt(2 q*)), shifted ReLU):
  lambda_max for orthogonal weights ((1-p)/p) L^L / (L-1)^{L-1} (sigma_w2 p)^L when
  L (1 - p) > 1, else the top atom (sigma_w2 p)^L (1/p)^L of mass 1 - L(1 - p).
* The polynomial route: for Bernoulli D^2 (p = 1: linear) with normalised factors,
  M solves  orthogonal: z p^L M (1 + M)^{L-1} = (M + p)^L;
            Gaussian:   z p^L M = (M + p)^L (1 + M);
  one root per z gives the density -Im M / (pi z).  Cost O(L^3) per point.
"""

from __future__ import annotations

import numpy as np
from scipy import special

from .s_transforms import weight_law

__all__ = [
    "fuss_catalan_moments",
    "fuss_catalan_density",
    "fuss_catalan_lambda_max",
    "bernoulli_lambda_max",
    "polynomial_m",
    "polynomial_density",
]


def fuss_catalan_moments(depth: int, k: int) -> np.ndarray:
    """m_1..m_k of the Fuss-Catalan law of order L (product of L square Gaussian matrices)."""
    L = int(depth)
    j = np.arange(1, k + 1)
    return np.exp(special.gammaln((L + 1) * j + 1) - special.gammaln(j + 1) - special.gammaln(L * j + 1)) / (L * j + 1)


def fuss_catalan_lambda_max(depth: int) -> float:
    L = int(depth)
    return float(np.exp((L + 1) * np.log(L + 1) - L * np.log(L)))


def fuss_catalan_density(depth: int, n: int = 2000) -> tuple[np.ndarray, np.ndarray]:
    """(lambda, rho) on the Haagerup-Moller parametrisation phi in (0, pi/(L+1)):

    lambda = sin((L+1) phi)^{L+1} / (sin(phi) sin(L phi)^L),
    rho = sin(phi)^2 sin(L phi)^{L-1} / (pi sin((L+1) phi)^L).
    """
    L = int(depth)
    phi = np.linspace(0, np.pi / (L + 1), n + 2)[1:-1]
    s1, sL, sL1 = np.sin(phi), np.sin(L * phi), np.sin((L + 1) * phi)
    lam = sL1 ** (L + 1) / (s1 * sL**L)
    rho = s1**2 * sL ** (L - 1) / (np.pi * sL1**L)
    return lam, rho


def _builtin_weights(weights) -> str:
    """The canonical name of a built-in weight law (these closed forms know only the two)."""
    name = weight_law(weights).name
    if name not in ("orthogonal", "gaussian"):
        raise ValueError(f"this closed form is for 'orthogonal' or 'gaussian' weights, got the custom law {name!r}")
    return name


def bernoulli_lambda_max(p: float, depth: int, sigma_w2: float, weights: str = "orthogonal") -> float:
    """Right edge (or top atom) of the spectrum for Bernoulli(p) D^2 with scale sigma_w2.

    Gaussian weights: the exact edge of the normalised law is max over w of a
    one-dimensional function; for large L it behaves as (sigma_w2 p)^L e L / p.
    Here we return the orthogonal closed form, and for Gaussian weights the
    asymptotic form (use the spectrum's ``max_eigenvalue`` for the exact edge).
    ``weights`` is resolved by :func:`isometry.spectrum.weight_law` (unknown names raise).

    >>> bernoulli_lambda_max(0.5, 2, 2.0, "orthogonal")          # ReLU, L = 2: edge at 4
    4.0
    """
    weights = _builtin_weights(weights)
    L = int(depth)
    scale = (sigma_w2 * p) ** L
    if weights == "orthogonal":
        if L * (1.0 - p) > 1.0:
            return float(((1.0 - p) / p) * np.exp(L * np.log(L) - (L - 1) * np.log(L - 1)) * scale)
        return float(scale / p**L)
    return float(scale * np.e * L / p)


def _poly(zi: float, L: int, p: float, weights: str) -> np.ndarray:
    mp = np.array([special.comb(L, j) * p ** (L - j) for j in range(L + 1)])  # coefficient of M^j
    if weights == "gaussian":  # (M + p)^L (1 + M) - z p^L M = 0
        poly = np.zeros(L + 2)
        poly[: L + 1] += mp
        poly[1 : L + 2] += mp
        poly[1] -= zi * p**L
    else:  # (M + p)^L - z p^L M (1 + M)^{L-1} = 0
        q = np.array([special.comb(L - 1, j) for j in range(L)])
        poly = np.zeros(L + 1)
        poly[: L + 1] += mp
        poly[1 : L + 1] -= zi * p**L * q
    return np.roots(poly[::-1])


def polynomial_m(z: np.ndarray, depth: int, p: float = 1.0, weights: str = "gaussian") -> np.ndarray:
    """M_{JJ^T}(z + i0) from the polynomial, following the physical root by continuity.

    The path starts far above the spectrum (M ~ 1/z) and descends through the
    sorted z; at each z the root nearest the previous one (with Im M <= 0) is kept.
    """
    weights = _builtin_weights(weights)
    L = int(depth)
    z = np.atleast_1d(np.asarray(z, float))
    order = np.argsort(-z)
    top = 4.0 * max(float(z.max()), (L + 1.0) ** 2 / p**L)
    path = np.concatenate([np.geomspace(top, max(z.max(), 1e-300) * 1.0001, 60), z[order]])
    out = np.empty(path.shape, complex)
    prev = 1.0 / top
    for i, zi in enumerate(path):
        r = _poly(zi, L, p, weights)
        r = r[r.imag <= 1e-12 * (1 + np.abs(r))]
        prev = r[np.argmin(np.abs(r - prev))]
        out[i] = prev
    res = np.empty(z.shape, complex)
    res[order] = out[60:]
    return res


def polynomial_density(lam: np.ndarray, depth: int, p: float = 1.0, weights: str = "gaussian") -> np.ndarray:
    """Continuous density of the normalised spectrum from polynomial roots (small L only)."""
    lam = np.atleast_1d(np.asarray(lam, float))
    m = polynomial_m(lam, depth, p, weights)
    return np.maximum(-m.imag, 0.0) / (np.pi * lam)
