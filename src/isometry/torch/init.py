"""Critical (orthogonal) initialisation of PyTorch models: :func:`critical_init_`.

For a network h^l = W^l phi(h^{l-1}) + b^l the Jacobian of its critical stack is
J = prod_{l=1}^{L} D^l W^l with D^l = diag(phi'(h^l)). Pennington, Schoenholz & Ganguli
(2017) show that at criticality, chi = sigma_w2 mu_1(q*) = 1, the eigenvalues of J J^T have
mean 1 and variance sigma^2_{JJ^T} = L (mu_2/mu_1^2 - 1 - s_1) (their eq. 16-17;
:func:`isometry.jacobian_variance`), s_1 = 0 for orthogonal and -1 for Gaussian weights.
Orthogonal weights and an activation whose per-layer spread mu_2/mu_1^2 - 1 vanishes as
q* -> 0 (tanh, erf, hard tanh, shifted ReLU, ...) keep sigma^2_{JJ^T} = O(1) at any depth by
letting q* shrink as L grows (q* ~ L^{-1/2} for tanh and erf: the double-scaling limit);
positively homogeneous units (ReLU) cannot, and Gaussian weights cannot (sigma^2_{JJ^T} >= L).

:func:`critical_init_` finds the affine layers of a model and the activations that follow
them, validates all of it, picks q* (given, or from a target sigma^2_{JJ^T}), and only then
fills every weight with :func:`critical_orthogonal_` (or Gaussian weights) and every bias with
:func:`critical_bias_`; it returns an :class:`InitReport` with the predicted spectrum.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
from torch import nn

from ..activations import Activation, get_activation
from ..meanfield import CriticalPoint, critical_point
from ._common import as_generator, check_fits, check_int, check_positive
from .initializers import (
    _fill_normal,
    _orthogonal_gain,
    _sample_bytes,
    _work_dtype,
    critical_bias_,
    critical_orthogonal_,
)
from .modules import detect_activation
from .report import DEFAULT_SIGMA0_2, InitReport, LayerInit

__all__ = ["critical_init_", "choose_critical_point"]

_LAYER_BYTES = 2_000
"""Memory of one layer's entry in the walk and the report (measured: about 1.1 KB, and 0.3 KB
more for its ``to_dict``)."""
_LAYER_SECONDS = 3e-4
"""critical_init_ time per layer on meta parameters (measured: 0.18 ms)."""

_AFFINE = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)
_Q_GRID = np.logspace(-10.0, 4.0, 281)  # 20 points per decade
_LINEAR = get_activation("linear")  # stem, linear and readout layers: sigma_w2 = 1, sigma_b2 = 0 at every q*


def _weight_law_name(weights) -> str:
    """The canonical name of a weight law critical_init_ can sample ("orthogonal" or "gaussian")."""
    from ..spectrum import weight_law

    name = weight_law(weights).name
    if weights != name or name not in ("orthogonal", "gaussian"):
        raise ValueError(
            f"weights must be 'orthogonal' or 'gaussian' (the laws critical_init_ can sample), got {weights!r}"
        )
    return name


def init_cost(n_layers: int) -> tuple[float, float]:
    """(bytes, seconds) of critical_init_'s bookkeeping for ``n_layers`` affine layers on meta
    parameters (the fills themselves add their Haar samples)."""
    return float(n_layers * _LAYER_BYTES), float(n_layers * _LAYER_SECONDS)


# ------------------------------------------------------------------------------ choosing q*
def _variance(act: Activation, depth: int, q: float, weights: str = "orthogonal") -> float:
    from .. import jacobian_variance

    return float(jacobian_variance(act, depth, q_star=q, weights=weights))


def choose_critical_point(
    activation: str | Activation, depth: int, *, q_star: float | None = None, sigma0_2: float | None = None
) -> tuple[CriticalPoint, str]:
    """The critical point used by :func:`critical_init_`, with a note saying how it was chosen.

    * ``q_star`` given: :func:`isometry.critical_point` (activation, q_star).
    * a positively homogeneous unit (``Activation.homogeneous``: linear, ReLU, leaky ReLU):
      nothing but the scale depends on q*, so q* = 1.
    * otherwise the target t = ``sigma0_2`` (default 1/4) for the orthogonal-weight variance
      L (mu_2/mu_1^2 - 1) is solved for q* on the critical line (chi = 1, sigma_b2 >= 0),
      taking the smallest solution (:func:`isometry.q_star_for_variance`). This is the
      double-scaling rule: for tanh mu_2/mu_1^2 - 1 ~ 8 q*^2, so q* ~ (t / 8L)^{1/2}.
    * where no q* reaches t: if the variance stays below t at every valid q*, the valid q*
      nearest to 1; if it stays above t, the q* of least variance.

    Raises:
        ValueError: both or invalid ``q_star`` / ``sigma0_2``, or the activation has no critical
            point (chi = 1 with sigma_b2 >= 0) for q* in [1e-10, 1e4].

    >>> cp, note = choose_critical_point("tanh", 100)
    >>> round(100 * (cp.mu2 / cp.mu1**2 - 1), 9)
    0.25
    """
    from ..spectrum import q_star_for_variance

    act = get_activation(activation)
    depth = check_int("depth", depth)
    if q_star is not None and sigma0_2 is not None:
        raise ValueError("give q_star or sigma0_2, not both")
    if q_star is not None:
        return critical_point(act, check_positive("q_star", q_star)), "q* given"
    t = DEFAULT_SIGMA0_2 if sigma0_2 is None else check_positive("sigma0_2", sigma0_2)
    if act.homogeneous:
        try:
            cp = critical_point(act, 1.0)
        except ValueError:
            cp = None
        if cp is not None:
            return cp, f"{act.name} is positively homogeneous: the spectrum does not depend on q*; q* = 1 chosen"
    try:  # the double-scaling solution (first crossing from small q*), when it exists
        q = q_star_for_variance(act, depth, t, "orthogonal")
        note = f"q* chosen so that sigma^2_JJT = {t:.4g} with orthogonal weights at depth {depth}"
        return critical_point(act, q), note
    except ValueError:
        pass
    qv, rv = [], []
    for q in _Q_GRID:
        try:
            critical_point(act, float(q))
            v = _variance(act, depth, float(q))
        except (ValueError, ArithmeticError):
            continue
        if math.isfinite(v):
            qv.append(float(q))
            rv.append(v)
    if not qv:
        raise ValueError(
            f"{act.name} has no critical point (chi = 1 with sigma_b2 >= 0) for q* in [1e-10, 1e4]; "
            "critical initialisation is impossible for this activation"
        )
    qv_a, rv_a = np.array(qv), np.array(rv)
    if np.all(rv_a < t):
        q = float(qv_a[np.argmin(np.abs(np.log(qv_a)))])
        return critical_point(act, q), (
            f"target sigma0_2 = {t:.4g} exceeds the orthogonal-weight variance at every q* "
            f"(at most {float(np.max(rv_a)):.4g}); q* = {q:g} chosen"
        )
    k = int(np.argmin(rv_a))
    q = float(qv_a[k])
    # refine between the grid neighbours when both are valid critical points
    idx = np.searchsorted(_Q_GRID, qv_a)
    if 0 < k < len(qv_a) - 1 and idx[k + 1] - idx[k - 1] == 2:
        from scipy.optimize import minimize_scalar

        res = minimize_scalar(
            lambda s: _variance(act, depth, math.exp(s)),
            bounds=(math.log(qv_a[k - 1]), math.log(qv_a[k + 1])), method="bounded", options={"xatol": 1e-6},
        )
        if float(res.fun) <= float(rv_a[k]):
            q = math.exp(float(res.x))
    cp = critical_point(act, q)
    return cp, (
        f"target sigma0_2 = {t:.4g} is not reachable: the least orthogonal-weight variance on the "
        f"critical line of {act.name} at depth {depth} is {_variance(act, depth, q):.4g} (q* = {q:.4g})"
    )


# ------------------------------------------------------------------------------ predictions
_PREDICTIONS: OrderedDict[tuple, tuple[float, float]] = OrderedDict()


def _predicted_mean_and_max(act: Activation, cp: CriticalPoint, depth: int, weights: str) -> tuple[float, float]:
    """(mean eigenvalue, largest singular value) of the free-probability law of J J^T
    (:func:`isometry.jacobian_spectrum`), memoised since critical_init_ is called in loops; the
    largest singular value is NaN where the theory cannot give it."""
    from .. import jacobian_spectrum

    key = (_cache_name(act), depth, cp.q_star, weights)
    if key in _PREDICTIONS:
        _PREDICTIONS.move_to_end(key)
        return _PREDICTIONS[key]
    try:
        spec = jacobian_spectrum(act, depth, q_star=cp.q_star, weights=weights)
    except ValueError:
        spec = None
    mean = float(spec.mean()) if spec is not None else math.exp(depth * math.log(cp.sigma_w2 * cp.mu1))
    top = float("nan")
    if spec is not None:
        try:
            with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
                lam = float(spec.max_eigenvalue)
            top = math.sqrt(lam) if math.isfinite(lam) and lam >= 0 else float("nan")
        except (ValueError, ArithmeticError):
            pass
    _PREDICTIONS[key] = (mean, top)
    if len(_PREDICTIONS) > 64:
        _PREDICTIONS.popitem(last=False)
    return mean, top


def _cache_name(act: Activation):
    """A registry activation by its name and parameters (equal records from separate
    ``get_activation`` calls share predictions); any other activation by its identity."""
    from .. import ACTIVATIONS

    if act.name in ACTIVATIONS and act.torch_module is not None:
        try:
            same = get_activation(act.name, **act.params).torch_module == act.torch_module
        except ValueError:
            same = False
        if same:
            return act.name, tuple(sorted(act.params.items()))
    return id(act), act


# ------------------------------------------------------------------------------ walking the model
@dataclass
class _Slot:
    name: str
    module: nn.Module
    role: str = "linear"
    activation: Activation | None = None
    act_name: str | None = None  # the module that applies the activation, when it is a module
    note: str = ""


_OUTPUT = (nn.Softmax, nn.LogSoftmax, nn.Softmin, nn.Softmax2d)


def _is_ignorable(m: nn.Module) -> bool:
    """Dropout, Flatten/Unflatten and a plain nn.Identity: no effect on the mean-field recursion."""
    from torch.nn.modules.dropout import _DropoutNd

    return isinstance(m, (_DropoutNd, nn.Flatten, nn.Unflatten)) or type(m) is nn.Identity


def _has_state(m: nn.Module) -> bool:
    return any(True for _ in m.parameters(recurse=False)) or any(True for _ in m.buffers(recurse=False))


def _leaves(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """Leaf modules (and affine layers) in registration order, every registration of a shared
    module included.

    A module registered twice is applied twice; parameterised ones are refused (a layer applied
    twice has the same weights both times, which the theory of independent layers does not
    describe), parameter-free ones (a shared activation) are kept at every place.
    """
    leaves, seen, inside = [], {}, None
    for n, m in model.named_modules(remove_duplicate=False):
        if inside is not None and n.startswith(inside):
            continue  # the submodules of an affine layer (a parametrisation) belong to it
        inside = None
        if isinstance(m, _AFFINE):
            inside = n + "." if n else ""
        elif any(True for _ in m.children()):
            continue
        n = n or type(model).__name__
        if _has_state(m) and id(m) in seen:
            raise ValueError(
                f"critical_init_: module {seen[id(m)]!r} ({type(m).__name__}) is registered again as {n!r}: a layer "
                "used twice shares its weights, which the mean-field theory of independent layers does not describe"
            )
        seen.setdefault(id(m), n)
        leaves.append((n, m))
    return leaves


def _walk(model: nn.Module, override: Activation | None) -> list[_Slot]:
    """Affine layers in registration order, each with the activation module that follows it."""
    slots: list[_Slot] = []
    pending: list[tuple[str, nn.Module]] = []  # non-affine leaves since the last affine layer

    def close(slot: _Slot, between: list[tuple[str, nn.Module]], last: bool = False) -> None:
        found: list[tuple[str, nn.Module, Activation | None, str]] = []
        for n, m in between:
            if _is_ignorable(m) or (last and isinstance(m, _OUTPUT)):  # softmax after the readout
                continue
            det = detect_activation(m)
            if det is None and _has_state(m):
                raise ValueError(
                    f"critical_init_: module {n!r} ({type(m).__name__}) between affine layers has parameters; "
                    "mean-field initialisation supports Linear/Conv layers separated by pointwise activations only"
                )
            found.append((n, m, det[0] if det else None, det[1] if det else ""))
        if not found:
            return
        if len(found) > 1:
            names = ", ".join(f"{n!r} ({type(m).__name__})" for n, m, _, _ in found)
            raise ValueError(
                f"critical_init_: layer {slot.name!r} is followed by several modules ({names}); "
                "expected one pointwise activation"
            )
        n, m, det, note = found[0]
        slot.act_name = n
        if override is not None:
            slot.activation, slot.note = override, ""
        elif det is None:
            raise ValueError(
                f"critical_init_: module {n!r} ({type(m).__name__}) after layer {slot.name!r} is not a recognised "
                "activation; pass activation= to critical_init_ (a registry name such as 'tanh', an "
                "isometry.Activation, or a callable phi), or give the module an isometry_activation attribute"
            )
        else:
            slot.activation, slot.note = det, note

    for n, m in _leaves(model):
        if isinstance(m, _AFFINE):
            if slots:
                close(slots[-1], pending)
            slots.append(_Slot(n, m))
            pending = []
        elif slots:
            pending.append((n, m))
    if slots:
        close(slots[-1], pending, last=True)
    if not slots:
        raise ValueError(f"critical_init_: {type(model).__name__} has no nn.Linear or nn.Conv1d/2d/3d layers")
    if override is not None and not any(s.activation is not None for s in slots):
        # activations applied functionally in forward(): every affine layer but the last is critical
        for s in slots[:-1]:
            s.activation = override
    return slots


def _same(a: Activation, b: Activation) -> bool:
    return a is b or (a.name == b.name and dict(a.params) == dict(b.params))


def _resolve_override(activation) -> Activation | None:
    if activation is None:
        return None
    if isinstance(activation, nn.Module):
        det = detect_activation(activation)
        if det is None:
            raise ValueError(
                f"activation={type(activation).__name__}() is not a recognised activation module; "
                "pass a registry name or an isometry.Activation"
            )
        return det[0]
    return get_activation(activation)


def _check_layer(s: _Slot) -> None:
    """Everything that could stop the fill of one layer half-way, checked before any fill."""
    m = s.module
    label = f"critical_init_: layer {s.name!r} ({type(m).__name__})"
    for pname in ("weight", "bias"):
        p = m._parameters.get(pname)
        if pname == "weight" and p is None:
            raise ValueError(
                f"{label} has no weight parameter of its own (a parametrisation or weight norm computes it); "
                "remove the parametrisation before initialising"
            )
        if p is None:
            if getattr(m, pname, None) is not None:
                raise ValueError(f"{label}: its {pname} is computed, not a parameter; remove the parametrisation")
            continue
        if isinstance(p, nn.parameter.UninitializedParameter):
            raise ValueError(f"{label} is a lazy module with uninitialised {pname}; run one forward pass first")
        if not p.is_floating_point():
            raise ValueError(f"{label}: {pname} has dtype {p.dtype}; critical initialisation needs real floating point")
        if p.numel() == 0:
            raise ValueError(f"{label}: {pname} is empty (shape {tuple(p.shape)})")
    if torch.nn.utils.parametrize.is_parametrized(m):
        raise ValueError(f"{label} is parametrised; remove the parametrisation before initialising")
    w = m._parameters["weight"]
    want = 2 if isinstance(m, nn.Linear) else None
    if (want is not None and w.dim() != 2) or (want is None and w.dim() < 3):
        raise ValueError(f"{label}: weight has shape {tuple(w.shape)}, not that of its layer type")
    groups = getattr(m, "groups", 1)
    if w.shape[0] % groups:
        raise ValueError(f"{label}: groups={groups} does not divide its {w.shape[0]} output channels")


def _check_shared_parameters(slots: list[_Slot]) -> None:
    owner: dict[int, str] = {}
    for s in slots:
        for pname in ("weight", "bias"):
            p = s.module._parameters.get(pname)
            if p is None:
                continue
            if id(p) in owner:
                raise ValueError(
                    f"critical_init_: {s.name}.{pname} is the same tensor as {owner[id(p)]} (tied parameters); "
                    "the mean-field theory of independent layers does not describe tied layers"
                )
            owner[id(p)] = f"{s.name}.{pname}"


def _check_memory(slots: list[_Slot], weights: str) -> None:
    """The largest temporary of the fills must fit in memory."""
    need, where = 0, None
    for s in slots:
        w = s.module.weight
        if w.is_meta:
            continue
        groups = getattr(s.module, "groups", 1)
        if weights == "orthogonal":
            b = _sample_bytes(tuple(w.shape), groups, _work_dtype(w))
        else:
            b = 2 * w.numel() * (8 if _work_dtype(w) == torch.float64 else 4)
        if b > need:
            need, where = b, s
    if where is not None:
        check_fits(need, f"critical_init_ of layer {where.name!r} with weight {tuple(where.module.weight.shape)}",
                   "initialise this layer by hand, or on a machine with more memory")


# ------------------------------------------------------------------------------ the entry point
def critical_init_(
    model: nn.Module,
    *,
    q_star: float | None = None,
    sigma0_2: float | None = None,
    weights: str = "orthogonal",
    activation: str | Activation | nn.Module | Callable | None = None,
    strict: bool = False,
    generator: torch.Generator | int | None = None,
) -> InitReport:
    """Initialise ``model`` in place at the order-chaos critical point; report the predicted spectrum.

    **Which layers.** Leaf modules are read in registration order (``model.named_modules()``,
    the execution order of ``nn.Sequential``). Each ``nn.Linear`` / ``nn.Conv1d/2d/3d`` followed
    by a pointwise activation module (any module :func:`isometry.torch.detect_activation`
    recognises: those of the activation registry, or one with an ``isometry_activation``
    attribute) is a *critical layer*; their number is the depth L, and the predictions refer to
    the Jacobian of the *critical stack*, from the input of the first critical layer to the
    output of the last activation (``report.stack`` names both modules). Dropout, Flatten and
    a plain ``nn.Identity`` are skipped, and so is a softmax after the last layer.
    ``activation=`` overrides detection (and, if the model has no activation modules because it
    applies phi in ``forward``, makes every affine layer but the last critical).

    **Critical point.** q* is ``q_star``, or solves L (mu_2/mu_1^2 - 1) = ``sigma0_2`` (default
    1/4) on the critical line (:func:`choose_critical_point`, the double-scaling rule); then
    sigma_w2 = 1 / mu_1(q*), sigma_b2 = q* - sigma_w2 E[phi(h)^2] (chi = 1). Gaussian weights use
    the same q* as orthogonal ones.

    **Weights.** ``weights="orthogonal"``: :func:`critical_orthogonal_` (rows of squared norm
    sigma_w2; delta-orthogonal kernels for convolutions, Xiao et al. 2018, per group).
    ``weights="gaussian"``: W_ij ~ N(0, sigma_w2 / fan_in). Biases: :func:`critical_bias_`,
    N(0, sigma_b2).

    **Stem, linear layers and readout.** Affine layers with no activation after them (a stem
    before the critical stack, linear bottlenecks inside it, the readout after it) are filled
    as critical layers of the linear unit: sigma_w2 = 1, sigma_b2 = 0 (orthogonal: gain 1 rows,
    or columns scaled by sqrt(n_out / n_in)), which keep the mean squared coordinate, so the
    model's input should have mean(x^2) = ``report.input_q`` = (q* - sigma_b2) / sigma_w2.

    **All or nothing.** Every layer, activation, parameter, the critical point, strict mode and
    the memory the fills need are checked before any parameter is touched: on any error the
    model is unchanged. Meta-device parameters are left as they are (the report is still built).

    **Isometry.** ``report.isometric`` follows :data:`ISOMETRY_RULE`. Positively homogeneous units
    (ReLU: sigma^2_{JJ^T} = L with orthogonal weights) and Gaussian weights (sigma^2_{JJ^T} >= L)
    cannot be isometric; they are still initialised critically and ``report.reason`` explains,
    unless ``strict=True``, which raises ``ValueError`` instead.

    Args:
        model: the ``torch.nn.Module`` to initialise in place.
        q_star: the fixed point q* > 0 (exclusive with ``sigma0_2``).
        sigma0_2: target variance of the eigenvalues of J J^T (default 0.25).
        weights: ``"orthogonal"`` or ``"gaussian"``.
        activation: a registry name, an :class:`isometry.Activation`, a callable phi or an
            activation module, overriding detection.
        strict: refuse (``ValueError``) a network that cannot be isometric.
        generator: a ``torch.Generator``, an int seed, or None (torch's global generator).

    Returns:
        The :class:`InitReport`.

    >>> from isometry.torch import mlp, critical_init_
    >>> report = critical_init_(mlp(100, 256, "tanh"), generator=0)
    >>> round(report.predicted_variance, 6), report.isometric
    (0.25, True)
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    weights = _weight_law_name(weights)
    if q_star is not None and sigma0_2 is not None:
        raise ValueError("give q_star or sigma0_2, not both")
    q_star = check_positive("q_star", q_star, none=True)
    sigma0_2 = check_positive("sigma0_2", sigma0_2, none=True)
    if not isinstance(strict, bool):
        raise TypeError(f"strict must be a bool, got {type(strict).__name__}")
    gen = as_generator(generator)
    override = _resolve_override(activation)

    # ---- structure: every layer and activation
    slots = _walk(model, override)
    crit = [s for s in slots if s.activation is not None]
    if not crit:
        raise ValueError(
            f"critical_init_: no activation module follows any affine layer of {type(model).__name__}; "
            "if the model applies its nonlinearity in forward() (e.g. torch.tanh), pass activation='tanh'"
        )
    act = crit[0].activation
    for s in crit[1:]:
        if not _same(s.activation, act):
            raise ValueError(
                f"critical_init_: mixed activations ({act!r} after {crit[0].name!r}, {s.activation!r} after "
                f"{s.name!r}); the mean-field theory needs one; pass activation= to choose"
            )
    for s in slots:
        _check_layer(s)
    _check_shared_parameters(slots)
    depth = len(crit)
    first, last = slots.index(crit[0]), slots.index(crit[-1])
    for i, s in enumerate(slots):
        if s.activation is not None:
            s.role = "input" if i == first else "hidden"
        else:
            s.role = "stem" if i < first else ("linear" if i < last else "readout")
    stack = (crit[0].name, crit[-1].act_name or crit[-1].name)
    widths = {int(s.module.weight.shape[0]) for s in crit}
    width = widths.pop() if len(widths) == 1 else None

    # ---- the critical point and what it predicts
    cp, choice = choose_critical_point(act, depth, q_star=q_star, sigma0_2=sigma0_2)
    var = _variance(act, depth, cp.q_star, weights)
    mean, top = _predicted_mean_and_max(act, cp, depth, weights)
    reasons = []
    if weights == "gaussian":
        reasons.append(f"Gaussian weights: sigma^2_JJT >= L = {depth} at every q*; use weights='orthogonal'")
    if act.homogeneous and var > 0:
        reasons.append(
            f"{act.name} is positively homogeneous: the per-layer variance {_variance(act, 1, cp.q_star):.4g} "
            "is the same "
            f"at every q*, so sigma^2_JJT grows like L ({var:.4g} here) whatever the initialisation"
        )
    isometric = weights == "orthogonal" and var < 1.0
    if not isometric and not reasons:
        reasons.append(f"predicted sigma^2_JJT = {var:.4g} >= 1 at the chosen q* (see choice)")
    reason = "; ".join(reasons) if not isometric else ""
    if strict and not isometric:
        raise ValueError(
            f"critical_init_(strict=True): {act.name} network of depth {depth} cannot be isometric: {reason}"
        )
    _check_memory(slots, weights)

    # ---- the plan, then the fills (nothing above touched a parameter)
    label = _act_label(act)
    table = []
    for s in slots:
        critical = s.activation is not None
        sw2, sb2 = (cp.sigma_w2, cp.sigma_b2) if critical else (1.0, 0.0)
        w = s.module.weight
        groups = getattr(s.module, "groups", 1)
        is_conv = not isinstance(s.module, nn.Linear)
        if weights == "orthogonal":
            method = "delta-orthogonal" if is_conv else "orthogonal"
            gain = _orthogonal_gain(sw2, w.shape[0] // groups, w.shape[1])
        else:
            method, gain = "gaussian", math.sqrt(sw2)
        note = s.note
        if is_conv and any(st != 1 for st in tuple(s.module.stride)):
            strided = "stride > 1: the delta kernel subsamples, the layer is not norm-preserving"
            note = "; ".join(x for x in (note, strided) if x)
        table.append(LayerInit(s.name, type(s.module).__name__, s.role, tuple(w.shape), label if critical else None,
                               method, sw2, sb2, gain, note))
    for s in slots:
        unit = act if s.activation is not None else _LINEAR
        m = s.module
        if weights == "orthogonal":
            critical_orthogonal_(m.weight, unit, q_star=cp.q_star, groups=getattr(m, "groups", 1), generator=gen)
        else:
            _fill_normal(m.weight, cp.sigma_w2 if s.activation is not None else 1.0, gen)
        if m.bias is not None:
            critical_bias_(m.bias, unit, q_star=cp.q_star, generator=gen)

    return InitReport(
        activation=label,
        depth=depth,
        width=width,
        weights=weights,
        sigma_w2=cp.sigma_w2,
        sigma_b2=cp.sigma_b2,
        q_star=cp.q_star,
        mu1=cp.mu1,
        mu2=cp.mu2,
        input_q=float((cp.q_star - cp.sigma_b2) / cp.sigma_w2),
        predicted_mean=mean,
        predicted_variance=var,
        predicted_max_singular_value=top,
        isometric=isometric,
        reason=reason,
        choice=choice,
        stack=stack,
        layers=tuple(table),
        activation_spec=act,
    )


def _act_label(act: Activation) -> str:
    return act.name + ("" if not act.params else "(" + ", ".join(f"{k}={v:g}" for k, v in act.params.items()) + ")")
