"""Exactly orthogonal convolution kernels for circular padding (Xiao et al. 2018, Algorithm 1).

A convolution with circular padding is diagonalised by the discrete Fourier transform: at
every spatial frequency theta it acts on the channels as the matrix
K(theta) = sum_taps K_tap e^{-i theta . tap} (c_out x c_in). The layer is an isometry
(every singular value equal to 1) exactly when K(theta) has orthonormal columns at every
theta. Algorithm 1 of Xiao et al. builds such kernels from products of 2-tap "paraunitary"
factors: for an orthogonal projection P (P = P^T = P^2),

    P + (I - P) e^{-i theta}

is unitary for every theta (eigenvalues 1 on range P and e^{-i theta} on its complement),
its kernel has the two taps (P, I - P), and the convolution of such kernels multiplies
their transfer matrices, so stays unitary. In d dimensions each factor pairs one projection
per dimension (the 2 x 2 kernel [[P1 P2, P1 (I - P2)], [(I - P1) P2, (I - P1)(I - P2)]] in
2-D), k - 1 factors give a kernel of size k, and a Haar matrix with c_in orthonormal columns
(c_out >= c_in) maps the c_out-dimensional product onto the input channels. Each projection
is Q diag(m) Q^T with Q Haar and m a random 0/1 mask (each column kept with probability
1/2), as in TensorFlow's ``ConvolutionOrthogonal2D`` initializer (its v1 compatibility layer),
whose construction this follows; PyTorch has none.

References:
    L. Xiao, Y. Bahri, J. Sohl-Dickstein, S. S. Schoenholz, J. Pennington, "Dynamical
    isometry and a mean field theory of CNNs: how to train 10,000-layer vanilla
    convolutional neural networks", ICML 2018, Algorithm 1.
"""

from __future__ import annotations

import itertools

import torch

from .initializers import _check_gain, _check_tensor, _haar, _work_dtype
from ._common import as_generator

__all__ = ["conv_orthogonal_"]


def _projection(n: int, generator, dtype) -> torch.Tensor:
    """A random symmetric projection Q diag(m) Q^T: Q Haar, m_j ~ Bernoulli(1/2)."""
    q = _haar(n, n, generator, dtype)
    mask = (torch.randn(n, generator=generator, dtype=dtype) > 0).to(dtype)
    c = q * mask
    return c @ c.T


def _factor(n: int, d: int, generator, dtype) -> torch.Tensor:
    """One paraunitary factor: the 2 x ... x 2 (d times) kernel of n x n taps
    prod_j (P_j if b_j = 0 else I - P_j) at tap (b_1, ..., b_d)."""
    eye = torch.eye(n, dtype=dtype)
    ps = [_projection(n, generator, dtype) for _ in range(d)]
    out = torch.empty((2,) * d + (n, n), dtype=dtype)
    for bits in itertools.product((0, 1), repeat=d):
        m = eye
        for j, b in enumerate(bits):
            m = m @ (ps[j] if b == 0 else eye - ps[j])
        out[bits] = m
    return out


def _matrix_conv(a: torch.Tensor, b: torch.Tensor, d: int) -> torch.Tensor:
    """Full convolution of two kernels of n x n matrices: out[i] = sum_{i1 + i2 = i} a[i1] @ b[i2]."""
    sa, sb = a.shape[:d], b.shape[:d]
    n = a.shape[-1]
    out = torch.zeros(tuple(x + y - 1 for x, y in zip(sa, sb)) + (n, n), dtype=a.dtype)
    for i1 in itertools.product(*(range(s) for s in sa)):
        for i2 in itertools.product(*(range(s) for s in sb)):
            idx = tuple(x + y for x, y in zip(i1, i2))
            out[idx] += a[i1] @ b[i2]
    return out


def conv_orthogonal_(weight: torch.Tensor, gain: float = 1.0,
                     generator: torch.Generator | int | None = None) -> torch.Tensor:
    """Fill a convolution kernel so that the layer (circular padding, stride 1) is ``gain`` x an isometry.

    Xiao et al. (2018), Algorithm 1 (module docstring): ``weight`` of shape
    ``(c_out, c_in, k, ..., k)`` (1-D, 2-D or 3-D, every kernel size k equal) is the product
    of k - 1 random paraunitary 2-tap factors in every dimension, composed with a Haar
    matrix of c_in orthonormal columns. For every input of spatial size >= k with circular
    padding and stride 1, every singular value of the layer's linear operator equals
    ``gain`` when c_out >= c_in; when c_out < c_in the kernel is the channel transpose of
    the c_in x c_out construction, so the layer is ``gain`` x a co-isometry (its
    c_out x size nonzero singular values equal ``gain``, the others 0), as
    ``torch.nn.init.orthogonal_`` does for wide matrices. Zero padding breaks the exactness
    at the borders (the paper's "finite-width effects").

    Args:
        weight: a conv weight, ``(c_out, c_in, *kernel)`` with 1 to 3 equal kernel sizes,
            floating point; groups are not supported (use one group).
        gain: the factor multiplying the isometry (a standard deviation, as in torch.nn.init).
        generator: a ``torch.Generator``, an int seed, or None (torch's global generator).

    Returns:
        ``weight``, filled in place (under ``torch.no_grad()``).

    Example:
        >>> w = conv_orthogonal_(torch.empty(8, 4, 3, 3), generator=0)
        >>> x = torch.randn(1, 4, 6, 6, dtype=w.dtype)
        >>> y = torch.nn.functional.conv2d(torch.nn.functional.pad(x, (1, 1, 1, 1), mode="circular"), w)
        >>> bool(torch.isclose(y.norm(), x.norm(), rtol=1e-5))
        True
    """
    w = _check_tensor(weight, 3, "(c_out, c_in, *kernel)")
    g = _check_gain(gain)
    d = w.dim() - 2
    if d > 3:
        raise ValueError(f"weight must be a 1-D, 2-D or 3-D convolution kernel, got shape {tuple(w.shape)}")
    ks = tuple(w.shape[2:])
    if len(set(ks)) != 1:
        raise ValueError(f"conv_orthogonal_ needs equal kernel sizes in every dimension, got {ks}")
    k = ks[0]
    gen = as_generator(generator)
    if w.is_meta:
        return w
    c_out, c_in = w.shape[0], w.shape[1]
    n, m = max(c_out, c_in), min(c_out, c_in)
    dtype = _work_dtype(w)
    # the taps p of a unitary transfer matrix on n channels (TF's order: one factor after another)
    p = torch.eye(n, dtype=dtype).reshape((1,) * d + (n, n))
    for _ in range(k - 1):
        p = _matrix_conv(p, _factor(n, d, gen, dtype), d)
    orth = _haar(m, n, gen, dtype)  # m x n, orthonormal rows
    taps = orth @ p  # (k,)*d + (m, n): transfer matrix orth U(theta), orthonormal rows
    # torch's weight[o, i, tap]: c_out >= c_in -> (orth p_tap)^T (n x m, orthonormal columns);
    # c_out < c_in -> orth p_tap itself (m x n, orthonormal rows: a co-isometry)
    perm = (d + 1, d) + tuple(range(d)) if c_out >= c_in else (d, d + 1) + tuple(range(d))
    kernel = g * taps.permute(*perm)
    with torch.no_grad():
        w.copy_(kernel.to(w.dtype))
    return w

