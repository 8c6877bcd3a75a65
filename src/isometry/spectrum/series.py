"""Truncated power series in z (coefficient arrays c[0..K]) for exact moment recursions.

Free probability in series form: for a law with moments m_k (m_1 = 1 after
normalisation) the moment series psi(t) = sum_k m_k t^k has compositional inverse
chi, and S(z) = chi(z) (1 + z) / z.  Products of free variables multiply S.
All operations truncate at the length of their inputs.
"""

from __future__ import annotations

import numpy as np

__all__ = ["mul", "exp", "log", "compose", "inverse", "s_from_moments", "moments_from_s"]


def mul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    n = min(len(a), len(b))
    return np.convolve(a[:n], b[:n])[:n]


def exp(a: np.ndarray) -> np.ndarray:
    """exp of a series, via b' = a' b (exact recursion)."""
    n = len(a)
    b = np.zeros(n)
    b[0] = np.exp(a[0])
    da = np.arange(n) * a  # k a_k
    for k in range(1, n):
        b[k] = np.dot(da[1 : k + 1], b[k - 1 :: -1][:k]) / k
    return b


def log(a: np.ndarray) -> np.ndarray:
    """log of a series with a[0] > 0, via b' = a'/a."""
    n = len(a)
    if not a[0] > 0:
        raise ValueError("log of a series needs a positive constant term")
    b = np.zeros(n)
    b[0] = np.log(a[0])
    # a b' = a'  ->  k b_k a_0 = k a_k - sum_{j=1}^{k-1} j b_j a_{k-j}
    for k in range(1, n):
        s = k * a[k] - sum(j * b[j] * a[k - j] for j in range(1, k))
        b[k] = s / (k * a[0])
    return b


def compose(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """a(b(z)) for b[0] = 0 (Horner)."""
    n = len(a)
    out = np.zeros(n)
    for c in a[::-1]:
        out = mul(out, b)
        out[0] += c
    return out


def inverse(a: np.ndarray) -> np.ndarray:
    """Compositional inverse of a = a_1 z + a_2 z^2 + ... (a_0 = 0, a_1 != 0)."""
    n = len(a)
    if a[0] != 0 or a[1] == 0:
        raise ValueError("series inverse needs a_0 = 0 and a_1 != 0")
    b = np.zeros(n)
    b[1] = 1.0 / a[1]
    for k in range(2, n):  # fix coefficient k of a(b(z)) - z
        b_try = b.copy()
        r = compose(a, b_try)[k]
        b[k] = -r / a[1]
    return b


def s_from_moments(m: np.ndarray) -> np.ndarray:
    """S-transform series (K terms) from moments m[0..K] with m[0] = 1 (m[1] > 0)."""
    psi = np.asarray(m, dtype=float).copy()
    psi[0] = 0.0
    chi = inverse(psi)  # chi(z) = b1 z + ...
    # S = chi (1 + z)/z
    c = chi[1:]
    out = c.copy()
    out[1:] += c[:-1]
    return out


def moments_from_s(s: np.ndarray) -> np.ndarray:
    """Moments m[0..K] (m[0] = 1) from the S-transform series s[0..K-1]."""
    K = len(s)
    # chi(z) = z S(z) / (1 + z)
    geo = (-1.0) ** np.arange(K)
    sz = mul(s, geo)
    chi = np.zeros(K + 1)
    chi[1:] = sz
    psi = inverse(chi)
    psi[0] = 1.0
    return psi
