"""Deep MLPs for the training experiments, initialised at criticality (chi = 1).

``input Linear(d, N) -> phi -> [Linear(N, N) -> phi] x L -> Linear(N, C)``: an input layer,
``depth`` = L hidden layers of width N (the paper's deep network, whose input-output Jacobian
``J = prod_l D^l W^l`` over those L layers is what dynamical isometry is about) and a readout.

Every layer is initialised by :func:`isometry.torch.critical_init_` at the critical point
``(sigma_w2, sigma_b2)`` with fixed point ``q*`` (eq. 3-5 of the paper). The input layer is then
rescaled so that the first pre-activations already have variance q* for standardised inputs
(``sigma0_2`` = mean squared input feature): the network starts on its fixed point instead of
relaxing to it over the first layers.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from isometry.torch import activation_module, critical_init_

#: Activations the training experiments accept (any registry activation with a torch module would do;
#: these are the ones the experiments and their tests exercise).
ACTIVATION_MODULES = ("tanh", "relu", "erf", "hard_tanh", "linear")


@dataclass(frozen=True)
class InitInfo:
    """The critical point used and the predicted Jacobian statistics at initialisation.

    ``predicted_sigma2``: variance of the spectrum of J J^T over the L hidden layers,
    ``L (mu2 / mu1^2 - 1 - s1)`` (paper eq. 16-17: s1 = 0 orthogonal, -1 Gaussian);
    ``predicted_s_max``: largest singular value of J predicted by free probability (None when
    the initialisation module does not provide it).
    """

    sigma_w2: float
    sigma_b2: float
    q_star: float
    predicted_sigma2: float
    predicted_s_max: float | None
    source: str

    def as_dict(self) -> dict:
        return dict(self.__dict__)


def predicted_sigma2(activation: str, q_star: float, depth: int, weights: str) -> float:
    """``L (mu2/mu1^2 - 1 - s1)``, the variance of the spectrum of J J^T at chi = 1 (eq. 16-17)."""
    from isometry.meanfield import critical_point
    from isometry.torch.init import predicted_variance

    return predicted_variance(critical_point(activation, q_star), depth, weights)


@functools.lru_cache(maxsize=64)
def predicted_s_max(activation: str, q_star: float, depth: int, weights: str) -> float | None:
    """Largest singular value of J over L critical layers, from the free-probability spectrum
    (:func:`isometry.jacobian_spectrum`); None where the theory cannot give it (ValueError)."""
    from isometry import jacobian_spectrum

    try:
        v = float(jacobian_spectrum(activation, depth, q_star=q_star, weights=weights).max_eigenvalue)
    except ValueError:
        return None
    return math.sqrt(v)


def build_mlp(input_dim: int, n_classes: int, *, depth: int, width: int, activation: str,
              weights: str, q_star: float, seed: int, sigma0_2: float = 1.0) -> tuple[nn.Sequential, InitInfo]:
    """The MLP, critically initialised from ``torch.Generator().manual_seed(seed)`` (float32, CPU).

    ``sigma0_2``: mean squared input feature (1 for standardised data); the input layer's weights
    are scaled so that its pre-activations have variance q*.
    """
    if int(depth) < 1:
        raise ValueError(f"depth must be an integer >= 1, got {depth!r}")
    if int(width) < 1:
        raise ValueError(f"width must be an integer >= 1, got {width!r}")
    if weights not in ("orthogonal", "gaussian"):
        raise ValueError(f"weights must be 'orthogonal' or 'gaussian', got {weights!r}")
    if not (q_star > 0 and math.isfinite(q_star)):
        raise ValueError(f"q_star must be a finite number > 0, got {q_star!r}")
    layers: list[nn.Module] = [nn.Linear(input_dim, width), activation_module(activation)]
    for _ in range(depth):
        layers += [nn.Linear(width, width), activation_module(activation)]
    layers.append(nn.Linear(width, n_classes))
    model = nn.Sequential(*layers)
    gen = torch.Generator().manual_seed(int(seed))
    rep = critical_init_(model, q_star=q_star, weights=weights, activation=activation, generator=gen)
    sw2, sb2 = float(rep.sigma_w2), float(rep.sigma_b2)
    source = "isometry.torch.critical_init_"
    s_max = predicted_s_max(activation, q_star, depth, weights)
    # input layer: pre-activation variance sw2_in * sigma0_2 + sb2 = q*  (when q* > sb2)
    first = model[0]
    target = max(q_star - sb2, 1e-12)
    now = sw2 * sigma0_2
    with torch.no_grad():
        first.weight.mul_(math.sqrt(target / now))
    info = InitInfo(sw2, sb2, float(q_star), predicted_sigma2(activation, q_star, depth, weights), s_max, source)
    return model, info


def hidden_stack(model: nn.Sequential, depth: int) -> nn.Sequential:
    """The L hidden layers ``x^0 -> x^L`` (after the input layer, before the readout)."""
    return model[2 : 2 + 2 * depth]


def measure_jacobian(model: nn.Sequential, depth: int, x: torch.Tensor) -> dict:
    """Empirical spectrum of J J^T, J = d x^L / d x^0 over the hidden layers, at the inputs ``x``.

    Returns the variance of the eigenvalues of J J^T (``measured_sigma2``, pooled over inputs),
    their mean, and the largest singular value of J (``measured_s_max``, mean over inputs).
    Computed in float64 on a copy of the model.
    """
    import copy

    model64 = copy.deepcopy(model).double().cpu()
    stack = hidden_stack(model64, depth)
    with torch.no_grad():
        h0 = model64[1](model64[0](x.double().cpu()))
    try:
        from isometry.torch import jacobian_spectrum
    except ImportError:  # pragma: no cover - before issue 4 landed
        jacobian_spectrum = None
    lams, smax = [], []
    for v in h0:
        if jacobian_spectrum is not None:
            lam_v = np.asarray(jacobian_spectrum(stack, v[None], dtype=torch.float64), dtype=np.float64)
        else:  # pragma: no cover
            s = torch.linalg.svdvals(torch.func.jacrev(stack)(v).detach())
            lam_v = (s**2).numpy()
        lams.append(lam_v)
        smax.append(float(np.sqrt(max(lam_v.max(), 0.0))))
    lam = np.concatenate(lams)
    return {
        "measured_sigma2": float(lam.var()),
        "measured_mean_eigenvalue": float(lam.mean()),
        "measured_s_max": float(np.mean(smax)),
        "jacobian_inputs": int(len(h0)),
    }
