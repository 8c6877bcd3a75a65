"""The kernel-shaped modes of :func:`isometry.torch.critical_init_`: DKS and TAT on a traced model.

Deep kernel shaping (Martens et al. 2021) and tailored activation transformation (Zhang et al.
2022) keep every layer of a network at q = 1 (weights of variance 1 / fan_in: orthogonal, or
delta-orthogonal for convolutions, with gain 1; zero biases; inputs of mean square 1) and replace
its activation phi by a shaped one, phi_hat(h) = output_scale * (phi(input_scale * h +
input_shift) + output_shift), chosen for the whole network's architecture
(:func:`isometry.dks_transform`, :func:`isometry.tat_transform`). Here the architecture is read
from the model's graph (:mod:`isometry.torch.graph`):

* critical layers (an affine layer and an activation module), anywhere in the model, form plain
  chains (:class:`isometry.shaping.Chain`);
* residual blocks ``w * x + v * f(x)`` with an identity shortcut scaled by a constant w and a
  branch f that is a chain of square affine layers and activation modules (``phi(W x + b)``,
  ``W2 phi(W1 x)``, pre-activation ``W2 phi(W1 phi(x))``, ...), v a constant, a learnable scalar or
  1, form :class:`isometry.shaping.ResidualChain` with shortcut weight w and ``branch_depth`` the
  branch's number of activations; a learnable v is set to sqrt(1 - w^2) so that lengths stay 1
  (w^2 + v^2 = 1); a constant one must already satisfy it. A branch that ends in its activation
  adds the unit's mean E[phi_hat] to every coordinate of the stream, block after block, which the
  kernel theory leaves out: it is accepted only for a centred shaped unit (DKS, C(0) = 0); end the
  branch with a linear layer otherwise;
* consecutive parts are :class:`isometry.shaping.Composed`; linear layers (orthogonal, gain 1)
  and parameter-free maps keep the kernel and are transparent;
* blocks no theory covers (normalised, attention and transformer layers, other residual blocks,
  unknown modules) are refused: ``mode="critical"`` calibrates them.

An activation at the very output of the model (a sigmoid read by the loss) is left as it is.
Every activation module that is shaped is replaced by the shaped activation's torch module
(:class:`isometry.torch.ShapedActivation`); a :class:`ShapedActivation` already in the model is
re-shaped from its base unit.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable

from torch import nn

from ..activations import Activation
from ..meanfield import CriticalPoint, mu
from ..shaping import Chain, Composed, KernelShaping, ResidualChain, ShapingIsometry, dks_transform, tat_transform
from .graph import ACTIVATION, OUTPUT, SHAPE, Op, Structure, Unit, scale_parameter
from .modules import activation_module, detect_activation
from .shaped import ShapedActivation

__all__ = ["MODES", "ShapedPlan", "check_mode", "plan_shaping", "apply_shaping", "undo_shaping"]

MODES = ("critical", "dks", "tat")
"""The initialisation modes: the paper's critical orthogonal initialisation, DKS and TAT."""

_UNIT_NORM_TOL = 1e-6  # |w^2 + v^2 - 1| of a residual block with a fixed branch weight


def check_mode(mode, *, q_star, sigma0_2, zeta, tau, eta) -> dict[str, float]:
    """Validate ``mode`` and its targets; returns the transform's keyword arguments."""
    if not isinstance(mode, str) or mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(repr(m) for m in MODES)}, got {mode!r}")
    given = {k: v for k, v in (("zeta", zeta), ("tau", tau), ("eta", eta)) if v is not None}
    if mode == "critical":
        if given:
            raise ValueError(f"{', '.join(given)} applies to the kernel-shaped modes (zeta: mode='dks'; tau, eta: "
                             "mode='tat'), not to mode='critical'")
        return {}
    if q_star is not None or sigma0_2 is not None:
        raise ValueError(f"q_star and sigma0_2 apply to mode='critical'; mode={mode!r} sets every layer at q = 1 "
                         "(sigma_w2 = 1, sigma_b2 = 0) and shapes the activation instead")
    own = {"dks": ("zeta",), "tat": ("tau", "eta")}[mode]
    wrong = [k for k in given if k not in own]
    if wrong:
        raise ValueError(f"{', '.join(wrong)} does not apply to mode={mode!r} (its targets: {', '.join(own)})")
    return given


@dataclass
class _Residual:
    unit: Unit
    shortcut_weight: float
    branch_weight: float
    how: str  # "parameter" (set to sqrt(1 - w^2)), "constant" or "none" (v = 1)
    branch_depth: int = 1  # the activations on the branch
    ends_in_activation: bool = False  # no affine layer after the branch's last activation


@dataclass
class ShapedPlan:
    """What a shaped mode does to a model, decided before anything is touched."""

    mode: str
    base: Activation
    shaping: KernelShaping
    subnet: Callable
    point: CriticalPoint  # sigma_w2 = 1, sigma_b2 = 0, q = 1, mu1, mu2 of the shaped activation (chi = C'(1))
    body_isometry: ShapingIsometry
    body_subnet: Callable
    residual: list[_Residual]
    swap: dict[int, tuple[nn.Module, nn.Module]]  # id(old module) -> (old, new)
    replaced: tuple[str, ...]
    ops: list[int]  # the activation ops that are shaped
    choice: str
    notes: list[str] = field(default_factory=list)


def _base_unit(op: Op, override: Activation | None, label: str) -> Activation:
    if override is not None:
        return override
    m = op.module
    if isinstance(m, ShapedActivation):
        det = detect_activation(m.base)
        if det is None:
            raise ValueError(f"critical_init_: {label} is a ShapedActivation around {type(m.base).__name__}, a unit "
                             "the registry does not know; pass activation= to name its base unit")
        return det[0]
    if op.activation is None:
        raise ValueError(f"critical_init_: {label} is not a recognised activation; pass activation=")
    return op.activation


def _feeds_output(i: int, ops: list[Op]) -> bool:
    """The value of op ``i`` is the model's output (through shape maps only)."""
    for _ in range(64):
        users = [op for op in ops if op.live and i in op.inputs]
        if len(users) != 1:
            return False
        if users[0].kind == OUTPUT:
            return True
        if users[0].kind != SHAPE:
            return False
        i = users[0].index
    return False


def _residual_weights(u: Unit, ops: list[Op], name: str) -> _Residual:
    w2 = float(u.skip_gain2)
    w = math.sqrt(w2)
    affines, acts, k = u.branch
    b = len(acts)
    ends_in_activation = not affines or acts[-1] > affines[-1]
    if k is not None and scale_parameter(ops[k], ops) is not None:
        if not w2 < 1.0:
            raise ValueError(
                f"critical_init_: residual block {name!r} adds its branch to a shortcut of weight {w:.4g}: kernel "
                "shaping keeps lengths at 1 with normalised sums w * x + v * f(x), w^2 + v^2 = 1 and w < 1 (Martens "
                "et al. 2021); scale the shortcut by a constant w (e.g. 0.8 * x + alpha * f(x)), the learnable "
                "alpha is then set to sqrt(1 - w^2)")
        return _Residual(u, w, math.sqrt(1.0 - w2), "parameter", b, ends_in_activation)
    v2 = 1.0 if k is None else float(ops[k].gain2)
    if not abs(w2 + v2 - 1.0) <= _UNIT_NORM_TOL:
        raise ValueError(
            f"critical_init_: residual block {name!r} computes {w:.4g} * x + {math.sqrt(v2):.4g} * f(x), with "
            f"w^2 + v^2 = {w2 + v2:.6g}: kernel shaping needs normalised sums w * x + v * f(x) with w^2 + v^2 = 1 (lengths stay "
            "1); change the constants, or make v a learnable scalar (set to sqrt(1 - w^2))")
    return _Residual(u, w, math.sqrt(v2), "none" if k is None else "constant", b, ends_in_activation)


def _architecture(entries: list[tuple[str, Any]]) -> Callable:
    """Chains and residual chains, in order, from ("layer", None) and ("residual", _Residual) entries."""
    parts: list = []
    run_layers = 0
    run_res: list[_Residual] = []

    def flush_layers():
        nonlocal run_layers
        if run_layers:
            parts.append(Chain(run_layers))
        run_layers = 0

    def flush_res():
        if run_res:
            parts.append(ResidualChain(len(run_res), run_res[0].shortcut_weight, branch_depth=run_res[0].branch_depth,
                                       residual_weight=run_res[0].branch_weight))
        run_res.clear()

    for kind, r in entries:
        if kind == "layer":
            flush_res()
            run_layers += 1
        else:
            flush_layers()
            if run_res and (abs(run_res[0].shortcut_weight - r.shortcut_weight) > 1e-12
                            or run_res[0].branch_depth != r.branch_depth):
                flush_res()
            run_res.append(r)
    flush_layers()
    flush_res()
    return parts[0] if len(parts) == 1 else Composed(tuple(parts))


def _module_names(model: nn.Module) -> dict[int, list[str]]:
    out: dict[int, list[str]] = {}
    for name, m in model.named_modules(remove_duplicate=False):
        if name:
            out.setdefault(id(m), []).append(name)
    return out


def _words(subnet) -> str:
    if isinstance(subnet, Chain):
        return f"a chain of {subnet.depth} nonlinear layers"
    if isinstance(subnet, ResidualChain):
        return (f"{subnet.blocks} residual blocks {subnet.shortcut_weight:.4g} x + {subnet.residual_weight:.4g} f(x), "
                f"f with {subnet.branch_depth} nonlinear layer{'s' if subnet.branch_depth > 1 else ''}")
    return " then ".join(_words(p) for p in subnet.parts)


def plan_shaping(structure: Structure, units: list[Unit], names: dict[int, str], span: tuple[int, int], mode: str,
                 targets: dict[str, float], override: Activation | None, weights: str) -> ShapedPlan:
    """Check that kernel shaping covers ``structure``, derive its architecture, solve the transform
    and decide which modules are replaced (nothing is touched)."""
    ops = structure.ops
    uncovered = [(i, u) for i, u in enumerate(units) if u.calibrated and not (u.kind == "residual" and u.branch)]
    if uncovered:
        what = ", ".join(f"{names[i]!r} ({u.kind})" for i, u in uncovered[:4])
        more = f" and {len(uncovered) - 4} more" if len(uncovered) > 4 else ""
        raise ValueError(
            f"critical_init_(mode={mode!r}): kernel shaping covers chains of affine layers with an activation and "
            f"residual blocks w * x + v * f(x) (f a chain of square affine layers and activations); it does not cover "
            f"{what}{more}; use mode='critical', which calibrates such blocks")
    entries: list[tuple[str, Any]] = []
    body_entries: list[tuple[str, Any]] = []
    act_ops: list[int] = []
    residual: list[_Residual] = []
    notes: list[str] = []
    kept: set[int] = set()
    b0, b1 = span
    for i, u in enumerate(units):
        in_body = b0 <= i <= b1
        if u.kind == "critical":
            a = u.end
            if u.role == "head" and _feeds_output(a, ops):
                kept.add(id(ops[a].module))
                notes.append(f"the output activation {ops[a].description} is left as it is (the loss reads it)")
                continue
            act_ops.append(a)
            entries.append(("layer", None))
            if in_body:
                body_entries.append(("layer", None))
        elif u.kind == "residual" and u.branch is not None:
            r = _residual_weights(u, ops, names[i])
            u.shaped = True
            residual.append(r)
            act_ops.extend(u.branch[1])
            entries.append(("residual", r))
            if in_body:
                body_entries.append(("residual", r))
        else:
            for j in u.ops:
                if ops[j].kind == ACTIVATION:
                    if _feeds_output(j, ops):
                        kept.add(id(ops[j].module))
                        notes.append(f"the output activation {ops[j].description} is left as it is (the loss reads it)")
                        continue
                    raise ValueError(
                        f"critical_init_(mode={mode!r}): {ops[j].description} does not follow an affine layer; kernel "
                        "shaping needs every nonlinearity inside a layer W x + b -> phi (or a residual branch)")
    if not act_ops:
        raise ValueError(f"critical_init_(mode={mode!r}): the model has no activation to shape")
    bases: list[Activation] = []
    for a in act_ops:
        op = ops[a]
        if op.op != "call_module":
            raise ValueError(
                f"critical_init_(mode={mode!r}): {op.description} is a function call in forward; the shaped modes "
                "replace activation modules by the shaped activation's module: use a module (e.g. nn.Tanh()) there")
        bases.append(_base_unit(op, override, op.description))
    base = bases[0]
    for a, b in zip(act_ops[1:], bases[1:]):
        if not (b is base or (b.name == base.name and dict(b.params) == dict(base.params))):
            raise ValueError(f"critical_init_(mode={mode!r}): mixed activations ({base!r} and {b!r} at "
                             f"{ops[a].description}); the shaped modes shape one unit; pass activation= to choose")
    subnet = _architecture(entries)
    if mode == "dks":
        shaping = (dks_transform(base, subnet.depth, **targets) if isinstance(subnet, Chain)
                   else dks_transform(base, subnet=subnet, **targets))
    else:
        shaping = (tat_transform(base, subnet.depth, **targets) if isinstance(subnet, Chain)
                   else tat_transform(base, subnet=subnet, **targets))
    shaped = shaping.activation
    body_subnet = _architecture(body_entries)
    iso = shaping.isometry(subnet=body_subnet, weights=weights)
    m1, m2 = float(mu(shaped, 1.0, 1)), float(mu(shaped, 1.0, 2))
    point = CriticalPoint(1.0, 0.0, 1.0, m1, m2)
    # the modules: every registration of each activation module is replaced
    registered = _module_names(structure.model)
    swap: dict[int, tuple[nn.Module, nn.Module]] = {}
    replaced: list[str] = []
    for a in act_ops:
        old = ops[a].module
        if id(old) in swap:
            continue
        if id(old) in kept:
            raise ValueError(f"critical_init_(mode={mode!r}): the module {ops[a].target!r} is applied inside the "
                             "network and at its output; give the output activation its own module")
        swap[id(old)] = (old, activation_module(shaped))
        replaced += registered.get(id(old), [str(ops[a].target)])
    target = ", ".join(f"{k} = {v:.6g}" for k, v in shaping.targets.items())
    params = ", ".join(f"{k} = {v:.6g}" for k, v in shaping.parameters.items())
    ref = "Martens et al. 2021" if mode == "dks" else "Zhang et al. 2022"
    choice = (f"{mode.upper()} ({ref}): {base.name} shaped for {_words(subnet)}, {target} ({params}); weights "
              "orthogonal with sigma_w2 = 1, biases 0, every layer at q = 1")
    for r in residual:
        if r.how == "parameter":
            notes.append(f"residual branch scales set to v = sqrt(1 - w^2) = {r.branch_weight:.4g} (shortcut weight "
                         f"w = {r.shortcut_weight:.4g})")
            break
    if abs(shaping.local.c_zero) > 1e-9:
        bad = [r for r in residual if r.ends_in_activation]
        if bad:
            i = units.index(bad[0].unit)
            raise ValueError(
                f"critical_init_(mode={mode!r}): the branch of residual block {names[i]!r} ends in its activation and "
                f"{shaped.name} has a mean (C(0) = {shaping.local.c_zero:.3g}): every block would add it to all "
                "coordinates of the stream, which the kernel theory leaves out; end the branch with a linear layer "
                "(w * x + v * W2 phi(W1 x)), or use mode='dks' (a centred unit)")
    return ShapedPlan(mode, base, shaping, subnet, point, iso, body_subnet, residual, swap, tuple(replaced), act_ops,
                      choice, list(dict.fromkeys(notes)))


def apply_shaping(plan: ShapedPlan, structure: Structure) -> list[tuple]:
    """Replace every registration of the planned activation modules; returns what :func:`undo_shaping`
    needs. The structure's ops follow (their module and activation)."""
    undo: list[tuple] = []
    for parent in list(structure.model.modules()):
        for name, child in list(parent._modules.items()):
            if child is not None and id(child) in plan.swap:
                parent._modules[name] = plan.swap[id(child)][1]
                undo.append(("module", parent, name, child))
    for op in structure.ops:
        if op.op == "call_module" and id(op.module) in plan.swap:
            undo.append(("op", op, op.module, op.activation))
            op.module = plan.swap[id(op.module)][1]
            op.activation = plan.shaping.activation
    return undo


def undo_shaping(undo: list[tuple]) -> None:
    """Put the original modules back (after a failure)."""
    for entry in reversed(undo):
        if entry[0] == "module":
            _, parent, name, old = entry
            parent._modules[name] = old
        else:
            _, op, module, activation = entry
            op.module, op.activation = module, activation
