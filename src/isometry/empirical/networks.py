"""Input-output Jacobians of deep random networks and their spectra (NumPy only).

The network (Pennington, Schoenholz & Ganguli 2017, eq. 1) is

    h^l = W^l x^{l-1} + b^l,   x^l = phi(h^l),   l = 1 .. L,

with W^l either i.i.d. N(0, sigma_w2 / N) ("gaussian") or sqrt(sigma_w2) times a
Haar orthogonal matrix ("orthogonal"), and b^l ~ N(0, sigma_b2). Its Jacobian is

    J = dx^L / dx^0 = prod_{l=L}^{1} D^l W^l,   D^l = diag(phi'(h^l))          (eq. 6)

and :func:`empirical_eigenvalues` returns the eigenvalues of J J^T. The input is
h^0 ~ N(0, q0), x^0 = phi(h^0); q0 defaults to the fixed point q*, so that
q^1 = sigma_w2 E[phi(h^0)^2] + sigma_b2 = q* and every layer sits at the fixed point.

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

Every public function estimates its memory (:func:`memory_estimate`) before it
allocates anything and refuses, with a ``ValueError`` naming the width and the
estimate, a request larger than the memory available to the process (the least of the system's
available memory, the container's limit and the address-space rlimit), or ``max_memory``.
"""

from __future__ import annotations

import math
from typing import Callable

import numpy as np
import scipy.linalg as sla
from scipy.linalg import lapack

from .._checks import available_memory, check_bool, check_positive, format_bytes
from ..activations import Activation, get_activation
from ..meanfield import network_parameters
from ..spectrum.core import MAX_DEPTH
from .sampling import _dtype, _generator, _householder_haar, _positive_int

__all__ = ["empirical_eigenvalues", "jacobian_product", "log_singular_values", "memory_estimate"]

SAMPLED_WEIGHTS = ("orthogonal", "gaussian")

# Peak memory in N x N float64 matrices (8 N (N + 1) bytes), measured with tracemalloc at N = 100..400
# (tests/test_empirical.py checks the estimate against the measured peak).
_PLAIN_MATRICES = 3.5  # weight buffer, product block, one temporary (Householder or GEMM output)
_STABLE_MATRICES = {"orthogonal": 10.0, "gaussian": 11.0}  # product, T, QR factors, graded triangle, temporaries
_OVERHEAD = 2**17  # workspaces and small arrays


def _weights(weights) -> str:
    """The canonical name of a weight law this module can sample ("orthogonal" or "gaussian")."""
    from ..spectrum import weight_law

    law = weight_law(weights)
    name = law.name
    if name not in SAMPLED_WEIGHTS or weight_law(name) is not law:  # a custom law, whatever its name
        raise ValueError(f"weights: random networks can be drawn only with {SAMPLED_WEIGHTS[0]!r} or "
                         f"{SAMPLED_WEIGHTS[1]!r} weights, not a custom S-transform ({weights!r})")
    return name


def memory_estimate(width: int, *, n_samples: int = 1, weights="orthogonal", stable: bool = False) -> int:
    """Peak memory (bytes) of :func:`empirical_eigenvalues` for networks of width N; independent of the depth.

    About 3.5 N x N float64 matrices for the plain product (the weight buffer, the N x (N + 1)
    product block, one temporary: the Householder draw's or the GEMM's output; the SVD runs in
    place), 10 (orthogonal) or 11 (Gaussian) with ``stable=True`` (QR factors, T, the graded
    triangle and their temporaries), plus the 8 N ``n_samples`` bytes of the result and 128 KiB of
    workspaces. ``dtype="float32"`` saves little (the weights are drawn in float64 and the SVD
    runs in float64) and is counted as float64. An upper bound of the peak that ``tracemalloc``
    measures (BLAS thread buffers excluded).

    Example:
        >>> round(memory_estimate(1000) / 2**20)     # MiB at N = 1000
        27
    """
    n = _positive_int(width, "width")
    n_samples = _positive_int(n_samples, "n_samples")
    w = _weights(weights)
    matrices = _STABLE_MATRICES[w] if stable else _PLAIN_MATRICES
    return int(math.ceil(matrices * 8.0 * n * (n + 1) + 8.0 * n * n_samples + _OVERHEAD))


def _check_memory(need: int, n: int, n_samples: int, max_memory) -> None:
    """Refuse a request whose estimated memory exceeds ``max_memory`` bytes (default: the memory
    available to this process: :func:`isometry._checks.available_memory`)."""
    if max_memory is None:
        limit, what = available_memory(), "the memory available to this process"
        if limit is None:  # pragma: no cover
            return
    else:
        limit, what = int(check_positive("max_memory", max_memory)), "max_memory"
    if need > limit:
        request = f"width={n}" + (f" with n_samples={n_samples}" if n_samples > 1 else "")
        raise ValueError(f"{request} would need about {format_bytes(need)} of memory, more than {what} "
                         f"({format_bytes(limit)}); use a smaller width" + (" or fewer samples" if n_samples > 1 else ""))


def _network(a: Activation, q_star, sigma_w2, sigma_b2, q0) -> tuple[float, float, float]:
    """(sigma_w2, sigma_b2, q0) of the network: the critical point (``q_star``) or the given variances,
    and the input length q0 (default: the fixed point q*)."""
    if q0 is not None:
        q0 = check_positive("q0", q0)
    if q_star is not None:
        sw, sb, q = network_parameters(a, q_star=q_star, sigma_w2=sigma_w2, sigma_b2=sigma_b2)
    else:
        sw, sb, q = network_parameters(a, sigma_w2=sigma_w2, sigma_b2=sigma_b2, q0=q0)
    return sw, sb, (q if q0 is None else q0)


class _Layers:
    """Draws layer l and applies C <- D^l W^l C to an N x K Fortran block whose last
    column is the forward vector x^{l-1} (it becomes x^l)."""

    def __init__(self, a: Activation, n: int, sw: float, sb: float, weights: str, rng: np.random.Generator, dtype):
        self.a, self.n, self.weights, self.rng, self.dtype = a, n, weights, rng, dtype
        self.sw, self.sb = sw, sb
        self.buf = np.empty((n, n))
        self.gemm_out = None

    def input(self, q0: float) -> np.ndarray:
        """x^0 = phi(h^0), h^0 ~ N(0, q0)."""
        return np.asarray(self.a.phi(self.rng.standard_normal(self.n) * math.sqrt(q0)), dtype=np.float64)

    def apply(self, c: np.ndarray) -> np.ndarray:
        n, rng = self.n, self.rng
        if self.weights == "orthogonal":
            c = _householder_haar(n, rng, self.dtype, buffer=self.buf).apply(c, math.sqrt(self.sw))
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


def _product(layers: _Layers, n: int, depth: int, q0: float) -> np.ndarray:
    """The N x N product D^L W^L ... D^1 W^1 (Fortran order, ``layers.dtype``)."""
    dt = layers.dtype
    c = np.zeros((n, n + 1), dtype=dt, order="F")
    c[:, :n] = np.eye(n, dtype=dt)
    c[:, n] = layers.input(q0)
    for _ in range(depth):
        c = layers.apply(c)
    return c[:, :n]


def _prepare(activation, depth, width, n_samples, weights, dtype, stable, max_memory):
    a = get_activation(activation)
    depth = _positive_int(depth, "depth")
    if depth > MAX_DEPTH:
        raise ValueError(f"depth must be an integer in [1, {MAX_DEPTH:.0e}] (the range of the theory), got {depth!r}")
    n = _positive_int(width, "width")
    n_samples = _positive_int(n_samples, "n_samples")
    w = _weights(weights)
    dt = _dtype(dtype)
    stable = check_bool("stable", stable)
    if stable and dt != np.float64:
        raise ValueError(f"stable=True needs dtype='float64', got {dtype!r}")
    _check_memory(memory_estimate(n, n_samples=n_samples, weights=w, stable=stable), n, n_samples, max_memory)
    return a, depth, n, n_samples, w, dt


def jacobian_product(
    activation: str | Activation | Callable,
    depth: int,
    width: int,
    *,
    q_star: float | None = None,
    sigma_w2: float | None = None,
    sigma_b2: float | None = None,
    weights: str = "orthogonal",
    q0: float | None = None,
    seed: int | np.random.Generator | None = None,
    dtype: str = "float64",
    max_memory: int | None = None,
) -> np.ndarray:
    """The explicit Jacobian J = D^L W^L ... D^1 W^1 (eq. 6) of one random network (N x N).

    The network is that of :func:`empirical_eigenvalues` (same parameters); its random
    stream is, in order: the input h^0 (N normal draws), then per layer the weights
    (N^2 draws) and, when ``sigma_b2 > 0``, the biases (N draws). Memory O(N^2) whatever
    ``depth``.

    Example:
        >>> j = jacobian_product("tanh", 3, 50, sigma_w2=1.5, sigma_b2=0.1, q0=0.7, seed=0)
        >>> j.shape
        (50, 50)
    """
    a, depth, n, _, w, dt = _prepare(activation, depth, width, 1, weights, dtype, False, max_memory)
    sw, sb, q_in = _network(a, q_star, sigma_w2, sigma_b2, q0)
    layers = _Layers(a, n, sw, sb, w, _generator(seed), dt)
    return _product(layers, n, depth, q_in)  # Fortran-contiguous N x N (no copy: memory as estimated)


def _stable_log_factors(layers: _Layers, n: int, depth: int, q0: float) -> tuple[np.ndarray, np.ndarray]:
    """Accumulate J = U diag(e^ell) T through QR; return (ell, T)."""
    c = np.zeros((n, n + 1), order="F")
    c[:, :n] = np.eye(n)
    c[:, n] = layers.input(q0)
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


def _log_svals(layers: _Layers, n: int, depth: int, q0: float) -> np.ndarray:
    ell, t = _stable_log_factors(layers, n, depth, q0)
    return _graded_log_svals(ell, t)


def log_singular_values(
    activation: str | Activation | Callable,
    depth: int,
    width: int,
    *,
    q_star: float | None = None,
    sigma_w2: float | None = None,
    sigma_b2: float | None = None,
    weights: str = "orthogonal",
    q0: float | None = None,
    seed: int | np.random.Generator | None = None,
    max_memory: int | None = None,
) -> np.ndarray:
    """log singular values of one network's Jacobian (natural log, ascending), by the stable (QR) route.

    The network is that of :func:`empirical_eigenvalues` (same parameters). Resolves
    singular values down to ~1e-300 s_max with relative accuracy; the Lyapunov exponents
    are the limits of these divided by ``depth``; ``-inf`` where a singular value
    underflows float64 relative to the largest.

    Example:
        >>> ls = log_singular_values("linear", 150, 8, sigma_w2=1.0, sigma_b2=0.0, q0=1.0,
        ...                          weights="gaussian", seed=0)
        >>> ls.shape
        (8,)
    """
    a, depth, n, _, w, _ = _prepare(activation, depth, width, 1, weights, "float64", True, max_memory)
    sw, sb, q_in = _network(a, q_star, sigma_w2, sigma_b2, q0)
    layers = _Layers(a, n, sw, sb, w, _generator(seed), np.dtype(np.float64))
    return _log_svals(layers, n, depth, q_in)


def _svals(m: np.ndarray) -> np.ndarray:
    # float64 divide-and-conquer: float32 SVD is not faster in OpenBLAS and loses lambda < ~1e-14 lambda_max
    return sla.svdvals(np.asarray(m, dtype=np.float64), overwrite_a=True, check_finite=False)


def empirical_eigenvalues(
    activation: str | Activation | Callable,
    depth: int,
    width: int,
    *,
    q_star: float | None = None,
    sigma_w2: float | None = None,
    sigma_b2: float | None = None,
    weights: str = "orthogonal",
    q0: float | None = None,
    n_samples: int = 1,
    seed: int | np.random.Generator | None = None,
    stable: bool = False,
    dtype: str = "float64",
    progress: bool | None = None,
    max_memory: int | None = None,
) -> np.ndarray:
    """Eigenvalues of J J^T for ``n_samples`` random networks, concatenated (each block sorted ascending).

    J = D^L W^L ... D^1 W^1 (Pennington, Schoenholz & Ganguli 2017, eq. 6) of a width-N,
    depth-L network h^l = W^l phi(h^{l-1}) + b^l with Gaussian (N(0, sigma_w2/N)) or
    scaled Haar orthogonal (sqrt(sigma_w2) Q) weights and biases N(0, sigma_b2), started
    from h^0 ~ N(0, q0). Its law is :func:`isometry.jacobian_spectrum` with the same
    arguments (compare them with :func:`isometry.compare`).

    Args:
        activation: a registry name, an :class:`isometry.Activation` or a callable phi.
        depth: L in [1, 1e9], the number of layers D^l W^l.
        width: N >= 1.
        q_star: the fixed point q*: the network sits at the critical point (chi = 1) with
            this q* (:func:`isometry.network_parameters`). Or give ``sigma_w2`` and
            ``sigma_b2`` (variances; q* from the length map, chi may differ from 1).
        weights: ``"orthogonal"`` or ``"gaussian"`` (resolved by
            :func:`isometry.spectrum.weight_law`; custom S-transforms cannot be sampled).
        q0: the length of h^0; default q*, so that every layer sits at the fixed point
            (with ``sigma_w2``/``sigma_b2`` it also picks the fixed point, as in the theory).
        n_samples: the number of independent networks.
        seed: an int, a ``numpy.random.Generator`` or None. Network i draws from the i-th
            child of ``np.random.default_rng(seed).spawn(n_samples)``: results are identical
            for the same int seed, and network i does not depend on ``n_samples``.
        stable: use the QR (Lyapunov) route, accurate for eigenvalues far below
            eps^2 lambda_max (about 5x the plain route's cost per layer).
        dtype: ``"float32"`` runs the product in float32 (the SVD stays float64;
            eigenvalues below ~1e-14 lambda_max are then lost).
        progress: a tqdm bar over networks on stderr (None: only on a terminal).
        max_memory: refuse (``ValueError``) a request whose :func:`memory_estimate` exceeds
            this many bytes (default: the memory available to this process), before allocating.

    Returns:
        ``n_samples * width`` eigenvalues, network i in ``[i * width, (i + 1) * width)``.

    Example:
        >>> lam = empirical_eigenvalues("erf", 32, 400, q_star=0.25, n_samples=2, seed=0)
        >>> lam.shape
        (800,)
    """
    from tqdm.auto import tqdm

    a, depth, n, n_samples, w, dt = _prepare(activation, depth, width, n_samples, weights, dtype, stable, max_memory)
    if progress is not None:
        progress = check_bool("progress", progress)
    sw, sb, q_in = _network(a, q_star, sigma_w2, sigma_b2, q0)
    children = _generator(seed).spawn(n_samples)
    out = np.empty(n_samples * n)
    for i in tqdm(range(n_samples), disable=(None if progress is None else not progress), desc="networks", leave=False):
        layers = _Layers(a, n, sw, sb, w, children[i], dt)
        if stable:
            lam = np.exp(2.0 * _log_svals(layers, n, depth, q_in))
        else:
            lam = np.sort(np.square(_svals(_product(layers, n, depth, q_in))))
        out[i * n:(i + 1) * n] = lam
        del layers
    return out
