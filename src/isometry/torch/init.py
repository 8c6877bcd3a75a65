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

:func:`critical_init_` reads the model's structure from its graph (:mod:`isometry.torch.graph`),
validates all of it, picks q* (given, or from a target sigma^2_{JJ^T}), and only then fills
every critical layer with :func:`critical_orthogonal_` (or Gaussian weights) and
:func:`critical_bias_`. Residual blocks x + a phi(W x + b) are set from the residual mean field
(:func:`isometry.residual_branch_scale`, :func:`isometry.residual_spectrum`). Blocks no theory
covers (normalised, attention, transformer, other residual blocks, unknown modules) are
calibrated on an example batch (:mod:`isometry.torch.calibrate`). It returns an
:class:`InitReport` naming the sub-map (the body) its prediction is about.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass, replace
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from ..activations import Activation, get_activation
from ..meanfield import Q_STAR_SCAN, CriticalPoint, critical_point
from ._common import as_generator, check_fits, check_int, check_positive
from .calibrate import Knob, Measure, calibrate, knob_tensors, measure, refresh_norm_statistics, solve_scale
from ..shaping import Chain, ResidualChain
from .graph import (
    ACTIVATION,
    AFFINE,
    AVG_POOL,
    INPUT,
    INPUT_NORM,
    MAX_POOL,
    NORM,
    NORM_TYPES,
    SCALE,
    SHAPE,
    Op,
    Structure,
    Unit,
    read_structure,
    scale_parameter,
    unit_name,
)
from .initializers import (
    _fill_bias,
    _fill_full_orthogonal,
    _fill_normal,
    _fill_orthogonal,
    _orthogonal_gain,
    _sample_bytes,
    _work_dtype,
)
from .modes import apply_shaping, check_mode, plan_shaping, undo_shaping
from .modules import InputNormalization, detect_activation, functional_activation_module
from .report import DEFAULT_SIGMA0_2, FLUCTUATION_LIMIT, BlockInit, InitReport, LayerInit

__all__ = ["critical_init_", "choose_critical_point"]

_LAYER_BYTES = 16_000
"""Memory of one layer in the traced graph, its ops, units and the report (measured: 8-13 KB peak
per (Linear, activation) layer of a meta-device MLP)."""
_LAYER_SECONDS = 5e-4
"""critical_init_ time per layer on meta parameters, tracing and the report's ``to_dict`` included,
with a factor 2 for a loaded machine (benchmarks/bench_init.py: 0.14-0.20 ms of CPU time, and
0.04-0.10 ms for ``to_dict``)."""

STEM_TOLERANCE = 0.01
"""Relative tolerance of the stem's scale (its target q* or chi = 1)."""
RESIDUAL_GROWTH = 0.04
"""How much residual blocks whose branch can only add to chi may raise the body's mean eigenvalue
in all (each gets its share; see :func:`isometry.torch.calibrate.calibrate`)."""
_Q_GRID = np.geomspace(*Q_STAR_SCAN, 361)  # 20 points per decade


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
            point (chi = 1 with sigma_b2 >= 0) for q* in ``isometry.meanfield.Q_STAR_SCAN``.

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
            f"{act.name} has no critical point (chi = 1 with sigma_b2 >= 0) for q* in "
            f"[{Q_STAR_SCAN[0]:g}, {Q_STAR_SCAN[1]:g}]; "
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
_PREDICTIONS: OrderedDict[tuple, tuple[float, float, str]] = OrderedDict()


def _predicted_mean_and_max(act: Activation, cp: CriticalPoint, depth: int, weights: str) -> tuple[float, float, str]:
    """(mean eigenvalue, largest singular value, why the latter is missing) of the free-probability
    law of J J^T (:func:`isometry.jacobian_spectrum`), memoised since critical_init_ is called in
    loops; the largest singular value is NaN where the theory cannot give it, and the third
    element then says why ("" otherwise)."""
    from .. import jacobian_spectrum

    key = (_cache_name(act), depth, cp.q_star, weights)
    if key in _PREDICTIONS:
        _PREDICTIONS.move_to_end(key)
        return _PREDICTIONS[key]
    why = ""
    try:
        spec = jacobian_spectrum(act, depth, q_star=cp.q_star, weights=weights)
    except ValueError as exc:
        spec, why = None, str(exc)
    mean = float(spec.mean()) if spec is not None else math.exp(depth * math.log(cp.sigma_w2 * cp.mu1))
    top = float("nan")
    if spec is not None:
        try:
            with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
                lam = float(spec.max_eigenvalue)
            if math.isfinite(lam) and lam >= 0:
                top = math.sqrt(lam)
            else:
                why = f"the law's upper edge is not finite ({lam!r})"
        except (ValueError, ArithmeticError) as exc:
            why = str(exc)
    if why:
        why = f"the largest singular value of the law at q* = {cp.q_star:.6g} is not available: {why}"
    _PREDICTIONS[key] = (mean, top, why)
    if len(_PREDICTIONS) > 64:
        _PREDICTIONS.popitem(last=False)
    return mean, top, why


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


# ------------------------------------------------------------------------------ the plan
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


def _check_affine(op: Op) -> None:
    """Everything that could stop the fill of one affine layer half-way, checked before any fill."""
    m = op.module
    label = f"critical_init_: layer {op.target!r} ({type(m).__name__})"
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


def _check_parameters(model: nn.Module) -> None:
    """Lazy or integer parameters anywhere in the model would stop a fill half-way."""
    for name, p in model.named_parameters():
        if isinstance(p, nn.parameter.UninitializedParameter):
            owner = name.rsplit(".", 1)[0]
            raise ValueError(f"critical_init_: {owner!r} is a lazy module with uninitialised parameters; "
                             "run one forward pass first")


def _transparent(u: Unit, ops: list[Op]) -> bool:
    """A parameter-free map of gain 1 that keeps the width (reshapes, dropout, identity)."""
    return u.kind == "map" and all(ops[i].kind == SHAPE and ops[i].gain2 == 1.0 for i in u.ops)


def _choose_body(units: list[Unit], ops: list[Op]) -> tuple[int, int] | None:
    """Unit indices (first, last) of the longest run of square blocks of one width."""
    runs: list[list[int]] = []
    cur: list[int] = []
    width = None
    for i, u in enumerate(units):
        if u.counted or u.kind == "linear":
            if u.square and width is not None and u.width_in == width and cur:
                cur.append(i)
                continue
            runs.append(cur)
            cur, width = ([i], u.width_in) if u.square else ([], None)
            continue
        if _transparent(u, ops) and cur:
            cur.append(i)
            continue
        runs.append(cur)
        cur, width = [], None
    runs.append(cur)
    best, score = None, 0
    for run in runs:
        counted = [i for i in run if units[i].counted]
        if len(counted) > score:
            best, score = (counted[0], counted[-1]), len(counted)
    return best


def _any_width_body(units: list[Unit], ops: list[Op]) -> tuple[int, int] | None:
    """Without a run of equal-width blocks: the longest run of blocks of any widths."""
    best, score, cur = None, 0, []
    for i in range(len(units) + 1):
        u = units[i] if i < len(units) else None
        if u is not None and (u.counted or u.kind == "linear" or (_transparent(u, ops) and cur)):
            cur.append(i)
            continue
        counted = [j for j in cur if units[j].counted]
        if len(counted) > score:
            best, score = (counted[0], counted[-1]), len(counted)
        cur = []
    return best


def _users(ops: list[Op]) -> dict[int, list[int]]:
    out: dict[int, list[int]] = {}
    for op in ops:
        if op.live:
            for i in op.inputs:
                out.setdefault(i, []).append(op.index)
    return out


def _activation_after(i: int, ops: list[Op], users: dict[int, list[int]], inside: set[int]) -> Activation | None:
    """The activation applied to the output of op ``i`` (through reshapes), inside a block."""
    for _ in range(8):
        nxt = [j for j in users.get(i, []) if j in inside]
        if len(nxt) != 1:
            return None
        op = ops[nxt[0]]
        if op.kind == ACTIVATION:
            return op.activation
        if op.kind not in (SHAPE, NORM):
            return None
        i = nxt[0]
    return None


def _inner_sigma_w2(act: Activation | None) -> float:
    """sigma_w2 of an affine layer inside a calibrated block: the critical point of the activation
    after it at q* = 1 (the scale of a normalised signal), 1 when none follows or none exists."""
    if act is None:
        return 1.0
    try:
        return float(critical_point(act, 1.0).sigma_w2)
    except (ValueError, ArithmeticError):
        return 1.0


@dataclass
class _Fill:
    """What one affine layer application is filled with."""

    op: Op
    role: str
    activation: Activation | None
    sigma_w2: float
    sigma_b2: float
    unit: Unit
    note: str = ""


def _has_bn(u: Unit, ops: list[Op]) -> list[nn.Module]:
    out = []
    for i in u.ops:
        m = ops[i].module
        if m is not None:
            out += [c for c in m.modules() if isinstance(c, nn.modules.batchnorm._BatchNorm)]
    return out


# ------------------------------------------------------------------------------ the entry point
def critical_init_(
    model: nn.Module,
    *,
    mode: str = "critical",
    example_input: torch.Tensor | None = None,
    q_star: float | None = None,
    sigma0_2: float | None = None,
    zeta: float | None = None,
    tau: float | None = None,
    eta: float | None = None,
    weights: str = "orthogonal",
    activation: str | Activation | nn.Module | Callable | None = None,
    normalize_input: bool = False,
    strict: bool = False,
    generator: torch.Generator | int | None = None,
) -> InitReport:
    """Initialise ``model`` in place: theory where it applies, measurement where it does not.

    **Modes.** ``mode="critical"`` (the default) is the critical orthogonal initialisation of
    Pennington, Schoenholz & Ganguli (2017) described below. ``mode="dks"`` and ``mode="tat"`` are
    the kernel-shaped variants (deep kernel shaping, Martens et al. 2021; tailored activation
    transformation, Zhang et al. 2022; :mod:`isometry.torch.modes`): every layer at q = 1
    (orthogonal or delta-orthogonal weights with sigma_w2 = 1, zero biases), and the activation
    modules replaced by the shaped activation (:class:`isometry.torch.ShapedActivation`) solved by
    :func:`isometry.dks_transform` (target ``zeta``, default 1.5) or :func:`isometry.tat_transform`
    (``tau``, default 0.3; ``eta``, default 0.9, for (leaky) ReLU, whose negative slope is then
    set) for the architecture read from the graph: plain chains of critical layers and residual
    blocks ``w * x + v * phi(W x + b)`` with w^2 + v^2 = 1 (a learnable v is set to sqrt(1 - w^2)).
    Blocks the shaped theory does not cover are refused (``mode="critical"`` calibrates them).
    The report says which modules were replaced (``replaced``), carries the transform
    (``shaping``) and predicts the shaped body's spectrum (:meth:`KernelShaping.isometry`). A
    :class:`ShapedActivation` already in the model is recognised in every mode (in the shaped
    modes it is re-shaped from its base unit).

    **Inputs.** The theory describes inputs of one length: mean(x^2) = ``report.input_q`` for every
    example. An :class:`isometry.torch.InputNormalization` at the front of the model (or inserted
    there with ``normalize_input=True``, for an ``nn.Sequential``) gets ``q = input_q`` and makes
    the prediction hold for every example, whatever its scale.

    **Structure from the graph.** The model is traced with ``torch.fx`` (or, when it does not
    trace, its execution on ``example_input`` is recorded by forward hooks) and split at the cut
    points of its graph into blocks (:mod:`isometry.torch.graph`): critical layers (an affine layer
    ``Linear``/``Conv1d/2d/3d`` of any stride, groups and padding mode, followed by an activation
    module or a functional call such as ``torch.tanh``), linear layers, residual blocks
    (``x + f(x)``), normalised blocks (BatchNorm, LayerNorm, GroupNorm, RMSNorm), attention and
    transformer layers, embeddings, and parameter-free maps (pooling, flatten, reshape, dropout).
    A module applied twice counts twice (its weights are filled once: the report says so).

    **The body.** The prediction is about the Jacobian of the *body*: the longest run of blocks of
    one width (``report.body_description``; :meth:`InitReport.body` computes it, and
    :meth:`InitReport.body_input` its input). Layers before it (a stem: a width-changing input
    layer, embeddings) and after it (pooling, readout) are initialised but not part of J. ``depth``
    counts its blocks.

    **Theory.** Critical layers are set at the order-chaos critical point: q* is ``q_star``, or
    solves L (mu_2/mu_1^2 - 1) = ``sigma0_2`` (default 1/4) on the critical line over the L
    critical layers of the body (:func:`choose_critical_point`, the double-scaling rule); then
    sigma_w2 = 1 / mu_1(q*), sigma_b2 = q* - sigma_w2 E[phi(h)^2]. ``weights="orthogonal"``:
    :func:`critical_orthogonal_` (delta-orthogonal kernels for convolutions, Xiao et al. 2018);
    ``"gaussian"``: W_ij ~ N(0, sigma_w2 / fan_in); biases :func:`critical_bias_`. Affine layers
    with no activation after them are norm-preserving (sigma_w2 = 1, sigma_b2 = 0), so the model
    input should have mean(x^2) = ``report.input_q``. A parameter-free map of known gain g^2 (the
    mean eigenvalue of its J J^T: 1/k for average pooling over k positions, c^2 for a scaling by c,
    1 for max pooling, whose Jacobian selects one input per window) is compensated by the next
    critical layer's gain, so chi = 1 across it; a map of unknown gain is measured on
    ``example_input``.

    **Measurement.** Blocks the theory does not cover (residual, normalised, attention,
    transformer and unknown modules) are calibrated on ``example_input`` (a batch of model
    inputs): their inner affine layers are first set orthogonal (gain of their activation's
    critical point at q* = 1), then one knob per block (its residual branches' output layers,
    the affine weight of its normalisation, or its last affine layer) is scaled until the
    block's gradient gain chi = E|J^T u|^2/|u|^2 is 1 within ``tol`` = 1%
    (:func:`isometry.torch.calibrate.calibrate`; Jacobian-vector products with random probes,
    J never formed; at most 16 measurements per block, reported). Inside the body, block k is set
    so that the body up to block k has chi = 1 (blocks need not compose as free factors). BatchNorm running statistics
    are set to the example batch's statistics, and everything is measured in eval mode (the
    model's modes are restored afterwards). Without ``example_input`` such a block raises
    ``ValueError`` naming it. With ``example_input`` every block's q and chi are also measured
    and reported, and so is the body's spectrum (mean and variance).

    **All or nothing.** Structure, activations, parameters, the critical point, strict mode and
    memory are checked before any parameter is touched; calibration works on the model and
    restores every parameter and buffer if anything fails. Meta-device parameters are left as
    they are (the report is still built).

    **Isometry.** ``report.isometric`` follows :data:`ISOMETRY_RULE`; ``strict=True`` raises
    ``ValueError`` for a network that cannot be isometric (ReLU stacks, Gaussian weights).

    Args:
        model: the ``torch.nn.Module`` to initialise in place.
        mode: ``"critical"``, ``"dks"`` or ``"tat"``.
        example_input: one batch of inputs (a tensor), needed for calibrated blocks and for
            models ``torch.fx`` cannot trace.
        q_star: the fixed point q* > 0 (exclusive with ``sigma0_2``; ``mode="critical"``).
        sigma0_2: target variance of the eigenvalues of J J^T (default 0.25; ``mode="critical"``).
        zeta: DKS's target maximal C'_f(1) of the network, > 1 (``mode="dks"``; default 1.5).
        tau: TAT's target maximal C''_f(1), > 0 (``mode="tat"``, smooth units; default 0.3).
        eta: TAT's target maximal C_f(0) in (0, 1) (``mode="tat"``, (leaky) ReLU; default 0.9).
        weights: ``"orthogonal"`` or ``"gaussian"``.
        activation: a registry name, an :class:`isometry.Activation`, a callable phi or an
            activation module, overriding detection (and naming a parameter-free module the
            registry does not know); in the shaped modes, the unit to shape.
        normalize_input: insert an :class:`InputNormalization` at the front of an
            ``nn.Sequential`` that has none (its indices shift by one).
        strict: refuse (``ValueError``) a network that cannot be isometric.
        generator: a ``torch.Generator``, an int seed, or None (torch's global generator).

    Returns:
        The :class:`InitReport`.

    >>> from isometry.torch import mlp, critical_init_
    >>> report = critical_init_(mlp(100, 256, "tanh"), generator=0)
    >>> round(report.predicted_variance, 6), report.isometric, report.body_span
    (0.25, True, ('0', '199'))
    >>> shaped = critical_init_(mlp(16, 256, "tanh"), mode="tat", generator=0)
    >>> shaped.mode, len(shaped.replaced), round(shaped.predicted_mean, 6), shaped.shaping.activation.name
    ('tat', 16, 1.0, 'tat(tanh)')
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
    if example_input is not None:
        if not isinstance(example_input, torch.Tensor):
            raise TypeError(f"example_input must be a torch.Tensor (one batch of inputs), got "
                            f"{type(example_input).__name__}")
        if example_input.numel() == 0:
            raise ValueError(f"example_input must not be empty, got shape {tuple(example_input.shape)}")
        if example_input.is_meta:
            raise ValueError("example_input must hold numbers, not be a meta tensor")
    targets = check_mode(mode, q_star=q_star, sigma0_2=sigma0_2, zeta=zeta, tau=tau, eta=eta)
    if not isinstance(normalize_input, bool):
        raise TypeError(f"normalize_input must be a bool, got {type(normalize_input).__name__}")
    gen = as_generator(generator)
    override = _resolve_override(activation)
    inserted = _insert_normalization(model) if normalize_input else None
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        report = _initialise(model, example_input, q_star, sigma0_2, weights, override, strict, gen, mode, targets)
    except BaseException:
        if inserted is not None:
            del model[0]
        raise
    finally:
        for m, training in modes:
            m.training = training
    if inserted is not None:
        report = replace(report, notes=report.notes + (
            "InputNormalization inserted at the front of the model ('0'; the other indices shift by one)",))
    return report


def _insert_normalization(model: nn.Module) -> InputNormalization | None:
    """Put an InputNormalization first in an nn.Sequential (None when one is there already)."""
    if not (isinstance(model, nn.Sequential) and type(model).forward is nn.Sequential.forward):
        raise ValueError(
            "normalize_input=True inserts an InputNormalization at the front of an nn.Sequential; "
            f"{type(model).__name__} is not one: apply isometry.torch.InputNormalization() to the input first in its "
            "forward")
    if len(model) and isinstance(model[0], InputNormalization):
        return None
    m = InputNormalization()
    model.insert(0, m)
    return m


def _input_normalizations(structure: Structure) -> tuple[list[Op], list[Op]]:
    """The InputNormalization calls applied to the model input (through shape maps only) and the others."""
    ops = structure.ops
    front, other = [], []
    for op in ops:
        if op.kind != INPUT_NORM or not op.live:
            continue
        i, ok = op.index, False
        for _ in range(64):
            ins = [j for j in ops[i].inputs if ops[j].live]
            if len(ins) != 1:
                break
            i = ins[0]
            if ops[i].kind == INPUT:
                ok = True
                break
            if ops[i].kind != SHAPE:
                break
        (front if ok else other).append(op)
    return front, other


def _initialise(model, example_input, q_star, sigma0_2, weights, override, strict, gen, mode="critical",
                targets=None) -> InitReport:
    # ---- structure: ops, cut points, units
    _check_parameters(model)
    structure = read_structure(model, example_input, activation=override)
    ops, units = structure.ops, structure.units
    affine_ops = [op for op in ops if op.live and op.kind == AFFINE]
    if not affine_ops and not any(u.calibrated for u in units):
        raise ValueError(f"critical_init_: model ({type(model).__name__}) has no nn.Linear or nn.Conv1d/2d/3d layers")
    for op in affine_ops:
        if op.call == 0:
            _check_affine(op)
    if not any(u.counted for u in units):
        raise ValueError(
            f"critical_init_: no activation follows any affine layer of {type(model).__name__} and it has no other "
            "blocks; if it applies a nonlinearity the registry does not know, pass activation= (e.g. 'tanh')"
        )

    # ---- the body and the roles
    span = _choose_body(units, ops)
    notes: list[str] = []
    if span is None:
        span = _any_width_body(units, ops)
        notes.append("no block keeps its width (features or channels): the body's layers change width, so J is not "
                     "square and the prediction (for square layers) does not describe it")
    b0, b1 = span
    for i, u in enumerate(units):
        u.role = "stem" if i < b0 else ("body" if i <= b1 else "head")
    body_units = units[b0:b1 + 1]
    names = _unit_names(units, ops)
    splan = None
    if mode != "critical":
        splan = plan_shaping(structure, units, names, span, mode, targets or {}, override, weights)
        res_act = None
    else:
        res_act = _residual_theory_units(units, body_units, override)
    need = [(i, u) for i, u in enumerate(units) if u.calibrated]
    if need and example_input is None:
        what = ", ".join(f"{names[i]!r} ({_unit_words(u, ops)})" for i, u in need[:4])
        more = f" and {len(need) - 4} more" if len(need) > 4 else ""
        raise ValueError(
            f"critical_init_: the mean-field theory does not cover {what}{more}; pass example_input= (one batch of "
            "model inputs) to calibrate them" + (
                "; or, if a module there is a pointwise activation, pass activation=" if any(
                    "not a recognised activation" in u.note for _, u in need) else "")
        )

    # ---- one activation for the critical layers
    crit = [u for u in units if u.kind == "critical"]
    act = None
    if splan is not None:
        act, crit = splan.shaping.activation, []
    elif crit:
        act = crit[0].activation
        for u in crit[1:]:
            if not _same(u.activation, act):
                first = ops[crit[0].affine[0]].target
                raise ValueError(
                    f"critical_init_: mixed activations ({act!r} after {first!r}, {u.activation!r} after "
                    f"{ops[u.affine[0]].target!r}); the mean-field theory needs one; pass activation= to choose"
                )
    depth_crit = sum(1 for u in body_units if u.kind == "critical") or len(crit)
    depth = sum(1 for u in body_units if u.counted)
    widths = {w for u in body_units for w in (u.width_in, u.width_out)}
    width = widths.pop() if len(widths) == 1 else None

    # ---- gains of the parameter-free maps before each theory layer
    _set_pre_gains(structure, units, example_input)

    # ---- shared weights, modules applied twice, knobs
    fills, layer_notes = _plan_fills(structure, units, act, weights, shaped=splan is not None)
    knob_owner: dict[int, str] = {}
    for i, u in enumerate(units):
        if not u.calibrated:
            continue
        for k in (*u.knobs, *([u.fallback_knob] if u.fallback_knob is not None else [])):
            m = ops[k].module
            if id(m) in knob_owner and knob_owner[id(m)] != names[i]:
                raise ValueError(
                    f"critical_init_: module {ops[k].target!r} is applied in two calibrated blocks "
                    f"({knob_owner[id(m)]!r} and {names[i]!r}): scaling it for one changes the other; give each "
                    "application its own module")
            knob_owner[id(m)] = names[i]

    # ---- the critical point and the theory's predictions
    cp, choice = None, "no critical layers: every block is calibrated"
    if splan is not None:
        cp, choice = splan.point, splan.choice
        notes += splan.notes
    elif act is not None:
        cp, choice = choose_critical_point(act, depth_crit, q_star=q_star, sigma0_2=sigma0_2)
    elif res_act is not None:
        choice = "residual blocks x + a phi(W x + b) set from the residual mean field"
        if q_star is not None:
            notes.append("q_star ignored: residual blocks have no fixed point")
    elif q_star is not None or sigma0_2 is not None:
        notes.append("q_star / sigma0_2 ignored: the model has no critical layers")
    s1 = -1.0 if weights == "gaussian" else 0.0
    n_linear_body = sum(1 for u in body_units if u.kind == "linear")
    _check_memory(fills, weights, model, example_input is not None)

    # ---- strict mode is decided before anything is touched (a body of critical layers, a shaped body)
    if strict and splan is not None:
        iso = splan.body_isometry
        if weights != "orthogonal" or not iso.normalised_variance < 1.0:
            raise ValueError(f"critical_init_(strict=True): this {mode.upper()}-shaped network of depth {depth} cannot "
                             f"be isometric: {_shaped_reason(iso, weights)}")
    if strict and splan is None and act is not None and not any(u.calibrated for u in body_units) and res_act is None:
        var = _variance(act, depth_crit, cp.q_star, weights) + n_linear_body * (-s1)
        reason = _theory_reasons(act, cp, var, weights, depth_crit)
        if reason:
            raise ValueError(f"critical_init_(strict=True): {act.name} network of depth {depth_crit} cannot be "
                             f"isometric: {reason}")

    # ---- input normalisation at the front: the length the theory assumes, for every example
    fronts, others = _input_normalizations(structure)
    q_in = None
    if splan is not None or res_act is not None:
        q_in = 1.0
    elif cp is not None:
        q_in = float((cp.q_star - cp.sigma_b2) / cp.sigma_w2)
    for op in others:
        notes.append(f"{op.description} is not applied to the model input: left as it is (q = {op.module.q:.4g})")
    if fronts and q_in is None:
        notes.append("the model has no critical layers: the InputNormalization at its front is left as it is")

    # ---- fills and calibration; everything is restored if any of it fails
    snapshot = _snapshot(model) if example_input is not None else None
    undo: list = []
    old_q = [(op.module, op.module.q) for op in fronts]
    try:
        if splan is not None:
            undo = apply_shaping(splan, structure)
        if q_in is not None:
            for op in fronts:
                op.module.q = q_in
        table = _fill(fills, cp, act, weights, gen, units, ops, structure, example_input)
        plan = None
        if res_act is not None:
            plan = _plan_residual(structure, units, span, res_act, sigma0_2, weights, example_input)
            table = _apply_residual(structure, [(u, plan.branch_scale) for u in plan.units], plan.sigma_w2,
                                    plan.activation, f"residual branch x + a phi(W x), a = {plan.branch_scale:.4g}",
                                    table)
        elif splan is not None and splan.residual:
            table = _apply_residual(structure, [(r.unit, r.branch_weight) for r in splan.residual], 1.0, act,
                                    "residual branch w x + v f(x): " + ", ".join(dict.fromkeys(
                                        f"w = {r.shortcut_weight:.4g}, v = {r.branch_weight:.4g}"
                                        for r in splan.residual)), table)
        first_affine = next((ops[i].module for u in units for i in u.affine), None)
        exact = bool(fronts and q_in is not None and isinstance(first_affine, nn.Linear))
        blocks, passes, body_measure = _calibrate_and_measure(structure, units, names, cp, act, weights, example_input,
                                                              span, plan, splan, exact)
        report = _report(structure, units, names, blocks, table, cp, act, choice, weights, depth, depth_crit, width,
                         n_linear_body, s1, body_measure, passes, span, notes + layer_notes, plan, splan,
                         tuple(str(op.target) for op in fronts) if q_in is not None else ())
        if strict and not report.isometric:
            raise ValueError(f"critical_init_(strict=True): this network of depth {depth} cannot be isometric: "
                             f"{report.reason}")
    except BaseException:
        if snapshot is not None:
            _restore(model, snapshot)
        undo_shaping(undo)
        for m, q in old_q:
            m.q = q
        raise
    return report


def _shaped_reason(iso, weights: str) -> str:
    """Why a shaped body is not isometric ("" when it is)."""
    if weights != "orthogonal":
        return (f"{weights} weights: the relative variance of the eigenvalues of J J^T is "
                f"{iso.normalised_variance:.4g}; use weights='orthogonal'")
    if not iso.normalised_variance < 1.0:
        return (f"predicted relative variance Var/E^2 = {iso.normalised_variance:.4g} >= 1: the shaped kernel stays "
                f"near linear, but the spread of J J^T adds up over the {iso.depth} nonlinear layers (per layer "
                f"{iso.normalised_variance / max(iso.depth, 1):.3g})")
    return ""


def _unit_names(units: list[Unit], ops: list[Op]) -> dict[int, str]:
    """Readable, distinct block names: two blocks inside one module (a transformer block's attention and
    feed-forward residuals) get the path of their knob below the module's."""
    names = {i: unit_name(u, ops) for i, u in enumerate(units)}
    counts: dict[str, int] = {}
    for n in names.values():
        counts[n] = counts.get(n, 0) + 1
    for i, u in enumerate(units):
        n = names[i]
        if counts[n] > 1 and u.knobs:
            knob = str(ops[u.knobs[0]].label)
            names[i] = f"{n}/{knob[len(n) + 1:]}" if knob.startswith(n + ".") else f"{n}/{knob}"
    return names


# ------------------------------------------------------------------------------ residual theory
def _residual_theory_units(units: list[Unit], body_units: list[Unit], override) -> Activation | None:
    """The activation of a body made of residual blocks x + a phi(W x + b) only (the theory of
    :func:`isometry.residual_spectrum`); any other residual block is calibrated."""
    counted = [u for u in body_units if u.counted]
    act = None
    for u in units:  # the theory is of x + a phi(W x + b): a scaled shortcut is calibrated
        if u.theory is not None and u.skip_gain2 != 1.0:
            u.theory = None
    ok = bool(counted) and all(u.kind == "residual" and u.theory is not None for u in counted)
    if ok:
        acts = [override if override is not None else u.activation for u in counted]
        act = acts[0]
        ok = all(_same(a, act) for a in acts[1:])
    for u in units:
        if not ok or u not in counted:
            u.theory = None
    return act if ok else None


@dataclass
class _ResidualPlan:
    activation: Activation
    depth: int
    branch_scale: float
    sigma_w2: float
    q0: float
    target: float
    how: str
    mean_field: Any
    units: list[Unit]


def _plan_residual(structure: Structure, units: list[Unit], span, act: Activation, sigma0_2, weights: str,
                   example_input) -> _ResidualPlan:
    """Branch scale a and weight variance sigma_w2 of the residual blocks for the target variance.

    A learnable scalar on every branch (x + alpha phi(W x + b)) takes a from
    :func:`isometry.residual_branch_scale` with sigma_w2 = 1; a fixed scale (a constant, or none: 1)
    keeps a and solves the residual mean field for sigma_w2. Biases are 0. q0 is the mean squared
    coordinate of the body's input on ``example_input`` (1 without it)."""
    from scipy.optimize import brentq

    from ..residual import residual_branch_scale, residual_mean_field

    ops = structure.ops
    theory = [u for u in units if u.theory is not None]
    L = len(theory)
    target = DEFAULT_SIGMA0_2 if sigma0_2 is None else sigma0_2
    q0 = 1.0
    if example_input is not None:
        z = _value_at(structure, units[span[0]].start)
        if isinstance(z, torch.Tensor) and torch.is_floating_point(z):
            q0 = float(z.detach().double().pow(2).mean())
    scales = []
    for u in theory:
        k = u.theory[2]
        if k is None:
            scales.append(("none", 1.0))
        elif scale_parameter(ops[k], ops) is not None:
            scales.append(("parameter", float("nan")))
        else:
            scales.append(("constant", math.sqrt(ops[k].gain2)))
    kinds = {k for k, _ in scales}
    if kinds == {"parameter"}:
        a = float(residual_branch_scale(act, L, sigma0_2=target, sigma_w2=1.0, sigma_b2=0.0, q0=q0, weights=weights))
        sw2, how = 1.0, f"branch scales set to a = {a:.4g} (residual_branch_scale), sigma_w2 = 1"
    else:
        consts = {round(c, 12) for _, c in scales}
        if len(consts) != 1:
            raise ValueError("critical_init_: the residual blocks scale their branches differently; give them one scale "
                             "(a constant or a learnable parameter on every branch)")
        a = float(consts.pop())

        def excess(log_sw2: float) -> float:
            mf = residual_mean_field(act, L, branch_scale=a, sigma_w2=math.exp(log_sw2), sigma_b2=0.0, q0=q0)
            return mf.normalised_variance(weights) - target

        grid = np.linspace(math.log(1e-6), math.log(1e4), 61)
        vals = []
        for g in grid:
            try:
                vals.append(excess(float(g)))
            except ValueError:
                vals.append(float("nan"))
        root = None
        for i in range(len(grid) - 1):
            if np.isfinite(vals[i]) and np.isfinite(vals[i + 1]) and vals[i] * vals[i + 1] <= 0:
                root = brentq(excess, grid[i], grid[i + 1], xtol=1e-13, rtol=1e-13)
                break
        if root is None:
            raise ValueError(f"critical_init_: no sigma_w2 in [1e-6, 1e4] gives residual blocks with branch scale {a:g} "
                             f"the variance sigma0_2 = {target:g}")
        sw2, how = math.exp(root), f"branch scale a = {a:.4g} fixed by the model; sigma_w2 = {math.exp(root):.4g} solved"
    mf = residual_mean_field(act, L, branch_scale=a, sigma_w2=sw2, sigma_b2=0.0, q0=q0)
    return _ResidualPlan(act, L, a, sw2, q0, target, how, mf, theory)


def _apply_residual(structure: Structure, blocks: list[tuple[Unit, float]], sigma_w2: float, act: Activation,
                    note: str, table: list[LayerInit]) -> list[LayerInit]:
    """Scale the (orthogonal, gain 1) branch weights of the residual ``blocks`` to sigma_w2, zero their
    biases, set learnable branch scales to the block's value; the layer table follows."""
    ops = structure.ops
    done: set[int] = set()
    targets = {}
    with torch.no_grad():
        for u, value in blocks:
            affines, _, k = u.branch
            for aff in affines:
                m = ops[aff].module
                targets[str(ops[aff].target)] = True
                if id(m.weight) not in done and not m.weight.is_meta and sigma_w2 != 1.0:
                    m.weight.mul_(math.sqrt(sigma_w2))
                done.add(id(m.weight))
                if m.bias is not None and not m.bias.is_meta:
                    m.bias.zero_()
            if k is not None:
                param = scale_parameter(ops[k], ops)
                if param is not None:
                    p = structure.model.get_parameter(param[0]) if "." in param[0] or hasattr(
                        structure.model, param[0]) else None
                    if p is not None and id(p) not in done and not p.is_meta:
                        p.fill_(value)
                        done.add(id(p))
    out = []
    for layer in table:
        if layer.name in targets and layer.role == "block":
            gain = math.sqrt(sigma_w2) * (layer.gain if layer.method != "gaussian" else 1.0)
            layer = replace(layer, role="branch", activation=_act_label(act), sigma_w2=sigma_w2, sigma_b2=0.0,
                            gain=gain, note=note)
        out.append(layer)
    return out


def _theory_reasons(act: Activation, cp, var: float, weights: str, depth: int, *, homogeneous: bool = True) -> str:
    """Why a body of critical layers cannot be isometric ("" when it can)."""
    reasons = []
    if weights == "gaussian":
        reasons.append(f"Gaussian weights: sigma^2_JJT >= L = {depth} at every q*; use weights='orthogonal'")
    if homogeneous and act.homogeneous and var > 0:
        reasons.append(
            f"{act.name} is positively homogeneous: the per-layer variance {_variance(act, 1, cp.q_star):.4g} is the "
            f"same at every q*, so sigma^2_JJT grows like L ({var:.4g} here) whatever the initialisation")
    if not reasons and not var < 1.0:
        reasons.append(f"predicted sigma^2_JJT = {var:.4g} >= 1 at the chosen q* (see choice)")
    return "; ".join(reasons)


def _unit_words(u: Unit, ops: list[Op]) -> str:
    if u.note and "not a recognised activation" in u.note:
        return u.note
    mods = [type(ops[i].module).__name__ for i in u.ops if ops[i].module is not None]
    kinds = {"residual": "a residual block", "transformer": "a transformer layer", "attention": "attention",
             "normalised": "a normalised layer", "norm": "a normalisation", "module": "a module"}
    inner = ", ".join(dict.fromkeys(mods))
    return kinds.get(u.kind, u.kind) + (f" of {inner}" if inner else "")


def _set_pre_gains(structure: Structure, units: list[Unit], example_input) -> None:
    """``pre_gain2`` of every theory layer: the product of the gains^2 of the parameter-free maps
    since the previous layer or block (measured on ``example_input`` when not known)."""
    ops = structure.ops
    acc: float | None = 1.0
    unknown: Op | None = None
    for u in units:
        if u.kind == "map":
            for i in u.ops:
                op = ops[i]
                if op.kind in (SHAPE, SCALE, AVG_POOL, MAX_POOL):
                    if op.gain2 is None and example_input is not None:
                        op.gain2 = _measured_gain2(structure, u)
                    if op.gain2 is None:
                        unknown = op
                        acc = None
                    elif acc is not None:
                        acc *= op.gain2
            continue
        if u.kind in ("critical", "linear"):
            if acc is None:
                if u.kind == "critical" or u.role == "body":
                    raise ValueError(
                        f"critical_init_: the gain of {unknown.description} before layer {ops[u.affine[0]].target!r} "
                        "depends on the feature-map size; pass example_input= so that it can be measured")
                acc = 1.0
            u.pre_gain2 = acc
        acc, unknown = 1.0, None


def _measured_gain2(structure: Structure, u: Unit) -> float | None:
    from .body import Segment

    ex = structure.example_input
    if not torch.is_floating_point(ex):
        return None
    z = _value_at(structure, u.start)
    if not isinstance(z, torch.Tensor) or not torch.is_floating_point(z):
        return None
    m = measure(Segment(structure.model, structure, u.start, u.end), z, n_probes=4,
                generator=torch.Generator().manual_seed(0), spread=False)
    return m.chi if math.isfinite(m.chi) and m.chi > 0 else None


def _value_at(structure: Structure, index: int):
    from .body import run_ops

    with torch.no_grad():
        return run_ops(structure, structure.example_input, start=0, end=index)


def _plan_fills(structure: Structure, units: list[Unit], act: Activation | None, weights: str, shaped: bool = False):
    """One :class:`_Fill` per affine layer application; the first application of a module (or of a
    tied weight) decides its fill, later ones are noted."""
    ops = structure.ops
    users = _users(ops)
    fills: list[_Fill] = []
    notes: list[str] = []
    first_critical_body = next((u for u in units if u.kind == "critical" and u.role == "body"), None)
    for u in units:
        inside = set(u.ops)
        for i in u.affine:
            op = ops[i]
            if u.kind == "critical":
                role = "stem" if u.role == "stem" else (
                    "readout" if u.role == "head" else ("input" if u is first_critical_body else "hidden"))
                fills.append(_Fill(op, role, u.activation, float("nan"), float("nan"), u, u.note))
            elif u.kind == "linear":
                role = {"stem": "stem", "body": "linear", "head": "readout"}[u.role]
                fills.append(_Fill(op, role, None, 1.0, 0.0, u))
            elif u.theory is not None or (shaped and u.branch is not None):
                fills.append(_Fill(op, "block", u.activation, 1.0, 0.0, u))
            else:
                inner = _activation_after(i, ops, users, inside)
                fills.append(_Fill(op, "block", inner, _inner_sigma_w2(inner), 0.0, u,
                                   "inside a calibrated block: rescaled by calibration"))
    # shared weights: applied twice, or tied between modules
    seen_module: dict[int, _Fill] = {}
    seen_param: dict[int, str] = {}
    for f in fills:
        m = f.op.module
        if id(m) in seen_module:
            first = seen_module[id(m)]
            f.note = "; ".join(x for x in (f.note, f"application {f.op.call + 1} of {f.op.target!r}: the same "
                                                   "weights (filled once, for its first application)") if x)
            notes.append(f"{f.op.target!r} is applied {f.op.call + 1} times: each application counts as a layer; its "
                         "weights are filled once (orthogonal weights used twice keep the free-probability "
                         "prediction: conjugations by powers of a Haar matrix are asymptotically free)")
            if first.role != f.role or first.sigma_w2 != f.sigma_w2:
                f.note += f" (this application alone would be set as {f.role})"
            continue
        seen_module[id(m)] = f
        for pname in ("weight", "bias"):
            p = m._parameters.get(pname)
            if p is None:
                continue
            if id(p) in seen_param:
                f.note = "; ".join(x for x in (f.note, f"{pname} tied to {seen_param[id(p)]}: filled once, "
                                                       f"for {seen_param[id(p)]}") if x)
                notes.append(f"{f.op.target}.{pname} is tied to {seen_param[id(p)]}: initialised once, as "
                             f"{seen_param[id(p)]}")
            else:
                seen_param[id(p)] = f"{f.op.target}.{pname}"
    return fills, list(dict.fromkeys(notes))


def _check_memory(fills: list[_Fill], weights: str, model: nn.Module, snapshot: bool) -> None:
    """The largest temporary of the fills (and a copy of the parameters when calibrating) must fit."""
    need, where = 0, None
    for f in fills:
        w = f.op.module.weight
        if w.is_meta:
            continue
        groups = getattr(f.op.module, "groups", 1)
        if weights == "orthogonal":
            b = _sample_bytes(tuple(w.shape), groups, _work_dtype(w))
        else:
            b = 2 * w.numel() * (8 if _work_dtype(w) == torch.float64 else 4)
        if b > need:
            need, where = b, f
    if where is not None:
        check_fits(need, f"critical_init_ of layer {where.op.target!r} with weight {tuple(where.op.module.weight.shape)}",
                   "initialise this layer by hand, or on a machine with more memory")
    if snapshot:
        total = sum(t.numel() * t.element_size() for t in (*model.parameters(), *model.buffers()) if not t.is_meta)
        check_fits(total, "critical_init_ with example_input (a copy of the parameters to restore on failure)",
                   "initialise without example_input or on a machine with more memory")


def _snapshot(model: nn.Module) -> list[tuple[torch.Tensor, torch.Tensor]]:
    seen, out = set(), []
    for t in (*model.parameters(), *model.buffers()):
        if id(t) in seen or t.is_meta:
            continue
        seen.add(id(t))
        out.append((t, t.detach().clone()))
    return out


def _restore(model: nn.Module, snapshot) -> None:
    with torch.no_grad():
        for t, saved in snapshot:
            t.copy_(saved)


# ------------------------------------------------------------------------------ fills
def _fill_weight(w: torch.Tensor, sigma_w2: float, groups: int, weights: str, gen) -> float:
    if weights == "orthogonal":
        return _fill_orthogonal(w, sigma_w2, groups, gen)
    return _fill_normal(w, sigma_w2, gen)


def _fill(fills: list[_Fill], cp, act, weights: str, gen, units, ops, structure, example_input) -> list[LayerInit]:
    """Fill every affine layer (first application of each weight), then the modules inside
    calibrated blocks (attention, transformer layers, normalisations) and embeddings."""
    table = []
    done: set[int] = set()
    for f in fills:
        m = f.op.module
        w = m.weight
        groups = getattr(m, "groups", 1)
        if f.unit.kind == "critical":
            sw2, sb2 = cp.sigma_w2, cp.sigma_b2
        else:
            sw2, sb2 = f.sigma_w2, f.sigma_b2
        note = f.note
        if f.unit.kind in ("critical", "linear") and f.unit.pre_gain2 != 1.0 and (
                f.unit.kind == "critical" or f.unit.role == "body"):
            sw2 = sw2 / f.unit.pre_gain2
            note = "; ".join(x for x in (note, f"gain compensates the maps before it (g^2 = {f.unit.pre_gain2:.4g})")
                             if x)
        is_conv = not isinstance(m, nn.Linear)
        full = is_conv and f.unit.role == "stem" and weights == "orthogonal"
        if full:
            method = "orthogonal"
            gain = _orthogonal_gain(sw2, w.shape[0] // groups, int(math.prod(w.shape[1:])))
            note = "; ".join(x for x in (note, "stem convolution: orthogonal over its whole fan-in, so every output "
                                               "mixes all taps and the body's input lengths vary little from position "
                                               "to position") if x)
        elif weights == "orthogonal":
            method = "delta-orthogonal" if is_conv else "orthogonal"
            gain = _orthogonal_gain(sw2, w.shape[0] // groups, w.shape[1])
        else:
            method, gain = "gaussian", math.sqrt(sw2)
        if is_conv and not full and any(st != 1 for st in tuple(m.stride)):
            note = "; ".join(x for x in (note, "stride > 1: the delta kernel keeps one position per output (a "
                                               "co-isometry when channels do not grow)") if x)
        unit_act = act if f.unit.kind == "critical" else f.activation
        table.append(LayerInit(f.op.target, type(m).__name__, f.role, tuple(w.shape),
                               _act_label(unit_act) if unit_act is not None else None, method, sw2, sb2, gain, note))
        first_use = id(w) not in done
        done.add(id(w))
        if first_use and full:
            _fill_full_orthogonal(w, sw2, groups, gen)
        elif first_use:
            _fill_weight(w, sw2, groups, weights, gen)
        b = m.bias
        if b is not None and id(b) not in done:
            done.add(id(b))
            _fill_bias(b, sb2 if f.unit.kind in ("critical",) else 0.0, gen)
    _fill_inner_modules(units, ops, weights, gen, done, cp, structure)
    return table


def _fill_inner_modules(units, ops, weights, gen, done: set[int], cp, structure) -> None:
    for u in units:
        for i in u.ops:
            m = ops[i].module
            if m is None or ops[i].call:
                continue
            for sub in m.modules():
                if isinstance(sub, nn.MultiheadAttention):
                    _fill_attention(sub, weights, gen, done)
                elif isinstance(sub, NORM_TYPES):
                    with torch.no_grad():
                        if isinstance(getattr(sub, "weight", None), torch.Tensor) and id(sub.weight) not in done:
                            sub.weight.fill_(1.0)
                            done.add(id(sub.weight))
                        if isinstance(getattr(sub, "bias", None), torch.Tensor) and id(sub.bias) not in done:
                            sub.bias.zero_()
                            done.add(id(sub.bias))
            if isinstance(m, nn.TransformerEncoderLayer):
                inner = _layer_activation(m.activation)
                for lin, sw2 in ((m.linear1, _inner_sigma_w2(inner)), (m.linear2, 1.0)):
                    if id(lin.weight) not in done:
                        _fill_weight(lin.weight, sw2, 1, weights, gen)
                        done.add(id(lin.weight))
                    if lin.bias is not None and id(lin.bias) not in done:
                        _fill_bias(lin.bias, 0.0, gen)
                        done.add(id(lin.bias))
            if isinstance(m, nn.Embedding) and id(m.weight) not in done:
                q = _embedding_q(u, units, cp)
                with torch.no_grad():
                    if not m.weight.is_meta:
                        z = torch.randn(tuple(m.weight.shape), generator=gen, dtype=_work_dtype(m.weight))
                        m.weight.copy_((math.sqrt(q) * z).to(m.weight.dtype))
                        if m.padding_idx is not None:
                            m.weight[m.padding_idx].zero_()
                done.add(id(m.weight))


def _embedding_q(u: Unit, units: list[Unit], cp) -> float:
    """Embeddings feed the next block at its input scale: input_q before a critical layer, 1 otherwise."""
    after = units[units.index(u) + 1:]
    nxt = next((v for v in after if v.kind != "map"), None)
    if nxt is not None and nxt.kind == "critical" and cp is not None:
        return float((cp.q_star - cp.sigma_b2) / cp.sigma_w2)
    return 1.0


def _layer_activation(fn) -> Activation | None:
    if isinstance(fn, nn.Module):
        det = detect_activation(fn)
        return det[0] if det else None
    mod = functional_activation_module(fn)
    if mod is None:
        return None
    det = detect_activation(mod)
    return det[0] if det else None


def _fill_attention(mha: nn.MultiheadAttention, weights: str, gen, done: set[int]) -> None:
    """Orthogonal query, key, value and output projections (gain 1), zero biases."""
    e = mha.embed_dim
    if mha._qkv_same_embed_dim:
        w = mha.in_proj_weight
        if id(w) not in done:
            for k in range(3):
                _fill_weight(w[k * e:(k + 1) * e], 1.0, 1, weights, gen)
            done.add(id(w))
    else:
        for w in (mha.q_proj_weight, mha.k_proj_weight, mha.v_proj_weight):
            if id(w) not in done:
                _fill_weight(w, 1.0, 1, weights, gen)
                done.add(id(w))
    if mha.in_proj_bias is not None and id(mha.in_proj_bias) not in done:
        _fill_bias(mha.in_proj_bias, 0.0, gen)
        done.add(id(mha.in_proj_bias))
    if id(mha.out_proj.weight) not in done:
        _fill_weight(mha.out_proj.weight, 1.0, 1, weights, gen)
        done.add(id(mha.out_proj.weight))
    if mha.out_proj.bias is not None and id(mha.out_proj.bias) not in done:
        _fill_bias(mha.out_proj.bias, 0.0, gen)
        done.add(id(mha.out_proj.bias))


# ------------------------------------------------------------------------------ calibration
def _calibrate_and_measure(structure: Structure, units, names, cp, act, weights, example_input, span, plan=None,
                           splan=None, normalised_input: bool = False):
    """Calibrate the blocks the theory does not cover, in order, each on its actual input; measure
    every block (with ``example_input``). Returns the block table, the passes and the body's measure.
    A stem is scaled on ``example_input`` unless ``normalised_input``: an InputNormalization in front
    of a Linear stem already puts every example at the length the theory assumes (a convolution's
    positions still spread around it, so a convolutional stem is scaled)."""
    from .body import Segment

    ops = structure.ops
    blocks: list[BlockInit] = []
    passes = 0
    body_measure = None
    stem_scale = None
    if example_input is not None and cp is not None and not normalised_input:
        stem_scale = _scale_stem(structure, units, cp, act, span, refine_chi=splan is None)
        if stem_scale is not None:
            passes += stem_scale[1]
    z = example_input
    values: dict[int, Any] = {0: z}
    body_start = units[span[0]].start
    n_res = max(1, sum(1 for u in units if u.kind in ("residual", "transformer") and u.role == "body"))
    k_res = 0
    for i, u in enumerate(units):
        seg = Segment(structure.model, structure, u.start, u.end) if example_input is not None else None
        x_in = values.get(u.start) if example_input is not None else None
        measurable = isinstance(x_in, torch.Tensor) and torch.is_floating_point(x_in)
        after = cumulative = None
        cal = None
        if u.calibrated and example_input is not None:
            if not measurable:
                raise ValueError(f"critical_init_: the input of block {names[i]!r} is not a floating-point tensor; "
                                 "it cannot be calibrated")
            bns = _has_bn(u, ops)

            def refresh(seg=seg, bns=bns, x_in=x_in):
                refresh_norm_statistics(bns, seg, x_in)

            refresh()
            knob = Knob([t for k in u.knobs for t in knob_tensors(ops[k].module)],
                        "+".join(str(ops[k].target) for k in u.knobs) or "-")
            fb = _fallback_knob(u, ops)
            if knob:
                # in the body, the gain of the body up to this block is set (blocks need not be free)
                target_fn, target_x = seg, x_in
                if u.role == "body" and u.start != body_start:
                    target_fn = Segment(structure.model, structure, body_start, u.end)
                    target_x = values[body_start]
                k_res += u.kind in ("residual", "transformer") and u.role == "body"
                cal = calibrate(target_fn, target_x, knob, residual=u.kind in ("residual", "transformer"),
                                refresh=refresh, fallback=fb, growth=RESIDUAL_GROWTH / n_res,
                                floor=(1 + RESIDUAL_GROWTH / n_res) ** k_res if u.role == "body" else None,
                                seed=1000 + i)
                passes += cal.passes
                if u.role == "body":
                    cumulative = cal.after
            after = measure(seg, x_in, generator=torch.Generator().manual_seed(1000 + i))
        elif example_input is not None and measurable and u.kind != "embedding":
            after = measure(seg, x_in, generator=torch.Generator().manual_seed(1000 + i),
                            spread=u.kind in ("critical", "linear"))
        q_pre = float("nan")
        if example_input is not None and u.kind == "critical" and measurable:
            pre = Segment(structure.model, structure, u.start, u.affine[0])
            with torch.no_grad():
                h = pre(x_in)
            q_pre = float(h.double().pow(2).mean())
        if example_input is not None:
            with torch.no_grad():
                values[u.end] = seg(x_in)
        row = _block_row(u, names[i], ops, cp, act, weights, after, cal, q_pre, cumulative, plan, splan)
        if stem_scale is not None and stem_scale[2] in u.affine:
            s_factor, n_pass, _, ok, q_seen, what = stem_scale
            row = replace(row, method="calibrated", gain=row.gain * s_factor if math.isfinite(row.gain) else s_factor,
                          knob=f"{ops[stem_scale[2]].target}.weight", passes=n_pass, converged=ok,
                          note="; ".join(x for x in (row.note, f"scaled by {s_factor:.4g} so that {what} on "
                                                               f"example_input (first critical layer's q was "
                                                               f"{q_seen:.4g})") if x))
        blocks.append(row)
    if example_input is not None:
        (b0, b1) = span
        start, end = units[b0].start, units[b1].end
        z = values.get(start)
        if isinstance(z, torch.Tensor) and torch.is_floating_point(z):
            body_measure = measure(Segment(structure.model, structure, start, end), z,
                                   generator=torch.Generator().manual_seed(7), n_probes=16)
    return blocks, passes, body_measure


def _fallback_knob(u: Unit, ops: list[Op]) -> Knob | None:
    """The affine weight (and bias) of the normalisation that ends a block: scaling it scales the
    block's Jacobian, so chi by its square."""
    if u.fallback_knob is None:
        return None
    m = ops[u.fallback_knob].module
    if isinstance(m, nn.TransformerEncoderLayer):
        m, label = m.norm2, f"{ops[u.fallback_knob].target}.norm2"
    else:
        label = str(ops[u.fallback_knob].target)
    if not isinstance(getattr(m, "weight", None), torch.Tensor):
        return None
    return Knob([m.weight, getattr(m, "bias", None)], label)


def _scale_stem(structure: Structure, units: list[Unit], cp, act, span, refine_chi: bool = True) -> tuple | None:
    """Scale the first affine layer, when it is in the stem, so that the first critical layer's
    pre-activation has q = q* on the example input (the data's scale is absorbed by the stem, as
    the theory's ``input_q`` asks); then, for a body of critical layers of a unit that is not
    positively homogeneous (and ``refine_chi``), refine the scale until the body's measured chi is 1: the theory
    assumes every input (and every position of a feature map) at exactly q*, and real inputs
    spread around it (lengths vary from example to example and position to position, zero padding
    shortens the borders), which moves the mean eigenvalue (Jensen). Returns (factor, passes, op,
    converged, q before, what was targeted) or None."""
    from .body import Segment

    ops = structure.ops
    first = next((u for u in units if u.affine), None)
    if first is None or first.role != "stem":
        return None
    target_unit = next((u for u in units[units.index(first):] if u.kind == "critical"), None)
    ex = structure.example_input
    if target_unit is None or not torch.is_floating_point(ex):
        return None
    op = ops[first.affine[0]]
    knob = Knob([op.module.weight], f"{op.target}.weight")
    pre = Segment(structure.model, structure, 0, target_unit.affine[0])
    passes = 0

    def q_at(s: float) -> float:
        nonlocal passes
        knob.set(s)
        passes += 1
        with torch.no_grad():
            return float(pre(ex).double().pow(2).mean())

    q0 = q_at(1.0)
    s, _, ok = solve_scale(q_at, 1.0, q0, cp.q_star, STEM_TOLERANCE, 10)
    knob.set(s)
    what = "q = q*"
    b0, b1 = span
    body = units[b0:b1 + 1]
    if (ok and refine_chi and not act.homogeneous and all(u.kind in ("critical", "linear") for u in body)
            and units.index(first) < b0):
        to_body = Segment(structure.model, structure, 0, units[b0].start)
        seg = Segment(structure.model, structure, units[b0].start, units[b1].end)

        def chi_at(v: float) -> float:
            nonlocal passes
            knob.set(v)
            passes += 1
            with torch.no_grad():
                z = to_body(ex)
            return measure(seg, z, n_probes=4, generator=torch.Generator().manual_seed(3), spread=False).chi

        c = chi_at(s)
        s2, _, ok2 = solve_scale(chi_at, s, c, 1.0, STEM_TOLERANCE, 8, slope0=-1.0)
        if ok2:
            s, what = s2, "the body's chi = 1"
        knob.set(s)
    return s, passes, op.index, ok, q0, what


def _block_row(u: Unit, name: str, ops, cp, act, weights, after: Measure | None, cal, q_pre: float,
               cumulative: Measure | None, plan: _ResidualPlan | None = None, splan=None) -> BlockInit:
    nan = float("nan")
    modules = tuple(dict.fromkeys(str(ops[i].target) for i in u.ops if ops[i].op == "call_module"))
    s1 = -1.0 if weights == "gaussian" else 0.0
    q_in = after.q_in if after is not None else nan
    chi_m = after.chi if after is not None else nan
    chi_se = after.chi_se if after is not None else nan
    var_m = after.variance if after is not None else nan
    if u.kind == "critical":
        gain = math.sqrt(cp.sigma_w2 / u.pre_gain2)
        chi = 1.0 if splan is None else cp.chi
        return BlockInit(name, u.kind, u.role, "theory", modules, q_in, cp.q_star, q_pre, chi, chi_m, chi_se,
                         cp.mu2 / cp.mu1**2 - 1.0 - s1, var_m, gain, note=u.note,
                         variance_se=after.variance_se if after else nan)
    if u.kind == "residual" and u.branch is not None and splan is not None:
        r = next(r for r in splan.residual if r.unit is u)
        block = splan.shaping.isometry(subnet=ResidualChain(1, r.shortcut_weight, branch_depth=r.branch_depth,
                                                            residual_weight=r.branch_weight), weights=weights)
        return BlockInit(name, u.kind, u.role, "theory", modules, q_in, 1.0, after.q_out if after is not None else nan,
                         block.mean, chi_m, chi_se, block.normalised_variance, var_m, r.branch_weight, knob="",
                         note=f"w x + v f(x), w = {r.shortcut_weight:.4g}, v = {r.branch_weight:.4g}, f with "
                              f"{r.branch_depth} nonlinear layer(s)",
                         variance_se=after.variance_se if after else nan)
    if u.theory is not None and plan is not None:
        from ..residual import _block_variances

        mf, idx = plan.mean_field, plan.units.index(u)
        c = mf.branch_gain
        v = _block_variances(c, mf.mu1, mf.mu2, s1)
        return BlockInit(name, u.kind, u.role, "theory", modules, q_in, float(mf.second_moment[idx + 1]),
                         after.q_out if after is not None else nan, float(1.0 + c[idx]), chi_m, chi_se, float(v[idx]),
                         var_m, plan.branch_scale, knob="", note=plan.how, variance_se=after.variance_se if after else nan)
    if u.kind == "linear":
        comp = u.pre_gain2 if u.role == "body" else 1.0
        return BlockInit(name, u.kind, u.role, "theory", modules, q_in, nan, after.q_out if after else nan,
                         1.0 if u.role == "body" else nan, chi_m, chi_se, -s1, var_m, math.sqrt(1.0 / comp))
    if u.calibrated:
        q_out = after.q_out if after is not None else nan
        if cal is not None:
            chi_pred = 1.0 if cumulative is not None else cal.target
            note = "; ".join(x for x in (u.note, cal.note) if x)
            if cumulative is not None:
                note = "; ".join(x for x in (note, f"calibrated so that the body up to here has chi = "
                                                   f"{cal.target:.4g} (measured {cumulative.chi:.4g})") if x)
            return BlockInit(name, u.kind, u.role, "calibrated", modules, q_in, q_in, q_out, chi_pred, chi_m, chi_se,
                             var_m, var_m, cal.scale, cal.knob, cal.passes, cal.converged, note, after.variance_se,
                             cumulative.chi if cumulative is not None else nan)
        return BlockInit(name, u.kind, u.role, "calibrated", modules, q_in, q_in, q_out, 1.0, chi_m, chi_se, var_m,
                         var_m, 1.0, "", 0, False, "; ".join(x for x in (u.note, "no parameters to scale") if x),
                         after.variance_se if after else nan)
    gain2 = math.prod(ops[i].gain2 for i in u.ops if ops[i].gain2 is not None) if all(
        ops[i].gain2 is not None for i in u.ops) else nan
    kinds = {ops[i].kind for i in u.ops}
    note = u.note
    if MAX_POOL in kinds:
        note = "; ".join(x for x in (note, "max pooling: gain 1 (its Jacobian selects one input per window); the "
                                           "shift of the forward signal (a maximum is biased) is not modelled") if x)
    return BlockInit(name, u.kind, u.role, "fixed", modules, q_in, nan, after.q_out if after else nan, gain2,
                     chi_m, chi_se, 0.0, var_m, math.sqrt(gain2) if math.isfinite(gain2) else nan, note=note)


# ------------------------------------------------------------------------------ the report
def _report(structure, units, names, blocks, table, cp, act, choice, weights, depth, depth_crit, width, n_linear,
            s1, body_measure, passes, span, notes, plan: _ResidualPlan | None = None, splan=None,
            normalised: tuple[str, ...] = ()) -> InitReport:
    ops = structure.ops
    b0, b1 = span
    body_blocks = blocks[b0:b1 + 1]
    calibrated = [b for b in body_blocks if b.method == "calibrated"]
    nan = float("nan")
    reasons: list[str] = []
    if splan is not None:
        iso = splan.body_isometry
        mean, var, top = iso.mean, iso.variance, iso.s_max
        a_rule, se2 = 0.1, 0.0
        prediction = "theory (shaped)" if isinstance(splan.body_subnet, Chain) else "theory (shaped residual)"
    elif plan is not None:
        mf = plan.mean_field
        mean = math.exp(mf.log_mean())
        var = mf.normalised_variance(weights) * mean**2
        top = nan
        try:
            from ..spectrum.residual import residual_spectrum

            with np.errstate(all="ignore"):
                lam = float(residual_spectrum(plan.activation, plan.depth, branch_scale=plan.branch_scale,
                                              sigma_w2=plan.sigma_w2, q0=plan.q0, weights=weights).max_eigenvalue)
            top = math.sqrt(lam) if math.isfinite(lam) and lam >= 0 else nan
        except (ValueError, ArithmeticError):
            pass
        a_rule, se2 = 0.1, 0.0
        prediction = "theory (residual)"
    elif not calibrated and act is not None:
        var = _variance(act, depth_crit, cp.q_star, weights) + n_linear * (-s1)
        mean, top, why = _predicted_mean_and_max(act, cp, depth_crit, weights)
        if why:
            notes = list(notes) + [why]
        if n_linear:
            top = nan
        a_rule, se2 = 0.1, 0.0
        prediction = "theory"
    else:
        # blocks need not be free: the body calibrated as a whole is measured as a whole
        bm = body_measure
        mean = bm.chi if bm is not None else nan
        var = bm.variance * bm.chi**2 if bm is not None else nan
        se2 = (bm.variance_se * bm.chi**2) ** 2 if bm is not None else 0.0
        top = nan
        a_rule = 0.35
        prediction = "measured on example_input"
    tol = var * (a_rule + 3.0 * math.sqrt(2.0 / width)) + 2.0 * math.sqrt(se2) if width else nan
    rel = var / mean**2 if math.isfinite(mean) and mean > 0 else nan  # Var / E^2 of the eigenvalues of J J^T
    l_gauss = sum(1 for b in body_blocks if b.kind in ("critical", "linear")) if weights == "gaussian" else 0
    fluct = (3.0 * rel - l_gauss) / width if width else nan
    reliable = bool(math.isfinite(fluct) and fluct <= FLUCTUATION_LIMIT)
    if splan is not None:
        r = _shaped_reason(splan.body_isometry, weights)
        if r:
            reasons.append(r)
    elif act is not None:
        r = _theory_reasons(act, cp, rel, weights, depth_crit, homogeneous=not calibrated)
        if r:
            reasons.append(r)
    stuck = [b.name for b in body_blocks if b.method == "calibrated" and not b.converged]
    if stuck:
        reasons.append(f"calibration did not reach chi = 1 for {', '.join(repr(s) for s in stuck)}")
    isometric = weights == "orthogonal" and math.isfinite(rel) and rel < 1.0 and not stuck
    if not isometric and not reasons:
        reasons.append(f"predicted Var/E^2 = {rel:.4g} >= 1" + (" at the chosen q* (see choice)" if act else ""))
    reason = "; ".join(reasons) if not isometric else ""
    start_op, end_op = ops[units[b0].start], ops[units[b1].end]
    first_op = ops[units[b0].ops[0]]
    body_span = (first_op.label, end_op.label)
    described = (f"from the input of {first_op.description} ("
                 + ("the model input" if start_op.kind == "input" else f"the output of {start_op.description}")
                 + f") to the output of {end_op.description}: {depth} blocks")
    if structure.traced == "hooks":
        notes = [f"torch.fx could not trace the model ({structure.trace_error}); its structure was recorded by "
                 "forward hooks on example_input (the body runs the model's forward with the body's input substituted, "
                 "along the recorded path)"] + list(notes)
    if any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in structure.model.modules()) and (
            structure.example_input is not None):
        notes.append("BatchNorm running statistics set to example_input's batch statistics (eval mode then computes "
                     "what train mode computes on that batch)")
    first_crit = next((b for b in blocks if b.kind == "critical"), None)
    if first_crit is not None and math.isfinite(first_crit.q_measured) and cp is not None and first_crit.method == "theory":
        ratio = first_crit.q_measured / cp.q_star
        if abs(math.log(ratio)) > math.log(1.1):
            notes.append(f"on example_input the first critical layer has q = {first_crit.q_measured:.4g}, not q* = "
                         f"{cp.q_star:.4g}: scale the data to mean square input_q = "
                         f"{(cp.q_star - cp.sigma_b2) / cp.sigma_w2:.4g} (the measurements above are at the data's scale)")
    bm = body_measure
    if plan is not None:
        act = plan.activation
    return InitReport(
        activation=_act_label(act) if act is not None else None,
        depth=depth,
        width=width,
        weights=weights,
        sigma_w2=plan.sigma_w2 if plan else (cp.sigma_w2 if cp else nan),
        sigma_b2=0.0 if plan else (cp.sigma_b2 if cp else nan),
        q_star=cp.q_star if cp else nan,
        mu1=cp.mu1 if cp else nan,
        mu2=cp.mu2 if cp else nan,
        input_q=plan.q0 if plan else (float((cp.q_star - cp.sigma_b2) / cp.sigma_w2) if cp else nan),
        branch_scale=plan.branch_scale if plan else nan,
        predicted_mean=mean,
        predicted_variance=var,
        predicted_max_singular_value=top,
        isometric=isometric,
        reason=reason,
        choice=choice,
        body_span=body_span,
        body_description=described,
        variance_tolerance=tol,
        depth_to_width=depth / width if width else nan,
        fluctuation=fluct,
        reliable=reliable,
        measured_mean=bm.chi if bm else nan,
        measured_variance=bm.variance * bm.chi**2 if bm else nan,
        measured_variance_se=bm.variance_se * bm.chi**2 if bm else nan,
        traced=structure.traced,
        prediction=prediction,
        calibration_passes=passes,
        mode=splan.mode if splan is not None else "critical",
        replaced=splan.replaced if splan is not None else (),
        input_normalization=normalised,
        layers=tuple(table),
        blocks=tuple(blocks),
        notes=tuple(notes),
        activation_spec=act,
        shaping=splan.shaping if splan is not None else None,
        _structure=structure,
        _body=(units[b0].start, units[b1].end),
    )


def _act_label(act: Activation) -> str:
    """The activation's name with its parameters (``leaky_relu(alpha=0.2)``); a shaped unit, whose
    parameters include its base unit's name, by its name alone (``tat(tanh)``: its numbers are the
    module's and ``InitReport.shaping``'s)."""
    params = act.params
    if not params or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in params.values()):
        return act.name
    return act.name + "(" + ", ".join(f"{k}={v:g}" for k, v in params.items()) + ")"
