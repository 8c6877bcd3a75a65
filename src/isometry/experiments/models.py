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

ACTIVATION_MODULES = ("tanh", "relu", "erf", "hard_tanh", "linear")


class _Erf(nn.Module):
    """phi(h) = erf(sqrt(pi) h / 2) (slope 1 at 0), the paper's erf unit."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.erf(x * (math.sqrt(math.pi) / 2))


def activation_module(name: str) -> nn.Module:
    """The torch module of an activation named as in :data:`isometry.ACTIVATIONS`."""
    if name == "tanh":
        return nn.Tanh()
    if name == "relu":
        return nn.ReLU()
    if name == "hard_tanh":
        return nn.Hardtanh()
    if name == "linear":
        return nn.Identity()
    if name == "erf":
        try:
            from isometry.torch import Erf

            return Erf()
        except ImportError:
            return _Erf()
    raise ValueError(f"activation must be one of {', '.join(ACTIVATION_MODULES)}, got {name!r}")


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


def _orthogonal_(w: torch.Tensor, gain: float, generator: torch.Generator) -> None:
    fan_out, fan_in = w.shape
    a = torch.randn(max(fan_out, fan_in), min(fan_out, fan_in), generator=generator, dtype=torch.float64)
    q, r = torch.linalg.qr(a)
    q = q * torch.sign(torch.diagonal(r))  # Haar measure
    if fan_out < fan_in:
        q = q.T
    with torch.no_grad():
        w.copy_(gain * q.to(w.dtype))


def _private_critical_init_(model: nn.Module, *, q_star: float, weights: str, activation: str,
                            generator: torch.Generator) -> tuple[float, float]:
    """Minimal fallback initialiser: W ~ sigma_w2 / fan_in (Gaussian) or a scaled Haar
    orthogonal matrix (gain sqrt(sigma_w2 max(1, fan_out/fan_in))), b ~ N(0, sigma_b2)."""
    from isometry.meanfield import critical_point

    cp = critical_point(activation, q_star)
    for m in model.modules():
        if isinstance(m, nn.Linear):
            fan_out, fan_in = m.weight.shape
            if weights == "orthogonal":
                _orthogonal_(m.weight, math.sqrt(cp.sigma_w2 * max(1.0, fan_out / fan_in)), generator)
            else:
                with torch.no_grad():
                    m.weight.copy_(torch.randn(m.weight.shape, generator=generator, dtype=torch.float64)
                                   * math.sqrt(cp.sigma_w2 / fan_in))
            if m.bias is not None:
                with torch.no_grad():
                    m.bias.copy_(torch.randn(m.bias.shape, generator=generator, dtype=torch.float64)
                                 * math.sqrt(cp.sigma_b2))
    return cp.sigma_w2, cp.sigma_b2


def predicted_sigma2(activation: str, q_star: float, depth: int, weights: str) -> float:
    """``L (mu2/mu1^2 - 1 - s1)``, the variance of the spectrum of J J^T at chi = 1 (eq. 16-17)."""
    from isometry.meanfield import critical_point

    cp = critical_point(activation, q_star)
    s1 = 0.0 if weights == "orthogonal" else -1.0
    return float(depth * (cp.mu2 / cp.mu1**2 - 1.0 - s1))


@functools.lru_cache(maxsize=64)
def predicted_s_max(activation: str, q_star: float, depth: int, weights: str) -> float | None:
    """Largest singular value of J over L critical layers, from the free-probability spectrum
    (:func:`isometry.jacobian_spectrum`); None when that module is unavailable or fails."""
    try:
        from isometry import jacobian_spectrum
    except ImportError:
        return None
    import warnings

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            v = float(jacobian_spectrum(activation, depth, q_star=q_star, weights=weights).max_eigenvalue)
    except (ValueError, ArithmeticError, NotImplementedError, AttributeError):
        return None
    return math.sqrt(v) if math.isfinite(v) and v >= 0 else None


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
    try:
        from isometry.torch import critical_init_
    except ImportError:  # pragma: no cover - only before issue 5 landed
        critical_init_ = None
    if critical_init_ is not None:
        rep = critical_init_(model, q_star=q_star, weights=weights, activation=activation, generator=gen)
        sw2, sb2 = float(rep.sigma_w2), float(rep.sigma_b2)
        source = "isometry.torch.critical_init_"
    else:  # pragma: no cover
        source = "isometry.experiments.models._private_critical_init_"
        sw2, sb2 = _private_critical_init_(model, q_star=q_star, weights=weights, activation=activation,
                                           generator=gen)
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
