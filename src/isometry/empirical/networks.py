"""Input-output Jacobians of deep random networks and their spectra (NumPy only).

The network (Pennington, Schoenholz & Ganguli 2017, eq. 1) is

    h^l = W^l x^{l-1} + b^l,   x^l = phi(h^l),   l = 1 .. L,

with W^l either i.i.d. N(0, sigma_w2 / N) ("gaussian") or sqrt(sigma_w2) times a
Haar orthogonal matrix ("orthogonal"), and b^l ~ N(0, sigma_b2). Its Jacobian is

    J = dx^L / dx^0 = prod_{l=L}^{1} D^l W^l,   D^l = diag(phi'(h^l))          (eq. 6)

and :func:`empirical_spectrum` returns the eigenvalues of J J^T. The input is
h^0 ~ N(0, q*), x^0 = phi(h^0), so that q^1 = sigma_w2 E[phi(h^0)^2] + sigma_b2 = q*
and every layer sits at the fixed point.

The product is accumulated as M <- D^l W^l M in one N x N buffer (memory O(N^2)
whatever L), the forward vector x riding along as an extra column. A Gaussian
layer is one GEMM; a Haar layer is one ``dormqr`` (Householder reflectors drawn in
O(N^2), see :mod:`.sampling`), also 2 N^3 flops. The spectrum is the squared
singular values of M (``gesdd`` in float64), which are accurate to about
eps * s_max: eigenvalues below ~1e-30 lambda_max are noise in the plain mode.

``stable=True`` accumulates the product through QR as in Lyapunov-exponent
computations (Benettin et al. 1980): J = U diag(exp(ell)) T with U orthogonal,
T unit-upper-triangular-like and well conditioned, ell the running log-scales;
each layer does C = D W U = Q R, ell += log|R_ii|, T <- (R_ij / |R_ii|) e^{ell_j - ell_i} T.
The final singular values of diag(e^ell) T are computed by one-sided Jacobi
(``dgejsv``), which is accurate to relative precision for row-graded matrices, so
tiny singular values are resolved far below eps * s_max (until float64 underflow).
"""

from __future__ import annotations

import math
from typing import Callable

import numpy as np
import scipy.linalg as sla
from scipy.linalg import lapack

from ..activations import Activation, get_activation
from ..meanfield import network_parameters
from .sampling import _dtype, householder_haar

__all__ = ["empirical_spectrum", "network_parameters", "jacobian_product", "log_singular_values"]

WEIGHTS = ("orthogonal", "gaussian")


def _positive_int(v, name: str) -> int:
    try:
        ok = int(v) == v and v >= 1
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise ValueError(f"{name} must be an integer >= 1, got {v!r}")
    return int(v)


def _check_weights(weights: str) -> str:
    if weights not in WEIGHTS:
        raise ValueError(f"weights must be one of {WEIGHTS}, got {weights!r}")
    return weights


class _Layers:
    """Draws layer l and applies C <- D^l W^l C to an N x K Fortran block whose last
    column is the forward vector x^{l-1} (it becomes x^l)."""

    def __init__(self, a: Activation, n: int, sw: float, sb: float, weights: str, rng: np.random.Generator, dtype):
        self.a, self.n, self.weights, self.rng, self.dtype = a, n, weights, rng, dtype
        self.sw, self.sb = sw, sb
        self.buf = np.empty((n, n))
        self.gemm_out = None

    def apply(self, c: np.ndarray) -> np.ndarray:
        n, rng = self.n, self.rng
        if self.weights == "orthogonal":
            c = householder_haar(n, rng, self.dtype, buffer=self.buf).apply(c, math.sqrt(self.sw))
        else:
            rng.standard_normal(out=self.buf)
            w = self.buf if self.dtype == np.float64 else self.buf.astype(self.dtype)
            if self.gemm_out is None or self.gemm_out.shape != c.shape:
                self.gemm_out = np.empty(c.shape, dtype=self.dtype, order="F")
            out = self.gemm_out
            np.matmul(w, c, out=out)
            out *= self.dtype.type(math.sqrt(self.sw / n))
            self.gemm_out, c = c, out
        h = c[:, -1].astype(np.float64) + (rng.standard_normal(n) * math.sqrt(self.sb) if self.sb > 0 else 0.0)
        d = np.asarray(self.a.dphi(h), dtype=np.float64)
        c[:, :-1] *= d[:, None].astype(c.dtype, copy=False)
        c[:, -1] = self.a.phi(h)
        return c


def _input(a: Activation, n: int, q: float, rng: np.random.Generator) -> np.ndarray:
    return np.asarray(a.phi(rng.standard_normal(n) * math.sqrt(q)), dtype=np.float64)


def jacobian_product(act, depth: int, width: int, *, sigma_w2: float, sigma_b2: float, q_star: float,
                     weights: str = "orthogonal", rng: np.random.Generator | int | None = None, dtype="float64") -> np.ndarray:
    """The explicit Jacobian J = D^L W^L ... D^1 W^1 of one random network (N x N).

    Parameters are the variances ``sigma_w2``, ``sigma_b2`` and the input length
    ``q_star`` (h^0 ~ N(0, q*)). Memory O(N^2) whatever ``depth``.
    """
    a = get_activation(act)
    depth = _positive_int(depth, "depth")
    n = _positive_int(width, "width")
    dt = _dtype(dtype)
    rng = np.random.default_rng(rng)
    layers = _Layers(a, n, float(sigma_w2), float(sigma_b2), _check_weights(weights), rng, dt)
    c = np.zeros((n, n + 1), dtype=dt, order="F")
    c[:, :n] = np.eye(n, dtype=dt)
    c[:, n] = _input(a, n, q_star, rng)
    for _ in range(depth):
        c = layers.apply(c)
    return np.array(c[:, :n], dtype=dt, order="F")


def _stable_log_factors(layers: _Layers, a: Activation, n: int, depth: int, q: float, rng) -> tuple[np.ndarray, np.ndarray]:
    """Accumulate J = U diag(e^ell) T through QR; return (ell, T)."""
    c = np.zeros((n, n + 1), order="F")
    c[:, :n] = np.eye(n)
    c[:, n] = _input(a, n, q, rng)
    ell = np.zeros(n)
    t = np.eye(n)
    for _ in range(depth):
        c = layers.apply(c)
        x = c[:, n].copy()
        qr, tau, _, info = lapack.dgeqrf(c[:, :n], overwrite_a=1)
        if info != 0:  # pragma: no cover
            raise RuntimeError(f"dgeqrf failed (info={info})")
        r = np.triu(qr)
        rd = np.abs(np.diagonal(r)).copy()
        zero = rd == 0
        rd[zero] = np.finfo(float).tiny
        with np.errstate(over="ignore"):
            grade = np.exp(np.minimum(ell[None, :] - ell[:, None], 700.0))
        s = np.triu(r / rd[:, None] * grade)
        t = sla.blas.dtrmm(1.0, s, t)  # S upper triangular times T
        ell = ell + np.log(rd)
        q_, _, info = lapack.dorgqr(qr, tau, overwrite_a=1)
        if info != 0:  # pragma: no cover
            raise RuntimeError(f"dorgqr failed (info={info})")
        c = np.empty((n, n + 1), order="F")
        c[:, :n] = q_
        c[:, n] = x
    return ell, t


def _graded_log_svals(ell: np.ndarray, t: np.ndarray) -> np.ndarray:
    """log singular values of diag(e^ell) T by one-sided Jacobi (``dgejsv``, relative accuracy
    for row-graded matrices); -inf where they underflow float64 relative to the largest."""
    top = float(np.max(ell))
    with np.errstate(under="ignore"):
        x = np.asfortranarray((np.exp(ell - top)[:, None] * t).T)  # columns scaled: T^T diag(e^ell)
    sva, _, _, work, _, info = lapack.dgejsv(x, joba=0, jobu=3, jobv=3, jobr=0, jobt=1, jobp=1)
    if info != 0:  # pragma: no cover
        raise RuntimeError(f"dgejsv failed (info={info})")
    scale = work[0] / work[1] if work[1] != 0 else 1.0
    with np.errstate(divide="ignore"):
        return np.sort(np.log(sva * scale) + top)


def log_singular_values(act, depth: int, width: int, *, sigma_w2: float, sigma_b2: float, q_star: float,
                        weights: str = "orthogonal", rng: np.random.Generator | int | None = None) -> np.ndarray:
    """log singular values of one network's Jacobian, ascending, by the stable (QR) route.

    Resolves singular values down to ~1e-300 s_max with relative accuracy; the
    Lyapunov exponents are the limits of these divided by ``depth``.
    """
    a = get_activation(act)
    depth = _positive_int(depth, "depth")
    n = _positive_int(width, "width")
    rng = np.random.default_rng(rng)
    layers = _Layers(a, n, float(sigma_w2), float(sigma_b2), _check_weights(weights), rng, np.dtype(np.float64))
    ell, t = _stable_log_factors(layers, a, n, depth, q_star, rng)
    return _graded_log_svals(ell, t)


def _svals(m: np.ndarray) -> np.ndarray:
    # float64 divide-and-conquer: float32 SVD is not faster in OpenBLAS and loses lambda < ~1e-14 lambda_max
    return sla.svdvals(np.asarray(m, dtype=np.float64), overwrite_a=True, check_finite=False)


def empirical_spectrum(
    act: str | Activation | Callable,
    depth: int,
    width: int,
    *,
    q_star: float | None = None,
    sigma_w2: float | None = None,
    sigma_b2: float | None = None,
    weights: str = "orthogonal",
    n_samples: int = 1,
    seed: int | np.random.SeedSequence | None = 0,
    dtype: str = "float64",
    stable: bool = False,
    progress: bool | None = None,
) -> np.ndarray:
    """Eigenvalues of J J^T for ``n_samples`` random networks, concatenated (each sorted ascending).

    J = D^L W^L ... D^1 W^1 (eq. 6) of a width-N, depth-L network with Gaussian
    (N(0, sigma_w2/N)) or scaled Haar orthogonal weights, biases N(0, sigma_b2),
    input h^0 ~ N(0, q*), x^0 = phi(h^0) (so q^l = q* at every layer).

    Give ``q_star`` for the critical point (chi = 1) with that fixed point, or the
    variances ``sigma_w2`` and ``sigma_b2``. Sample i uses the i-th child of
    ``SeedSequence(seed)``, so results are identical for the same seed and sample i
    does not depend on ``n_samples``. ``dtype="float32"`` runs the product in
    float32 (the spectrum is still computed in float64; eigenvalues below
    ~1e-14 lambda_max are then lost). ``stable=True`` uses the QR (Lyapunov) route,
    accurate for eigenvalues far below eps^2 lambda_max (measured ~5x the plain
    route's cost per layer: QR, forming Q and a triangular product on top of the GEMM).
    ``progress``: tqdm bar over samples (None: only on a terminal).

    Example: ``lam = empirical_spectrum("erf", depth=32, width=400, q_star=0.25)``.
    """
    from tqdm.auto import tqdm

    a = get_activation(act)
    depth = _positive_int(depth, "depth")
    n = _positive_int(width, "width")
    n_samples = _positive_int(n_samples, "n_samples")
    _check_weights(weights)
    dt = _dtype(dtype)
    if stable and dt != np.float64:
        raise ValueError(f"stable=True needs dtype='float64', got {dtype!r}")
    sw, sb, q = network_parameters(a, q_star=q_star, sigma_w2=sigma_w2, sigma_b2=sigma_b2)
    seeds = seed.spawn(n_samples) if isinstance(seed, np.random.SeedSequence) else np.random.SeedSequence(seed).spawn(n_samples)
    out = np.empty(n_samples * n)
    for i in tqdm(range(n_samples), disable=(None if progress is None else not progress), desc="networks", leave=False):
        rng = np.random.default_rng(seeds[i])
        if stable:
            lam = np.exp(2.0 * log_singular_values(a, depth, n, sigma_w2=sw, sigma_b2=sb, q_star=q, weights=weights, rng=rng))
        else:
            m = jacobian_product(a, depth, n, sigma_w2=sw, sigma_b2=sb, q_star=q, weights=weights, rng=rng, dtype=dt)
            lam = np.sort(np.square(_svals(m)))
        out[i * n:(i + 1) * n] = lam
    return out
