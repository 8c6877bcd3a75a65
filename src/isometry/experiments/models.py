"""Deep MLPs for the training experiments, initialised at criticality (chi = 1).

The model is a linear stem ``Linear(d, N)`` (no activation) from the d data features to the width
N, then ``depth`` = L critical layers ``[Linear(N, N) -> phi]`` and a readout ``Linear(N, C)``:
``isometry.torch.mlp(depth, width, activation, d_in=d, d_out=C)``, which has that stem whenever
d != N; when d = N the experiments put the same layer in front, so every experiment's network
has one. The input-output Jacobian of the critical stack, ``J = prod_l D^l W^l`` over the L
critical layers, is what the free-probability theory describes (its spectrum:
:func:`isometry.jacobian_spectrum`).

:func:`isometry.torch.critical_init_` initialises it at the critical point with fixed point q*
(eq. 3-5 of the paper; the stem and the readout as norm-preserving linear maps). The stem's
weights are then multiplied by ``input_scale = sqrt(input_q / input_mean_square)``, where
``input_q`` = (q* - sigma_b2)/sigma_w2 is the mean squared input coordinate that puts the first
critical layer at q^1 = q* (:class:`isometry.torch.InitReport`) and ``input_mean_square`` the
data's mean squared feature: the network starts on its fixed point instead of relaxing to it over
the first layers, and the data keep their standardised scale, so the data-facing layer learns at
the same pace whatever q* is.
"""

from __future__ import annotations

import copy
import functools
import math

import numpy as np
import torch
from torch import nn

from ..torch import critical_init_, jacobian_eigenvalues, mlp

__all__ = ["build_mlp", "critical_stack", "input_scale", "measure_jacobian", "predicted_variance",
           "predicted_max_singular_value"]


def build_mlp(d_in: int, n_classes: int, *, depth: int, width: int, activation: str, weights: str, q_star: float,
              input_mean_square: float = 1.0, generator: torch.Generator | int | None = None):
    """The critically initialised MLP (float32, CPU) and the :class:`isometry.torch.InitReport`.

    ``depth`` counts the critical layers (the report's ``depth`` is checked to agree);
    ``input_mean_square``: the data's mean squared feature (1 for standardised data), which sets
    the stem's scale (see the module docstring).

    >>> model, report = build_mlp(64, 10, depth=4, width=32, activation="tanh", weights="orthogonal",
    ...                           q_star=0.0259, generator=0)
    >>> report.depth, len(model)
    (4, 10)
    """
    model = mlp(depth, width, activation, d_in=d_in, d_out=n_classes)
    if len(model) == 2 * depth + 1:  # no stem from mlp (d_in == width): the same linear layer in front
        model = nn.Sequential(nn.Linear(d_in, width), *model)
    report = critical_init_(model, q_star=q_star, weights=weights, activation=activation, generator=generator)
    if report.depth != depth:  # the model and the theory must describe the same layers
        raise RuntimeError(f"critical_init_ counted {report.depth} critical layers in an MLP of depth {depth}")
    scale = input_scale(report.input_q, input_mean_square)
    with torch.no_grad():
        model[0].weight.mul_(scale)
    return model, report


def critical_stack(model: nn.Sequential, depth: int) -> tuple[nn.Module, nn.Sequential]:
    """``(stem, stack)``: the linear stem and the ``depth`` critical layers of a :func:`build_mlp` model."""
    if len(model) != 2 * depth + 2:
        raise ValueError(f"a model of {len(model)} modules is not a stem, {depth} critical layers and a readout")
    return model[0], model[1 : 1 + 2 * depth]


def input_scale(input_q: float, input_mean_square: float) -> float:
    """``sqrt(input_q / input_mean_square)``: the factor on the inputs that puts q^1 at q*."""
    if not (math.isfinite(input_mean_square) and input_mean_square > 0):
        raise ValueError(f"input_mean_square must be a finite number > 0, got {input_mean_square!r}")
    return math.sqrt(input_q / input_mean_square)


def predicted_variance(activation: str, depth: int, q_star: float, weights: str) -> float:
    """The variance of the eigenvalues of J J^T over the critical stack (:func:`isometry.jacobian_variance`)."""
    from .. import jacobian_variance

    return float(jacobian_variance(activation, depth, q_star=q_star, weights=weights))


@functools.lru_cache(maxsize=64)
def predicted_max_singular_value(activation: str, depth: int, q_star: float, weights: str) -> float | None:
    """sqrt of the right edge of the spectrum of J J^T (``jacobian_spectrum(...).max_eigenvalue``);
    None where the theory cannot give it."""
    from .. import jacobian_spectrum

    try:
        lam = float(jacobian_spectrum(activation, depth, q_star=q_star, weights=weights).max_eigenvalue)
    except ValueError:
        return None
    return math.sqrt(lam) if math.isfinite(lam) else None


def measure_jacobian(model: nn.Sequential, depth: int, x: torch.Tensor) -> dict:
    """The spectrum of J J^T, J = d x^L / d x^0 over the critical stack, at the data points ``x``
    (x^0 = stem(x)).

    Returns ``measured_variance`` (variance of the eigenvalues of J J^T, pooled over the inputs),
    ``measured_mean_eigenvalue``, ``measured_max_singular_value`` (largest singular value of J,
    mean over the inputs) and ``jacobian_inputs``. Computed in float64 on a copy of the model.
    """
    model64 = copy.deepcopy(model).double().cpu()
    stem, stack = critical_stack(model64, depth)
    with torch.no_grad():
        h0 = stem(x.double().cpu())
    lams, smax = [], []
    for v in h0:
        lam_v = np.asarray(jacobian_eigenvalues(stack, v[None], dtype=torch.float64), dtype=np.float64).ravel()
        lams.append(lam_v)
        smax.append(float(np.sqrt(max(lam_v.max(), 0.0))))
    lam = np.concatenate(lams)
    return {
        "measured_variance": float(lam.var()),
        "measured_mean_eigenvalue": float(lam.mean()),
        "measured_max_singular_value": float(np.mean(smax)),
        "jacobian_inputs": int(len(h0)),
    }
