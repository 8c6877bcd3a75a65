"""Activation modules and MLP builders for every activation in :data:`isometry.ACTIVATIONS`.

PyTorch already has modules for most registry activations; this module adds the two it
lacks, :class:`Erf` (the paper's phi(h) = erf(sqrt(pi) h / 2), so phi'(0) = 1) and
:class:`ShiftedReLU` (phi(h) = max(h + 1/2, 0) - 1/2), and maps registry names to modules
(:func:`activation_module`) and modules back to :class:`isometry.Activation` objects
(:func:`detect_activation`), which is how :func:`isometry.torch.critical_init_` recognises
the nonlinearity of a model.

A user module is recognised too if it carries an ``isometry_activation`` attribute: a
registry name (``"tanh"``) or an :class:`isometry.Activation`.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from ..activations import ACTIVATIONS, Activation, get_activation

__all__ = ["Erf", "ShiftedReLU", "LinearActivation", "activation_module", "detect_activation", "mlp"]

_ERF_SCALE = math.sqrt(math.pi) / 2.0


class Erf(nn.Module):
    """phi(h) = erf(sqrt(pi) h / 2): a sigmoid with phi'(0) = 1 (the paper's erf unit).

    Its Gaussian moments are exact: E[phi'(h)^(2k)] = (1 + k pi q)^(-1/2) for h ~ N(0, q).

    >>> Erf()(torch.zeros(2))
    tensor([0., 0.])
    """

    isometry_activation = "erf"

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return torch.erf(_ERF_SCALE * h)


class ShiftedReLU(nn.Module):
    """phi(h) = max(h + 1/2, 0) - 1/2: a ReLU shifted so that phi(0) = 0 and phi'(0) = 1.

    Unlike ReLU its per-layer spread mu2/mu1^2 - 1 = 1/P(h > -1/2) - 1 vanishes as q* -> 0,
    so deep shifted-ReLU networks can be made nearly isometric.
    """

    isometry_activation = "shifted_relu"
    shift = 0.5

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return torch.clamp(h + self.shift, min=0.0) - self.shift


class LinearActivation(nn.Identity):
    """phi(h) = h, marked as an activation (a plain ``nn.Identity`` is treated as a placeholder).

    Deep linear networks are critical at sigma_w2 = 1, sigma_b2 = 0 for every q*, and exactly
    isometric with orthogonal weights.
    """

    isometry_activation = "linear"


def activation_module(activation: str | Activation, **params: Any) -> nn.Module:
    """A ``torch.nn`` module computing the registry activation ``activation``.

    ``params`` are the registry parameters (``alpha`` of ``leaky_relu`` and ``elu``).
    ``linear`` gives :class:`LinearActivation` (an ``nn.Identity`` marked as the activation).

    >>> activation_module("leaky_relu", alpha=0.2)
    LeakyReLU(negative_slope=0.2)
    """
    act = get_activation(activation, **params)
    name, p = act.name, dict(act.params)
    if name == "linear":
        return LinearActivation()
    if name == "relu":
        return nn.ReLU()
    if name == "leaky_relu":
        return nn.LeakyReLU(negative_slope=float(p.get("alpha", 0.01)))
    if name == "hard_tanh":
        return nn.Hardtanh(-1.0, 1.0)
    if name == "tanh":
        return nn.Tanh()
    if name == "erf":
        return Erf()
    if name == "shifted_relu":
        return ShiftedReLU()
    if name == "silu":
        return nn.SiLU()
    if name == "gelu":
        return nn.GELU(approximate="none")
    if name == "elu":
        return nn.ELU(alpha=float(p.get("alpha", 1.0)))
    if name == "selu":
        return nn.SELU()
    if name == "softplus":
        return nn.Softplus(beta=1.0, threshold=20.0)
    if name == "sigmoid":
        return nn.Sigmoid()
    raise ValueError(
        f"activation {name!r} has no torch module; valid names: {', '.join(ACTIVATIONS)} "
        "(or give a module with an isometry_activation attribute)"
    )


def detect_activation(module: nn.Module) -> tuple[Activation, str] | None:
    """The :class:`isometry.Activation` computed by ``module``, with a note, or None if unknown.

    Recognised: ReLU, LeakyReLU, Hardtanh(-1, 1), Tanh, SiLU, GELU, ELU,
    SELU, Softplus(beta=1), Sigmoid, :class:`Erf`, :class:`ShiftedReLU`, :class:`LinearActivation`
    and any module with an ``isometry_activation`` attribute (a plain ``nn.Identity`` is not an
    activation: models use it as a placeholder). The note is empty unless something was approximated
    (GELU's tanh approximation is treated as the exact GELU; Softplus's linear threshold is
    ignored). Modules that look like activations but with other parameters (Hardtanh(-2, 2),
    Softplus(beta=2)) return None.
    """
    tag = getattr(module, "isometry_activation", None)
    if isinstance(tag, Activation):
        return tag, ""
    if isinstance(tag, str):
        return get_activation(tag), ""
    if isinstance(module, nn.ReLU):
        return get_activation("relu"), ""
    if isinstance(module, nn.LeakyReLU):
        slope = float(module.negative_slope)
        if not 0.0 <= slope < 1.0:
            return None
        return get_activation("leaky_relu", alpha=slope), ""
    if isinstance(module, nn.Hardtanh):
        if float(module.min_val) == -1.0 and float(module.max_val) == 1.0:
            return get_activation("hard_tanh"), ""
        return None
    if isinstance(module, nn.Tanh):
        return get_activation("tanh"), ""
    if isinstance(module, nn.SiLU):
        return get_activation("silu"), ""
    if isinstance(module, nn.GELU):
        note = "" if module.approximate == "none" else "GELU(approximate='tanh') treated as the exact GELU"
        return get_activation("gelu"), note
    if isinstance(module, nn.SELU):
        return get_activation("selu"), ""
    if isinstance(module, nn.ELU):
        return get_activation("elu", alpha=float(module.alpha)), ""
    if isinstance(module, nn.Softplus):
        if float(module.beta) != 1.0:
            return None
        return get_activation("softplus"), ""
    if isinstance(module, nn.Sigmoid):
        return get_activation("sigmoid"), ""
    return None


def mlp(
    depth: int,
    width: int,
    activation: str | Activation | nn.Module = "tanh",
    d_in: int | None = None,
    d_out: int | None = None,
    *,
    bias: bool = True,
    dtype: torch.dtype | None = None,
    device: torch.device | str | None = None,
    **params: Any,
) -> nn.Sequential:
    """A deep fully connected network: ``depth`` (Linear, activation) pairs and an optional readout.

    Layout: ``Linear(d_in, width), act, [Linear(width, width), act] * (depth - 1)`` and, if
    ``d_out`` is given, a readout ``Linear(width, d_out)`` with no activation. ``d_in`` defaults
    to ``width`` (all critical layers square: the setting of the paper's Jacobian theory).
    ``activation`` is a registry name (with ``params``, e.g. ``alpha=0.2``), an
    :class:`isometry.Activation` with a torch module, or a module instance (deep-copied per
    layer). Weights keep PyTorch's default initialisation; call
    :func:`isometry.torch.critical_init_` on the result.

    >>> net = mlp(3, 16, "erf", d_in=8, d_out=2)
    >>> [type(m).__name__ for m in net]
    ['Linear', 'Erf', 'Linear', 'Erf', 'Linear', 'Erf', 'Linear']
    """
    import copy

    for pname, v, lo in (("depth", depth, 1), ("width", width, 1)):
        if not isinstance(v, int) or isinstance(v, bool) or v < lo:
            raise ValueError(f"{pname} must be an integer >= {lo}, got {v!r}")
    for pname, v in (("d_in", d_in), ("d_out", d_out)):
        if v is not None and (not isinstance(v, int) or isinstance(v, bool) or v < 1):
            raise ValueError(f"{pname} must be an integer >= 1 or None, got {v!r}")
    if isinstance(activation, nn.Module):
        if params:
            raise ValueError(f"parameters {sorted(params)} cannot be given with an activation module")

        def make() -> nn.Module:
            return copy.deepcopy(activation)
    else:
        act = get_activation(activation, **params)

        def make() -> nn.Module:
            return activation_module(act)

    kw = {"bias": bias, "dtype": dtype, "device": device}
    layers: list[nn.Module] = [nn.Linear(width if d_in is None else d_in, width, **kw), make()]
    for _ in range(depth - 1):
        layers += [nn.Linear(width, width, **kw), make()]
    if d_out is not None:
        layers.append(nn.Linear(width, d_out, **kw))
    return nn.Sequential(*layers)

