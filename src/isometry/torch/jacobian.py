"""Input-output Jacobians of any PyTorch model at one input, and the eigenvalues of J J^T.

For a model f and one input x (any shape; flattened to n numbers, the output to
m numbers) J = df/dx is m x n and its eigenvalues are those of J J^T (m of them,
m - n exactly 0 when m > n), as in the NumPy core
(:func:`isometry.empirical_eigenvalues`).

* :func:`jacobian_eigenvalues` forms J exactly with ``torch.func``: m VJPs (reverse
  mode, ``jacrev``-style) when m <= n, else n JVPs (forward mode, ``jacfwd``-style),
  vmapped over chunks of ``chunk_size`` basis vectors so the extra memory is
  ``chunk_size`` copies of the activations; the eigenvalues come from a float64
  SVD of J (float64 ``gesdd`` in NumPy is faster than float32 here, and torch's
  float64 ``svdvals`` is much slower than NumPy's). Pass ``dtype=torch.float64``
  to evaluate the model in float64: a float32 J only resolves eigenvalues above
  ~1e-14 lambda_max.
* :func:`top_singular_values` never forms J: ARPACK (``scipy.sparse.linalg.svds``,
  implicitly restarted Lanczos) on a ``LinearOperator`` whose products are
  ``torch.func.jvp`` (J v) and ``torch.func.vjp`` (J^T u) calls.

The model is evaluated with :func:`torch.func.functional_call` on its own
parameters and buffers, in whatever mode (train/eval) it is in; a model whose
forward mixes examples (BatchNorm in train mode) has no per-input Jacobian.
"""

from __future__ import annotations

import contextlib
import warnings

import numpy as np
import torch
from torch.func import functional_call, jvp, vjp, vmap

from .._checks import check_nonnegative
from ._common import as_generator, check_fits, check_int

__all__ = ["jacobian", "jacobian_eigenvalues", "top_singular_values"]


@contextlib.contextmanager
def _quiet_forward_ad():
    """torch's forward-mode AD loads jit-scripted decompositions on first use, which warns
    that ``torch.jit.script`` is deprecated, and ``vmap`` warns when an op (attention's backward)
    has no batching rule and runs probe by probe: neither is the caller's concern."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*torch\.jit\.script.*deprecated", category=DeprecationWarning)
        warnings.filterwarnings("ignore", message=r".*performance drop because we have not yet implemented the "
                                r"batching rule", category=UserWarning)
        yield


def _flat_fn(model: torch.nn.Module, x: torch.Tensor, dtype: torch.dtype | None):
    if not isinstance(model, torch.nn.Module) and not callable(model):
        raise TypeError(f"model must be a torch.nn.Module or a callable, got {type(model).__name__}")
    if isinstance(x, (bool, np.bool_)) or (isinstance(x, torch.Tensor) and x.dtype == torch.bool):
        raise TypeError(f"x must be a tensor or an array of numbers, got a boolean {x!r}"[:200])
    if not isinstance(x, torch.Tensor):
        try:
            x = torch.as_tensor(np.asarray(x))
        except (TypeError, ValueError, RuntimeError):
            raise TypeError(f"x must be a tensor or an array of numbers, got {type(x).__name__}") from None
    if x.numel() == 0:
        raise ValueError(f"x must be a non-empty tensor, got shape {tuple(x.shape)}")
    if x.is_complex():
        raise TypeError(f"x must be a real tensor or array, got dtype {x.dtype}")
    if not torch.is_floating_point(x):
        x = x.to(torch.get_default_dtype())
    if dtype is not None:
        if not any(dtype is d for d in (torch.float32, torch.float64)):
            raise TypeError(f"dtype must be torch.float32, torch.float64 or None, got {dtype!r}")
        x = x.to(dtype)
    shape = x.shape
    if isinstance(model, torch.nn.Module):
        state = {**dict(model.named_parameters()), **dict(model.named_buffers())}
        state = {k: (v.detach().to(dtype) if dtype is not None and torch.is_floating_point(v) else v.detach())
                 for k, v in state.items()}

        def call(z):
            return functional_call(model, state, (z,))
    else:
        call = model

    def f(v: torch.Tensor) -> torch.Tensor:
        return call(v.reshape(shape)).reshape(-1)

    return f, x.detach().reshape(-1)


def _first_call(f, x0: torch.Tensor, shape) -> torch.Tensor:
    """f(x0), with a failure of the model on this input reported as a ValueError naming x."""
    try:
        with torch.no_grad():
            y0 = f(x0)
    except (RuntimeError, TypeError, ValueError, IndexError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ValueError(f"model(x) failed for x of shape {tuple(shape)} and dtype {x0.dtype}: {first}") from None
    if not isinstance(y0, torch.Tensor) or not y0.is_floating_point():
        raise ValueError(f"model(x) must return a floating-point tensor for x of shape {tuple(shape)}")
    return y0


def _check_jacobian_fits(m: int, n: int, itemsize: int, chunk_size: int, extra: int, what: str) -> None:
    """J (m x n), the chunk of basis vectors and ``extra`` bytes per entry of J must fit in memory."""
    need = m * n * (itemsize + extra) + chunk_size * max(m, n) * itemsize * 2
    check_fits(need, f"{what} of a model with {n} inputs (x) and {m} outputs",
               "use top_singular_values for a few singular values, or a smaller x / model")


def jacobian(model, x: torch.Tensor, *, chunk_size: int = 64, dtype: torch.dtype | None = None) -> torch.Tensor:
    """The exact m x n Jacobian of the flattened output with respect to the flattened input.

    Reverse mode (rows by VJPs) when m <= n, forward mode (columns by JVPs) otherwise,
    ``chunk_size`` basis vectors at a time under ``vmap``. The memory J needs is checked
    before it is formed (``ValueError`` saying how much, when it cannot fit).

    >>> net = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.Tanh())
    >>> jacobian(net, torch.zeros(3)).shape
    torch.Size([2, 3])
    """
    return _jacobian(model, x, chunk_size=chunk_size, dtype=dtype, extra=0, what="the Jacobian")


def _jacobian(model, x, *, chunk_size, dtype, extra: int, what: str) -> torch.Tensor:
    chunk_size = check_int("chunk_size", chunk_size)
    f, x0 = _flat_fn(model, x, dtype)
    y0 = _first_call(f, x0, getattr(x, "shape", x0.shape))
    m, n = y0.numel(), x0.numel()
    _check_jacobian_fits(m, n, y0.element_size(), chunk_size, extra, what)
    out = torch.empty(m, n, dtype=y0.dtype)
    if m <= n:
        _, pullback = vjp(f, x0)
        rows = vmap(lambda u: pullback(u)[0])
        for s in range(0, m, chunk_size):
            e = torch.zeros(min(chunk_size, m - s), m, dtype=y0.dtype, device=y0.device)
            e[torch.arange(e.shape[0]), torch.arange(s, s + e.shape[0])] = 1
            with _quiet_forward_ad():
                out[s:s + e.shape[0]] = rows(e).detach()
    else:
        cols = vmap(lambda v: jvp(f, (x0,), (v,))[1])
        for s in range(0, n, chunk_size):
            e = torch.zeros(min(chunk_size, n - s), n, dtype=x0.dtype, device=x0.device)
            e[torch.arange(e.shape[0]), torch.arange(s, s + e.shape[0])] = 1
            with _quiet_forward_ad():
                out[:, s:s + e.shape[0]] = cols(e).detach().T
    return out


def jacobian_eigenvalues(model, x: torch.Tensor, *, chunk_size: int = 64,
                         dtype: torch.dtype | None = None) -> np.ndarray:
    """Eigenvalues of J J^T (ascending, float64 NumPy array of length m) at the single input ``x``.

    J = d model(x) / dx is formed exactly (:func:`jacobian`); its singular values s come from a
    float64 SVD and the eigenvalues are s^2, padded with m - n zeros when m > n. Compare them
    with the theory law :func:`isometry.jacobian_spectrum` (e.g. by :func:`isometry.compare`).

    Args:
        model: a ``torch.nn.Module`` or a callable on tensors.
        x: one input (any shape; a batch of one is fine).
        chunk_size: basis vectors per vectorised VJP/JVP call (memory: that many activations).
        dtype: ``torch.float64`` evaluates the model in float64 (a float32 J resolves eigenvalues
            only down to ~1e-14 lambda_max); None keeps the model's dtype.

    Returns:
        The m eigenvalues of J J^T, ascending.

    >>> net = torch.nn.Sequential(torch.nn.Linear(100, 100), torch.nn.Tanh())
    >>> jacobian_eigenvalues(net, torch.randn(1, 100), dtype=torch.float64).shape
    (100,)
    """
    j = _jacobian(model, x, chunk_size=chunk_size, dtype=dtype, extra=8 * 2, what="jacobian_eigenvalues")
    m, n = j.shape
    s = np.linalg.svd(j.cpu().numpy().astype(np.float64), compute_uv=False)
    lam = np.zeros(m)
    lam[: s.size] = s * s
    return np.sort(lam)


EXACT_SMALLEST_DIM = 4096
"""Up to this min(m, n), ``top_singular_values(which="smallest")`` forms J and is exact."""


def top_singular_values(model, x: torch.Tensor, k: int = 6, *, which: str = "largest", dtype: torch.dtype | None = None,
                        tol: float = 0.0, maxiter: int | None = None,
                        generator: torch.Generator | int | None = None) -> np.ndarray:
    """The k largest (``which="largest"``, descending) or smallest (``"smallest"``, ascending)
    singular values of J.

    The largest: ARPACK's implicitly restarted Lanczos (``scipy.sparse.linalg.svds``) on
    J v = ``torch.func.jvp`` and J^T u = ``torch.func.vjp``, J never formed. The smallest: when
    min(m, n) <= ``EXACT_SMALLEST_DIM`` (4096) J is formed (min(m, n) products) and its float64 SVD
    gives them exactly, however ill-conditioned J is; above that, shift-invert Lanczos at 0
    (``eigsh(sigma=0)``) on the smaller Gram operator, each inverse applied by conjugate gradients,
    whose cost grows with sqrt(cond): a J too ill-conditioned for that route raises ``ValueError``
    instead of returning an unconverged value.

    Needs k < min(m, n). ``tol`` is ARPACK's relative accuracy, in [0, 1) (0: machine
    precision). ARPACK's start vector is drawn from ``generator`` (a ``torch.Generator``, an int
    seed, or None for torch's global generator).

    >>> net = torch.nn.Sequential(torch.nn.Linear(20, 20), torch.nn.Tanh())
    >>> top_singular_values(net, torch.randn(20), 2, generator=0).shape
    (2,)
    """
    from scipy.sparse.linalg import LinearOperator, svds

    if which not in ("largest", "smallest"):
        raise ValueError(f"which must be 'largest' or 'smallest', got {which!r}")
    k = check_int("k", k)
    if maxiter is not None:
        maxiter = check_int("maxiter", maxiter)
    tol = check_nonnegative("tol", tol)
    if tol >= 1:
        raise ValueError(f"tol must be in [0, 1) (ARPACK's relative accuracy; 0: machine precision), got {tol!r}")
    gen = as_generator(generator)
    f, x0 = _flat_fn(model, x, dtype)
    y0 = _first_call(f, x0, getattr(x, "shape", x0.shape))
    m, n = y0.numel(), x0.numel()
    if not k < min(m, n):
        raise ValueError(f"k must be an integer in [1, {min(m, n) - 1}] (min(m, n) - 1 for this model), got {k!r}; "
                         "use jacobian_eigenvalues for all singular values")
    if which == "smallest" and min(m, n) <= EXACT_SMALLEST_DIM:
        j = _jacobian(model, x, chunk_size=64, dtype=dtype, extra=8 * 2, what="top_singular_values")
        sv = np.linalg.svd(j.cpu().numpy().astype(np.float64), compute_uv=False)
        return np.sort(sv)[:k].copy()
    tdt = y0.dtype
    _, pullback = vjp(f, x0)

    def matvec(v):
        v = torch.as_tensor(np.asarray(v, dtype=np.float64).reshape(-1), dtype=tdt, device=x0.device)
        with _quiet_forward_ad():
            return jvp(f, (x0,), (v,))[1].detach().cpu().numpy().astype(np.float64)

    def rmatvec(u):
        u = torch.as_tensor(np.asarray(u, dtype=np.float64).reshape(-1), dtype=tdt, device=x0.device)
        return pullback(u)[0].detach().cpu().numpy().astype(np.float64)

    op = LinearOperator((m, n), matvec=matvec, rmatvec=rmatvec, dtype=np.float64)
    v0 = torch.randn(max(m, n), generator=gen, dtype=torch.float64).numpy()
    if which == "largest":
        s = svds(op, k=k, which="LM", tol=tol, maxiter=maxiter, v0=v0[:min(m, n)], return_singular_vectors=False,
                 solver="arpack")
    else:
        # ARPACK's "SM" mode and plain Lanczos at the bottom end stall (their residual test is
        # relative to the tiny eigenvalue); shift-invert at 0 on the smaller Gram matrix
        # G = J J^T (m <= n) or J^T J converges in a few outer steps, each solve G y = b by CG.
        from scipy.sparse.linalg import cg, eigsh

        if m <= n:
            dim, gmv = m, (lambda u: matvec(rmatvec(u)))
        else:
            dim, gmv = n, (lambda v: rmatvec(matvec(v)))
        gram = LinearOperator((dim, dim), matvec=gmv, dtype=np.float64)

        def solve(b):
            y, info = cg(gram, np.asarray(b, dtype=np.float64).reshape(-1), rtol=1e-10, atol=0.0, maxiter=cg_maxiter)
            if info != 0 or not np.all(np.isfinite(y)):
                raise ValueError(
                    f"which='smallest': conjugate gradients on the {dim} x {dim} Gram operator did not converge in "
                    f"{cg_maxiter} steps, so J is too ill-conditioned (or rank deficient) for the iterative route; "
                    "use jacobian_eigenvalues (exact) on a smaller input, or which='largest'")
            return y

        cg_maxiter = 20 * dim
        inv = LinearOperator((dim, dim), matvec=solve, dtype=np.float64)
        ev = eigsh(gram, k=k, sigma=0.0, which="LM", OPinv=inv, tol=tol, maxiter=maxiter, v0=v0[:dim],
                   return_eigenvectors=False)
        s = np.sqrt(np.clip(ev, 0.0, None))
    s = np.sort(np.asarray(s, dtype=np.float64))
    return s[::-1].copy() if which == "largest" else s
