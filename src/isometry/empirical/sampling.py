"""Random weight matrices: Gaussian and Haar orthogonal, the latter applied without forming Q.

A Haar orthogonal matrix is the Q of the QR factorisation of an N x N Gaussian
matrix G with the sign fix Q <- Q diag(sign R_ii) (Mezzadri 2007; without the
fix Q is *not* Haar). Householder QR of G computes reflectors H_k from the k-th
column of H_{k-1} ... H_1 G, below the diagonal. By orthogonal invariance those
columns are again i.i.d. Gaussian and independent of the earlier reflectors, so
the reflectors can be drawn directly from fresh Gaussian vectors (Stewart 1980):
sampling costs O(N^2) instead of the (4/3) N^3 of ``dgeqrf`` plus the (4/3) N^3
of ``dorgqr``, and applying Q = H_1 ... H_{N-1} diag(s) to an N x K block with
LAPACK's blocked ``dormqr`` costs one GEMM's flops (2 N^2 K).

:func:`haar_orthogonal` is the public sampler (an explicit matrix). Inside the
package, :func:`_householder_haar` keeps the reflectors (``a``, ``tau`` in LAPACK
``geqrf`` layout) and signs ``s`` in a :class:`_HaarOrthogonal`, whose
``apply(C)`` overwrites C with Q C; the ``dormqr`` workspace size is queried once
per (N, K, dtype) and reused.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from scipy.linalg import lapack

from .._checks import check_fits, check_int, check_positive

__all__ = ["haar_orthogonal", "gaussian_matrix"]

_DTYPES = {"float64": np.float64, "float32": np.float32}


def _dtype(dtype) -> np.dtype:
    try:
        name = dtype if isinstance(dtype, str) else np.dtype(dtype).name
    except TypeError:
        name = None
    if name not in _DTYPES:
        raise ValueError(f"dtype must be one of {sorted(_DTYPES)}, got {dtype!r}")
    return np.dtype(_DTYPES[name])


def _positive_int(v, name: str) -> int:
    """``v`` as an int >= 1 (an integral float such as ``3.0`` too): TypeError for booleans and non-numbers."""
    return check_int(name, v, 1, integral_float=True)


def _generator(seed) -> np.random.Generator:
    """``np.random.default_rng(seed)`` for an int, a Generator, a SeedSequence or None (booleans refused)."""
    if isinstance(seed, (bool, np.bool_)):
        raise TypeError(f"seed must be an int, a numpy Generator or None, got {seed!r}")
    try:
        return np.random.default_rng(seed)
    except (TypeError, ValueError) as exc:
        raise type(exc)(f"seed must be an int >= 0, a numpy Generator or None, got {seed!r}") from None


@lru_cache(maxsize=32)
def _ormqr_lwork(n: int, k: int, dtype: str) -> int:
    ormqr = lapack.dormqr if dtype == "float64" else lapack.sormqr
    a = np.zeros((n, n), dtype=dtype, order="F")
    c = np.zeros((n, k), dtype=dtype, order="F")
    tau = np.zeros(n, dtype=dtype)
    work, info = ormqr("L", "N", a, tau, c, -1)[1:]
    if info != 0:  # pragma: no cover
        raise RuntimeError(f"dormqr workspace query failed (info={info})")
    return max(int(work[0]), 1)


class _HaarOrthogonal:
    """A Haar-distributed orthogonal N x N matrix stored as Householder reflectors.

    ``Q = H_1 H_2 ... H_{N-1} diag(s)``, ``H_k = I - tau_k v_k v_k^T`` with
    ``v_k = (0, ..., 0, 1, a[k+1:, k])``. Use :meth:`apply` (Q C in place, one
    ``dormqr`` call) or :meth:`dense` (the explicit matrix).
    """

    __slots__ = ("a", "tau", "s")

    def __init__(self, a: np.ndarray, tau: np.ndarray, s: np.ndarray):
        self.a, self.tau, self.s = a, tau, s

    @property
    def n(self) -> int:
        return self.a.shape[0]

    def apply(self, c: np.ndarray, scale: float = 1.0) -> np.ndarray:
        """Return ``scale * Q @ c``, overwriting ``c`` (Fortran-ordered N x K, same dtype)."""
        if c.shape[0] != self.n:
            raise ValueError(f"c must have {self.n} rows, got shape {c.shape}")
        c *= (scale * self.s)[:, None].astype(c.dtype, copy=False)
        dt = c.dtype.name
        ormqr = lapack.dormqr if dt == "float64" else lapack.sormqr
        out, _, info = ormqr("L", "N", self.a, self.tau, c, _ormqr_lwork(self.n, c.shape[1], dt), overwrite_c=1)
        if info != 0:  # pragma: no cover
            raise RuntimeError(f"dormqr failed (info={info})")
        return out

    def dense(self) -> np.ndarray:
        """The explicit orthogonal matrix (O(N^3))."""
        return self.apply(np.asfortranarray(np.eye(self.n, dtype=self.a.dtype)))


def _householder_haar(n: int, rng: np.random.Generator, dtype="float64",
                      buffer: np.ndarray | None = None) -> _HaarOrthogonal:
    """Draw a Haar orthogonal matrix as N - 1 Householder reflectors in O(N^2).

    Column k of the (Fortran-ordered) Gaussian array supplies x = G[k:, k]; LAPACK's
    ``dlarfg`` convention gives beta = -sign(x_1) ||x||, tau = (beta - x_1) / beta,
    v = x[1:] / (x_1 - beta), and R_kk = beta, so the sign fix is s_k = sign(beta)
    (s_N = sign(G_NN)). ``buffer`` (N x N, C-ordered float64) is reused for the draw.
    """
    n = _positive_int(n, "n")
    dt = _dtype(dtype)
    if buffer is None or buffer.shape != (n, n) or buffer.dtype != np.float64 or not buffer.flags.c_contiguous:
        buffer = np.empty((n, n))
    rng.standard_normal(out=buffer)
    idx = np.arange(n)
    alpha = buffer[idx, idx].copy()  # x_1 of each column (row k of buffer is column k of G)
    upper = np.triu(buffer, 1)  # the parts x[1:] below the diagonal of G
    xnorm2 = np.einsum("ij,ij->i", upper, upper)
    del upper
    sign = np.where(alpha >= 0, 1.0, -1.0)
    beta = -sign * np.sqrt(alpha * alpha + xnorm2)
    ok = xnorm2 > 0
    tau = np.where(ok, (beta - alpha) / np.where(ok, beta, 1.0), 0.0)
    scale = np.where(ok, 1.0 / np.where(ok, alpha - beta, 1.0), 0.0)
    s = np.where(ok, np.sign(beta), sign)
    buffer *= scale[:, None]  # v_k = x[1:] / (alpha_k - beta_k); only the part below the diagonal is read
    a = buffer.T if dt == np.float64 else np.asfortranarray(buffer.T, dtype=dt)
    return _HaarOrthogonal(a, tau.astype(dt), s.astype(dt))


def haar_orthogonal(n: int, seed: int | np.random.Generator | None = None, *, dtype="float64") -> np.ndarray:
    """A Haar-distributed (uniform on O(N)) orthogonal N x N matrix.

    Q is the Q factor of the QR factorisation of an N x N standard Gaussian matrix with the
    sign fix Q <- Q diag(sign R_ii) (Mezzadri 2007); the Householder reflectors are drawn
    directly from fresh Gaussian vectors (Stewart 1980), O(N^2) random numbers and one
    O(N^3) product to form Q. With a Generator as ``seed`` its stream is consumed (N^2
    normal draws), so a sequence of calls with the same Generator gives independent matrices.

    Args:
        n: the size N >= 1.
        seed: an int, a ``numpy.random.Generator`` or None (fresh entropy).
        dtype: ``"float64"`` or ``"float32"``.

    Returns:
        Q, an N x N array with Q^T Q = I.

    Example:
        >>> q = haar_orthogonal(4, seed=0)
        >>> bool(np.allclose(q.T @ q, np.eye(4)))
        True
    """
    n = _positive_int(n, "n")
    check_fits(3 * 8.0 * n * n, f"haar_orthogonal(n={n})", "use a smaller n")
    return _householder_haar(n, _generator(seed), dtype).dense()


def gaussian_matrix(n: int, seed: int | np.random.Generator | None = None, *, sigma_w2: float = 1.0,
                    dtype="float64") -> np.ndarray:
    """W (N x N) with i.i.d. N(0, sigma_w2 / N) entries (``sigma_w2`` is a variance), so E[W^T W] = sigma_w2 I.

    Example:
        >>> gaussian_matrix(3, seed=0, sigma_w2=2.0).shape
        (3, 3)
    """
    n = _positive_int(n, "n")
    sigma_w2 = check_positive("sigma_w2", sigma_w2)
    check_fits(2 * 8.0 * n * n, f"gaussian_matrix(n={n})", "use a smaller n")
    rng = _generator(seed)
    return (rng.standard_normal((n, n)) * np.sqrt(sigma_w2 / n)).astype(_dtype(dtype), copy=False)
