"""Tensor-level critical initialisers, shaped like ``torch.nn.init``.

Each function fills ``tensor`` in place (under ``torch.no_grad()``) and returns it; random
numbers come from ``generator`` (a ``torch.Generator``, an int seed, or None for torch's global
generator). A weight tensor is ``(out, in)`` for a Linear layer and ``(out, in / groups, *kernel)``
for a convolution; meta tensors are returned untouched (there is nothing to fill).

* :func:`delta_orthogonal_`: the delta-orthogonal convolution kernel of Xiao et al. (2018).
* :func:`critical_gain`: sigma_w = sqrt(sigma_w2) at the critical point (chi = 1) with fixed
  point q*, the critical counterpart of ``torch.nn.init.calculate_gain``.
* :func:`critical_orthogonal_`: weights of a critical layer, sigma_w times a Haar-orthogonal
  matrix scaled so that every row has squared norm sigma_w2 (delta-orthogonal for kernels).
* :func:`critical_bias_`: biases ~ N(0, sigma_b2) of the same critical point.

:func:`isometry.torch.critical_init_` initialises whole models with these.

References:
    Pennington, Schoenholz & Ganguli, "Resurrecting the sigmoid in deep learning through
    dynamical isometry", NIPS 2017. Xiao et al., "Dynamical isometry and a mean field theory
    of CNNs", ICML 2018. Mezzadri, "How to generate random matrices from the classical
    compact groups", Notices AMS 2007.
"""

from __future__ import annotations

import math
import numbers

import numpy as np
import torch

from ..activations import Activation, get_activation
from ..meanfield import critical_point
from ._common import as_generator, check_int, check_positive

__all__ = ["delta_orthogonal_", "critical_gain", "critical_orthogonal_", "critical_bias_"]


# ------------------------------------------------------------------ the Haar sampler
def _haar(n_out: int, n_in: int, generator: torch.Generator | None, dtype: torch.dtype) -> torch.Tensor:
    """A Haar-distributed n_out x n_in matrix with orthonormal rows (n_out <= n_in) or columns.

    QR of a standard Gaussian matrix with the signs of diag(R) moved into Q (Mezzadri 2007),
    on the CPU in ``dtype`` (float64 for float64 parameters, float32 otherwise: half the cost).
    """
    big, small = max(n_out, n_in), min(n_out, n_in)
    a = torch.randn(big, small, generator=generator, dtype=dtype)
    q, r = torch.linalg.qr(a)
    d = torch.sign(torch.diagonal(r))
    q = q * torch.where(d == 0, torch.ones_like(d), d)
    return q if n_out >= n_in else q.T


def _work_dtype(t: torch.Tensor) -> torch.dtype:
    """float64 sampling for float64 parameters, float32 otherwise."""
    return torch.float64 if t.dtype == torch.float64 else torch.float32


def _sample_bytes(shape: tuple[int, ...], groups: int, dtype: torch.dtype) -> int:
    """Working memory of one orthogonal fill: the Gaussian matrix, Q and R of one group, in ``dtype``."""
    n_out, n_in = shape[0] // max(groups, 1), shape[1]
    big, small = max(n_out, n_in), min(n_out, n_in)
    itemsize = 8 if dtype == torch.float64 else 4
    return (3 * big * small + small * small) * itemsize


# ------------------------------------------------------------------ argument checks
def _check_tensor(tensor, min_dim: int, what: str) -> torch.Tensor:
    if not isinstance(tensor, torch.Tensor):
        raise TypeError(f"tensor must be a torch.Tensor, got {type(tensor).__name__}")
    if isinstance(tensor, torch.nn.parameter.UninitializedParameter):
        raise ValueError("tensor is an uninitialised (lazy) parameter; run one forward pass first")
    if not tensor.is_floating_point():
        raise TypeError(f"tensor must have a real floating dtype, got {tensor.dtype}")
    if tensor.dim() < min_dim:
        raise ValueError(f"tensor must have at least {min_dim} dimensions ({what}), got shape {tuple(tensor.shape)}")
    if tensor.numel() == 0:
        raise ValueError(f"tensor must not be empty, got shape {tuple(tensor.shape)}")
    return tensor


def _check_groups(groups, tensor: torch.Tensor) -> int:
    groups = check_int("groups", groups)
    if tensor.dim() == 2 and groups != 1:
        raise ValueError(f"groups must be 1 for a 2-d (Linear) weight, got {groups}")
    if tensor.shape[0] % groups:
        raise ValueError(f"groups={groups} does not divide the {tensor.shape[0]} output channels of tensor")
    return groups


def _check_gain(gain) -> float:
    if isinstance(gain, (bool, np.bool_)) or not isinstance(gain, (numbers.Real, np.floating, np.integer)):
        raise TypeError(f"gain must be a number, got {type(gain).__name__} {gain!r}")
    g = float(gain)
    if not math.isfinite(g):
        raise ValueError(f"gain must be finite, got {gain!r}")
    return g


def _critical(activation, q_star):
    act = activation if isinstance(activation, Activation) else get_activation(activation)
    return critical_point(act, check_positive("q_star", q_star))


# ------------------------------------------------------------------ fills (no argument checks)
def _orthogonal_gain(sigma_w2: float, n_out: int, n_in: int) -> float:
    """sigma_w sqrt(max(1, n_out / n_in)): every row of W then has squared norm sigma_w2 on average.

    Mean field needs E[h_i^2] = sigma_w2 |x|^2 / n_in + sigma_b2, i.e. rows of squared norm
    sigma_w2 (the Gaussian W_ij ~ N(0, sigma_w2 / n_in)). Orthonormal rows (n_out <= n_in) have
    norm 1; orthonormal columns (n_out > n_in) have rows of squared norm n_in / n_out on average,
    hence the factor, which makes W^T W = sigma_w2 (n_out / n_in) I.
    """
    return math.sqrt(sigma_w2 * max(1.0, n_out / n_in))


def _fill_delta(tensor: torch.Tensor, gain: float, groups: int, generator) -> None:
    c_out_g, c_in_g = tensor.shape[0] // groups, tensor.shape[1]
    centre = tuple(k // 2 for k in tensor.shape[2:])
    with torch.no_grad():
        tensor.zero_()
        for g in range(groups):
            h = gain * _haar(c_out_g, c_in_g, generator, _work_dtype(tensor))
            tensor[(slice(g * c_out_g, (g + 1) * c_out_g), slice(None), *centre)] = h.to(tensor.dtype)


def _fill_orthogonal(tensor: torch.Tensor, sigma_w2: float, groups: int, generator) -> float:
    """Critical orthogonal fill with variance sigma_w2; returns the gain used."""
    gain = _orthogonal_gain(sigma_w2, tensor.shape[0] // groups, tensor.shape[1])
    if tensor.is_meta:
        return gain
    if tensor.dim() == 2:
        with torch.no_grad():
            h = gain * _haar(tensor.shape[0], tensor.shape[1], generator, _work_dtype(tensor))
            tensor.copy_(h.to(tensor.dtype))
    else:
        _fill_delta(tensor, gain, groups, generator)
    return gain


def _fill_full_orthogonal(tensor: torch.Tensor, sigma_w2: float, groups: int, generator) -> float:
    """Critical orthogonal fill of a conv kernel over its whole fan-in (in / groups x kernel taps):
    per group, the kernel flattened to (out / groups) x fan_in is Haar with orthonormal rows or
    columns, rows of squared norm sigma_w2; returns the gain used."""
    c_out_g = tensor.shape[0] // groups
    fan_in = int(np.prod(tensor.shape[1:]))
    gain = _orthogonal_gain(sigma_w2, c_out_g, fan_in)
    if tensor.is_meta:
        return gain
    with torch.no_grad():
        for g in range(groups):
            h = gain * _haar(c_out_g, fan_in, generator, _work_dtype(tensor))
            tensor[g * c_out_g:(g + 1) * c_out_g] = h.reshape(c_out_g, *tensor.shape[1:]).to(tensor.dtype)
    return gain


def _fill_normal(tensor: torch.Tensor, sigma_w2: float, generator) -> float:
    """W_ij ~ N(0, sigma_w2 / fan_in), fan_in = prod(shape[1:]); returns sigma_w."""
    gain = math.sqrt(sigma_w2)
    if not tensor.is_meta:
        fan_in = int(np.prod(tensor.shape[1:]))
        with torch.no_grad():
            z = torch.randn(tuple(tensor.shape), generator=generator, dtype=_work_dtype(tensor))
            tensor.copy_((gain / math.sqrt(fan_in) * z).to(tensor.dtype))
    return gain


def _fill_bias(tensor: torch.Tensor, sigma_b2: float, generator) -> None:
    if tensor.is_meta:
        return
    with torch.no_grad():
        if sigma_b2 > 0:
            z = torch.randn(tuple(tensor.shape), generator=generator, dtype=_work_dtype(tensor))
            tensor.copy_((math.sqrt(sigma_b2) * z).to(tensor.dtype))
        else:
            tensor.zero_()


# ------------------------------------------------------------------ public initialisers
def delta_orthogonal_(
    tensor: torch.Tensor, gain: float = 1.0, *, groups: int = 1, generator: torch.Generator | int | None = None
) -> torch.Tensor:
    """Fill a convolution kernel with a delta-orthogonal kernel (Xiao et al. 2018, Algorithm 2).

    ``tensor`` has shape ``(out, in / groups, *kernel)``. Every tap is zero except the centre
    (index k // 2 in every spatial dimension), which is ``gain`` x H per group, H a Haar-random
    ``(out / groups) x (in / groups)`` matrix with orthonormal rows (out <= in) or columns. With
    stride 1 and shape-preserving padding the convolution is then ``gain`` x an isometry of the
    channels at every position: ||conv(x)|| = gain ||x|| when out >= in.

    Args:
        tensor: a conv weight (at least 3 dimensions, floating point).
        gain: the factor multiplying the orthonormal rows or columns.
        groups: the convolution's ``groups``; must divide ``out``.
        generator: a ``torch.Generator``, an int seed, or None (torch's global generator).

    Returns:
        ``tensor``, filled in place.

    >>> w = delta_orthogonal_(torch.empty(8, 8, 3, 3), gain=2.0, generator=0)
    >>> torch.allclose(w[:, :, 1, 1] @ w[:, :, 1, 1].T, 4 * torch.eye(8), atol=1e-5)
    True
    """
    _check_tensor(tensor, 3, "a conv kernel (out, in / groups, *kernel); use critical_orthogonal_ for matrices")
    g = _check_gain(gain)
    groups = _check_groups(groups, tensor)
    gen = as_generator(generator)
    if not tensor.is_meta:
        _fill_delta(tensor, g, groups, gen)
    return tensor


def critical_gain(activation: str | Activation, q_star: float) -> float:
    """sigma_w = sqrt(sigma_w2) of the critical point with fixed point q* (chi = 1).

    The order-to-chaos transition of Poole et al. (2016) / Pennington et al. (2017, eq. 5):
    chi = sigma_w2 E[phi'(h)^2] = 1 with h ~ N(0, q*), i.e. sigma_w2 = 1 / mu_1(q*)
    (:func:`isometry.critical_point`). The critical counterpart of
    ``torch.nn.init.calculate_gain``: a Gaussian weight N(0, critical_gain^2 / fan_in) or an
    orthogonal weight with rows of norm critical_gain is critical.

    Raises:
        ValueError: q* is not a finite number > 0, or no critical point has this q*
            (sigma_b2 would be negative).

    >>> round(critical_gain("relu", 1.0) ** 2, 12)
    2.0
    """
    return math.sqrt(_critical(activation, q_star).sigma_w2)


def critical_orthogonal_(
    tensor: torch.Tensor,
    activation: str | Activation,
    *,
    q_star: float,
    groups: int = 1,
    generator: torch.Generator | int | None = None,
) -> torch.Tensor:
    """Fill a weight with critical orthogonal weights for ``activation`` at the fixed point q*.

    A Linear weight ``(n_out, n_in)`` becomes critical_gain x sqrt(max(1, n_out / n_in)) x Q,
    Q Haar with orthonormal rows (n_out <= n_in) or columns, so every row has squared norm
    sigma_w2 (on average when n_out > n_in), as the mean-field recursion
    q^l = sigma_w2 E[phi(h)^2] + sigma_b2 requires. A conv kernel becomes delta-orthogonal
    (:func:`delta_orthogonal_`) with that gain per group.

    Args:
        tensor: a Linear weight (2-d) or conv kernel (>= 3-d), floating point.
        activation: a registry name or an :class:`isometry.Activation`.
        q_star: the fixed point q* > 0 of the critical point (chi = 1).
        groups: the convolution's ``groups`` (1 for Linear weights).
        generator: a ``torch.Generator``, an int seed, or None.

    Returns:
        ``tensor``, filled in place.

    >>> w = critical_orthogonal_(torch.empty(64, 64, dtype=torch.float64), "tanh", q_star=0.5, generator=0)
    >>> bool(torch.allclose(w @ w.T, critical_gain("tanh", 0.5) ** 2 * torch.eye(64, dtype=torch.float64)))
    True
    """
    _check_tensor(tensor, 2, "a Linear weight or conv kernel")
    groups = _check_groups(groups, tensor)
    cp = _critical(activation, q_star)
    _fill_orthogonal(tensor, cp.sigma_w2, groups, as_generator(generator))
    return tensor


def critical_bias_(
    tensor: torch.Tensor,
    activation: str | Activation,
    *,
    q_star: float,
    generator: torch.Generator | int | None = None,
) -> torch.Tensor:
    """Fill a bias with N(0, sigma_b2), sigma_b2 = q* - sigma_w2 E[phi(h)^2] of the critical point.

    sigma_b2 is the bias variance that makes q* a fixed point of the length map at chi = 1
    (:func:`isometry.critical_point`); it is 0 for ReLU and linear units (the bias is zeroed).

    Returns:
        ``tensor``, filled in place.

    >>> b = critical_bias_(torch.empty(100_000, dtype=torch.float64), "tanh", q_star=1.0, generator=0)
    >>> abs(b.var().item() / critical_point("tanh", 1.0).sigma_b2 - 1) < 0.02
    True
    """
    _check_tensor(tensor, 1, "a bias vector")
    cp = _critical(activation, q_star)
    _fill_bias(tensor, cp.sigma_b2, as_generator(generator))
    return tensor
