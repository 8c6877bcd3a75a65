"""Activation modules and the MLP builder, derived from the activation registry.

Every :class:`isometry.Activation` names the ``torch.nn`` module that computes it in its
``torch_module`` field, ``(module path, class name, keyword arguments)``. This module turns
that record into modules (:func:`activation_module`) and modules back into records
(:func:`detect_activation`, which is how :func:`isometry.torch.critical_init_` recognises the
nonlinearity of a model), so adding an activation to :data:`isometry.ACTIVATIONS` adds it
here too. It also defines the units PyTorch lacks: :class:`Erf` (the paper's
phi(h) = erf(sqrt(pi) h / 2), so phi'(0) = 1), :class:`ShiftedReLU`
(phi(h) = max(h + 1/2, 0) - 1/2) and :class:`LinearActivation` (phi(h) = h).

A user module is recognised too if it carries an ``isometry_activation`` attribute: a
registry name (``"tanh"``) or an :class:`isometry.Activation`.
"""

from __future__ import annotations

import copy
import importlib
import inspect
import itertools
import math
import numbers
from typing import Any, Mapping

import torch
from torch import nn

from ..activations import ACTIVATIONS, Activation, get_activation
from ._common import check_fits, check_int

__all__ = [
    "Erf", "ShiftedReLU", "LinearActivation", "InputNormalization", "activation_module", "detect_activation",
    "functional_activation_module", "mlp",
]

_ERF_SCALE = math.sqrt(math.pi) / 2.0

#: Module settings that compute a close approximation of a registry activation: (class, keyword
#: argument, value) -> the note the detection reports. Anything else must match exactly.
_APPROXIMATIONS: dict[tuple[type, str, Any], str] = {
    (nn.GELU, "approximate", "tanh"): "GELU(approximate='tanh') treated as the exact GELU",
}


class Erf(nn.Module):
    """phi(h) = erf(sqrt(pi) h / 2): a sigmoid with phi'(0) = 1 (the paper's erf unit).

    Its Gaussian moments are exact: E[phi'(h)^(2k)] = (1 + k pi q)^(-1/2) for h ~ N(0, q).

    >>> Erf()(torch.zeros(2))
    tensor([0., 0.])
    """

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return torch.erf(_ERF_SCALE * h)


class ShiftedReLU(nn.Module):
    """phi(h) = max(h + 1/2, 0) - 1/2: a ReLU shifted so that phi(0) = 0 and phi'(0) = 1.

    Unlike ReLU its per-layer spread mu2/mu1^2 - 1 = 1/P(h > -1/2) - 1 vanishes as q* -> 0,
    so deep shifted-ReLU networks can be made nearly isometric.

    >>> ShiftedReLU()(torch.tensor([-1.0, 0.0, 1.0]))
    tensor([-0.5000,  0.0000,  1.0000])
    """

    shift = 0.5

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return torch.clamp(h + self.shift, min=0.0) - self.shift


class LinearActivation(nn.Identity):
    """phi(h) = h, marked as an activation (a plain ``nn.Identity`` is treated as a placeholder).

    Deep linear networks are critical at sigma_w2 = 1, sigma_b2 = 0 for every q*, and exactly
    isometric with orthogonal weights.
    """


class InputNormalization(nn.Module):
    """Scale each example to mean squared coordinate ``q``: x -> x sqrt(q / mean(x^2)), per example.

    The mean field describes inputs of one length: every example x should reach the first
    critical layer with mean(x^2) = ``input_q`` (:attr:`isometry.torch.InitReport.input_q`; 1 for
    the kernel-shaped modes, whose layers sit at q = 1). Scaling the data set by its *average*
    mean square leaves each example at its own length (a data set's per-example means commonly
    spread by a factor 2-3), and the Jacobian of the network then differs from example to example.
    Put this module first: :func:`critical_init_` recognises it at the front of a model, sets ``q``
    to the report's ``input_q`` and states that the prediction then holds for every example (the
    per-location normalisation of Martens et al. 2021 with the mean over a whole example).

    The mean is over every dimension but the first (the batch), or over ``dim`` when given (e.g.
    ``dim=1``: the channels at each position of a feature map). An example of all zeros stays zero.
    ``q`` is saved in the module's ``state_dict``.

    Args:
        q: the mean squared coordinate of every normalised example, > 0.
        dim: the dimension(s) to average over (default: all but the first).
        eps: the smallest mean square divided by (zero inputs stay zero).

    Example:
        >>> m = InputNormalization(q=0.5)
        >>> x = torch.tensor([[1.0, 3.0], [0.1, 0.1]])
        >>> m(x).pow(2).mean(dim=1)
        tensor([0.5000, 0.5000])
    """

    def __init__(self, q: float = 1.0, *, dim: int | tuple[int, ...] | None = None, eps: float = 1e-30) -> None:
        super().__init__()
        self.q = _positive_number(q, "q")
        if dim is not None and not (isinstance(dim, int) and not isinstance(dim, bool)) and not (
                isinstance(dim, tuple) and dim and all(isinstance(d, int) and not isinstance(d, bool) for d in dim)):
            raise TypeError(f"dim must be an int, a non-empty tuple of ints or None, got {dim!r}")
        self.dim = dim
        self.eps = _positive_number(eps, "eps")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.dim is None:
            if x.dim() < 2:
                raise ValueError(f"InputNormalization needs a batch of examples (at least 2 dimensions), got shape "
                                 f"{tuple(x.shape)}; pass dim= to normalise over given dimensions")
            dims: int | tuple[int, ...] = tuple(range(1, x.dim()))
        else:
            dims = self.dim
        ms = x.pow(2).mean(dim=dims, keepdim=True)
        return x * torch.rsqrt(ms.clamp_min(self.eps) / self.q)

    def extra_repr(self) -> str:
        return f"q={self.q!r}" + ("" if self.dim is None else f", dim={self.dim!r}")

    def get_extra_state(self) -> dict[str, Any]:
        return {"q": self.q}

    def set_extra_state(self, state: Mapping[str, Any]) -> None:
        self.q = _positive_number(state["q"], "q")


def _positive_number(value, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {value!r}")
    v = float(value)
    if not (math.isfinite(v) and v > 0):
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    return v


# ------------------------------------------------------------------ registry <-> modules
def _module_class(spec: tuple[str, str, Mapping[str, Any]]) -> type:
    path, name, _ = spec
    try:
        cls = getattr(importlib.import_module(path), name)
    except (ImportError, AttributeError) as exc:
        raise ValueError(f"torch_module {path}.{name} cannot be imported: {exc}") from None
    if not (isinstance(cls, type) and issubclass(cls, nn.Module)):
        raise ValueError(f"torch_module {path}.{name} is not a torch.nn.Module class")
    return cls


def activation_module(activation: str | Activation, **params: Any) -> nn.Module:
    """A new ``torch.nn`` module computing ``activation``, built from its ``torch_module`` record.

    ``activation`` is a registry name (with its ``params``, e.g. ``alpha=`` of ``leaky_relu``
    and ``elu``) or an :class:`isometry.Activation` whose ``torch_module`` is set;
    ``"linear"`` gives :class:`LinearActivation`.

    Raises:
        ValueError: the activation names no torch module (e.g. a NumPy callable).

    >>> activation_module("leaky_relu", alpha=0.2)
    LeakyReLU(negative_slope=0.2)
    """
    act = get_activation(activation, **params)
    spec = act.torch_module
    if spec is None:
        raise ValueError(
            f"activation {act.name!r} has no torch module (its torch_module is None); registry activations with "
            f"one: {', '.join(_registry_with_modules())}; or give a module an isometry_activation attribute"
        )
    return _module_class(spec)(**dict(spec[2]))


def _registry_with_modules() -> list[str]:
    return [name for name, _, _, _ in _registry_entries()]


_INDEX: dict[tuple, tuple] = {}


def _registry_entries() -> tuple:
    """(registry name, factory, numeric parameters with defaults, default torch_module) for every
    registry entry with a torch module; rebuilt whenever the registry changes."""
    key = tuple((name, id(factory)) for name, factory in ACTIVATIONS.items())
    entries = _INDEX.get(key)
    if entries is None:
        out = []
        for name, factory in ACTIVATIONS.items():
            spec = factory().torch_module
            if spec is None:
                continue
            numeric = tuple(
                (p.name, p.default)
                for p in inspect.signature(factory).parameters.values()
                if isinstance(p.default, numbers.Real) and not isinstance(p.default, bool)
            )
            out.append((name, factory, numeric, spec))
        _INDEX.clear()
        entries = _INDEX[key] = tuple(out)
    return entries


def _candidates(numeric, values: Mapping[str, Any]):
    """Parameter settings to try for a factory: every parameter at its default or at one of the
    module's numeric keyword values, fewest changes from the defaults first."""
    pool = [v for v in values.values() if isinstance(v, numbers.Real) and not isinstance(v, bool)]
    options = [[d] + [v for v in pool if v != d] for _, d in numeric]
    combos = [dict(zip((n for n, _ in numeric), c)) for c in itertools.product(*options)]
    defaults = {n: d for n, d in numeric}
    return sorted(combos, key=lambda c: sum(c[k] != defaults[k] for k in c))


def detect_activation(module: nn.Module) -> tuple[Activation, str] | None:
    """The :class:`isometry.Activation` computed by ``module``, with a note, or None if unknown.

    A module is recognised when its class is the ``torch_module`` class of a registry
    activation and its attributes equal that record's keyword arguments (parameterised entries
    such as ``leaky_relu`` and ``elu`` are matched at the module's own values), or when it has
    an ``isometry_activation`` attribute (a registry name or an :class:`isometry.Activation`).
    The note is empty unless an approximation was accepted (``GELU(approximate='tanh')`` is
    treated as the exact GELU). Look-alikes with other settings (``Hardtanh(-2, 2)``,
    ``Softplus(beta=2)``, ``ReLU6``) and a plain ``nn.Identity`` (a placeholder) give None.

    >>> detect_activation(torch.nn.LeakyReLU(0.2))[0]
    Activation('leaky_relu', alpha=0.2)
    """
    if not isinstance(module, nn.Module):
        raise TypeError(f"module must be a torch.nn.Module, got {type(module).__name__}")
    tag = getattr(module, "isometry_activation", None)
    if isinstance(tag, Activation):
        return tag, ""
    if isinstance(tag, str):
        return get_activation(tag), ""
    for _, factory, numeric, spec in _registry_entries():
        kwargs = dict(spec[2])
        if spec[1] != type(module).__name__ or _module_class(spec) is not type(module):
            continue
        if not all(hasattr(module, k) for k in kwargs):
            continue
        values = {k: getattr(module, k) for k in kwargs}
        notes = []
        for k, v in list(values.items()):
            note = _APPROXIMATIONS.get((type(module), k, v)) if isinstance(v, (str, numbers.Number)) else None
            if note is not None:
                values[k] = kwargs[k]
                notes.append(note)
        for params in _candidates(numeric, values):
            try:
                act = factory(**params)
            except (ValueError, TypeError):
                continue
            spec = act.torch_module
            if spec is not None and _module_class(spec) is type(module) and dict(spec[2]) == values:
                return act, "; ".join(notes)
    return None


# ------------------------------------------------------------------ functional activations
def _functional_table() -> dict[Any, tuple[type, tuple[str, ...]]]:
    """Functional (and Tensor-method) forms of the activation modules: each callable maps to the
    module class computing the same function and the names of its positional arguments after
    the input, in the functional's order. Built once, here only."""
    import torch.nn.functional as F

    entries: list[tuple[tuple, type, tuple[str, ...]]] = [
        ((torch.tanh, F.tanh, torch.tanh_, torch.Tensor.tanh, torch.Tensor.tanh_, "tanh", "tanh_"), nn.Tanh, ()),
        ((torch.sigmoid, F.sigmoid, torch.sigmoid_, torch.Tensor.sigmoid, torch.Tensor.sigmoid_, "sigmoid",
          "sigmoid_"), nn.Sigmoid, ()),
        ((torch.relu, F.relu, torch.relu_, F.relu_, torch.Tensor.relu, torch.Tensor.relu_, "relu", "relu_"),
         nn.ReLU, ()),
        ((F.leaky_relu, F.leaky_relu_), nn.LeakyReLU, ("negative_slope",)),
        ((F.elu, F.elu_), nn.ELU, ("alpha",)),
        ((F.selu, torch.selu, torch.selu_, F.selu_), nn.SELU, ()),
        ((F.silu,), nn.SiLU, ()),
        ((F.gelu,), nn.GELU, ("approximate",)),
        ((F.softplus,), nn.Softplus, ("beta", "threshold")),
        ((F.hardtanh, F.hardtanh_), nn.Hardtanh, ("min_val", "max_val")),
    ]
    return {key: (cls, names) for keys, cls, names in entries for key in keys}


_FUNCTIONAL: dict[Any, tuple[type, tuple[str, ...]]] = {}

#: Keyword arguments of functional activations that do not change the function computed.
_NEUTRAL_KWARGS = frozenset({"inplace"})


def functional_activation_module(function, args: tuple = (), kwargs: Mapping[str, Any] | None = None) -> nn.Module | None:
    """The activation module equivalent to the call ``function(input, *args, **kwargs)``, or None.

    ``function`` is a torch function (``torch.tanh``, ``F.relu``, ``F.leaky_relu``, ...), a
    ``torch.Tensor`` method (``torch.Tensor.tanh``) or a method name as ``torch.fx`` records it
    (``"tanh"``); ``args`` are the arguments after the input (numbers and strings only). This
    table is the one place that knows the functional forms; :func:`detect_activation` then maps
    the module to the registry record, so ``torch.tanh`` is recognised exactly as ``nn.Tanh``.

    >>> import torch.nn.functional as F
    >>> functional_activation_module(F.leaky_relu, (0.2,))
    LeakyReLU(negative_slope=0.2)
    """
    if not _FUNCTIONAL:
        _FUNCTIONAL.update(_functional_table())
    try:
        entry = _FUNCTIONAL.get(function)
    except TypeError:  # unhashable
        return None
    if entry is None:
        return None
    cls, names = entry
    if len(args) > len(names):
        return None
    kw = dict(zip(names, args))
    for k, v in (kwargs or {}).items():
        if k in _NEUTRAL_KWARGS:
            continue
        if k not in names:
            return None
        kw[k] = v
    if not all(isinstance(v, (numbers.Real, str)) for v in kw.values()):
        return None  # a tensor-valued slope: not a fixed activation
    try:
        return cls(**kw)
    except (TypeError, ValueError):
        return None


# ------------------------------------------------------------------ the MLP builder
_MODULE_BYTES = 3_000
"""Resident memory of one small ``nn.Module`` (a Linear with its meta parameters, or an
activation) in CPython, measured: about 5.8 KB per (Linear, activation) pair."""
_MODULE_SECONDS = 1.0e-4
"""Time to construct one module, measured (0.12 ms per (Linear, activation) pair)."""
_INIT_SECONDS_PER_PARAM = 5e-9
"""PyTorch's default (Kaiming-uniform) initialisation, per parameter, measured order of magnitude."""


def mlp_cost(depth: int, width: int, d_in: int | None = None, d_out: int | None = None, *, bias: bool = True,
             dtype: torch.dtype | None = None, device: torch.device | str | None = None) -> tuple[float, float, int]:
    """(bytes, seconds, modules) that :func:`mlp` needs for these arguments, estimated up front."""
    n_mod = 2 * depth + (1 if d_in is not None and d_in != width else 0) + (1 if d_out is not None else 0)
    n_par = depth * width * (width + bias)
    if d_in is not None and d_in != width:
        n_par += width * (d_in + bias)
    if d_out is not None:
        n_par += d_out * (width + bias)
    meta = device is not None and torch.device(device).type == "meta"
    itemsize = torch.empty((), dtype=dtype or torch.get_default_dtype(), device="meta").element_size()
    need = n_mod * _MODULE_BYTES + (0 if meta else n_par * itemsize)
    seconds = n_mod * _MODULE_SECONDS + (0 if meta else n_par * _INIT_SECONDS_PER_PARAM)
    return float(need), float(seconds), n_mod


def mlp(
    depth: int,
    width: int,
    activation: str | Activation | nn.Module = "tanh",
    d_in: int | None = None,
    d_out: int | None = None,
    *,
    bias: bool = True,
    normalize_input: bool = False,
    dtype: torch.dtype | None = None,
    device: torch.device | str | None = None,
    **params: Any,
) -> nn.Sequential:
    """A deep fully connected network whose critical stack is ``depth`` square layers.

    Layout (an ``nn.Sequential``):

    * if ``normalize_input``, an :class:`InputNormalization` scaling each example to one mean
      square (set by :func:`critical_init_` to the report's ``input_q``);
    * if ``d_in`` is given and differs from ``width``, a *stem* ``Linear(d_in, width)`` with no
      activation (not counted in ``depth``);
    * the critical stack: ``depth`` x (``Linear(width, width)``, phi);
    * if ``d_out`` is given, a readout ``Linear(width, d_out)`` with no activation.

    The input-output Jacobian of the critical stack, J = prod_l D^l W^l (N x N), is what the
    theory (:func:`isometry.jacobian_spectrum`) and :func:`isometry.torch.critical_init_`
    describe. ``activation`` is a registry name (with ``params``, e.g. ``alpha=0.2``), an
    :class:`isometry.Activation` with a torch module, or a module instance (deep-copied per
    layer). Weights keep PyTorch's default initialisation; call :func:`critical_init_`.

    Raises:
        TypeError: ``depth``, ``width``, ``d_in`` or ``d_out`` is not an integer (or None).
        ValueError: a size is < 1, or the network would not fit in the available memory.

    >>> net = mlp(3, 16, "erf", d_in=8, d_out=2)
    >>> [type(m).__name__ for m in net]
    ['Linear', 'Linear', 'Erf', 'Linear', 'Erf', 'Linear', 'Erf', 'Linear']
    """
    depth = check_int("depth", depth)
    width = check_int("width", width)
    d_in = check_int("d_in", d_in, none=True)
    d_out = check_int("d_out", d_out, none=True)
    if not isinstance(bias, bool):
        raise TypeError(f"bias must be a bool, got {type(bias).__name__}")
    if not isinstance(normalize_input, bool):
        raise TypeError(f"normalize_input must be a bool, got {type(normalize_input).__name__}")
    if isinstance(activation, nn.Module):
        if params:
            raise ValueError(f"parameters {sorted(params)} cannot be given with an activation module")

        def make() -> nn.Module:
            return copy.deepcopy(activation)
    else:
        act = get_activation(activation, **params)
        activation_module(act)  # fails early when there is no torch module

        def make() -> nn.Module:
            return activation_module(act)

    need, _, n_mod = mlp_cost(depth, width, d_in, d_out, bias=bias, dtype=dtype, device=device)
    check_fits(need, f"mlp(depth={depth}, width={width}) with {n_mod} modules",
               "reduce depth or width (or build on device='meta' to skip the parameters)")
    kw = {"bias": bias, "dtype": dtype, "device": device}
    layers: list[nn.Module] = [InputNormalization()] if normalize_input else []
    if d_in is not None and d_in != width:
        layers.append(nn.Linear(d_in, width, **kw))
    for _ in range(depth):
        layers += [nn.Linear(width, width, **kw), make()]
    if d_out is not None:
        layers.append(nn.Linear(width, d_out, **kw))
    return nn.Sequential(*layers)

