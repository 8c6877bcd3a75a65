"""Measured forward and backward signal of a block, and its calibration: :func:`measure`, :func:`calibrate`.

For a block f (a sub-map of the model between two cut points) at a batch of inputs X:

* the forward second moment q = mean(f(X)^2) (the mean squared output coordinate), beside the
  input's mean(X^2);
* the gradient gain chi = (1/m) tr(J J^T), the mean eigenvalue of J J^T (J = df/dX, block
  diagonal over the examples of the batch in eval mode), estimated as the average of
  |J^T u|^2 / |u|^2 over Rademacher probes u (E[u u^T] = I); for a block whose input and output
  have the same size this is E|J v|^2 / |v|^2, the gain of a random tangent vector;
* the normalised spread v = m_2 / chi^2 - 1 of the eigenvalues of J J^T, with
  m_2 = (1/m) tr((J J^T)^2) estimated by |J J^T u|^2 / |u|^2 (Hutchinson's estimator).

Only Jacobian-vector products are used (``torch.func.vjp`` for J^T u, ``torch.func.jvp`` for
J w); J is never formed. Standard errors come from the spread over probes (jackknife).

:func:`calibrate` rescales one *knob* of the block (the weight and bias of its last affine
layer, the affine weight of a normalisation, or the output layers of a residual block's
branches) by a factor s until chi(s) = 1 within ``tol`` (relative), like LSUV (Mishkin & Matas
2016) but for the backward signal: a root of log chi(e^t) in t = log s by secant steps
(starting from the slope 2 of an output-linear knob) inside a bracket once one is found,
with the same probes at every step so that chi(s) is a smooth function of s; at most
``max_passes`` (16) measurements per block in all. A residual block whose branch can only add to chi (chi >= 1 at
every branch scale: x + s g(x) with tr(J_g) ~ 0 gives chi = 1 + s^2 chi_g) is set at
chi = 1 + tol / 2, the largest branch within the tolerance.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
from torch import nn
from torch.func import jvp, vjp

from .jacobian import _quiet_forward_ad

__all__ = ["Measure", "measure", "Knob", "calibrate", "solve_scale", "refresh_norm_statistics"]

DEFAULT_N_PROBES = 8
DEFAULT_TOLERANCE = 0.01
DEFAULT_MAX_PASSES = 16
_FALLBACK_PASSES = 5  # measurements kept for a normalisation's gain (chi is quadratic in it: two or three suffice)
_S_MIN, _S_MAX = 1e-4, 1e4


@dataclass(frozen=True)
class Measure:
    """Measured forward and backward signal of a block at a batch of inputs."""

    q_in: float
    q_out: float
    chi: float
    chi_se: float
    variance: float  # normalised spread m_2 / chi^2 - 1 of the eigenvalues of J J^T
    variance_se: float
    n_probes: int


def _rademacher(shape, generator, dtype, device) -> torch.Tensor:
    """Random signs, drawn on the CPU (the generator's device) and moved to ``device``."""
    return (torch.randint(0, 2, shape, generator=generator, dtype=torch.int64) * 2 - 1).to(device=device, dtype=dtype)


def _jackknife(a: np.ndarray, b: np.ndarray) -> tuple[float, float, float, float]:
    """chi = mean(a), v = mean(b) / mean(a)^2 - 1 and their jackknife standard errors."""
    p = a.size
    chi = float(a.mean())
    v = float(b.mean() / chi**2 - 1.0) if chi > 0 else float("nan")
    if p < 2:
        return chi, float("nan"), v, float("nan")
    la = (a.sum() - a) / (p - 1)
    lb = (b.sum() - b) / (p - 1)
    lv = lb / la**2 - 1.0
    chi_se = float(np.std(a, ddof=1) / math.sqrt(p))
    v_se = float(math.sqrt((p - 1) / p * np.sum((lv - lv.mean()) ** 2)))
    return chi, chi_se, v, v_se


def measure(fn: Callable, x: torch.Tensor, *, n_probes: int = DEFAULT_N_PROBES,
            generator: torch.Generator | None = None, spread: bool = True) -> Measure:
    """q, chi and the spread of the eigenvalues of J J^T of the block ``fn`` at the batch ``x``.

    Args:
        fn: the block, a callable on tensors (evaluated in the mode it is in).
        x: the batch of block inputs.
        n_probes: Rademacher probes (the same probes for the same ``generator`` state).
        generator: the probes' random state.
        spread: also estimate m_2 (one ``jvp`` per probe); otherwise variance is NaN.
    """
    x = x.detach()
    with torch.no_grad():
        y = fn(x)
    if not isinstance(y, torch.Tensor):
        raise ValueError("the block does not return a tensor")
    q_in = float(x.double().pow(2).mean())
    q_out = float(y.double().pow(2).mean())
    _, pullback = vjp(fn, x)
    a, b = [], []
    m = y.numel()
    for _ in range(n_probes):
        u = _rademacher(tuple(y.shape), generator, y.dtype, y.device)
        g = pullback(u)[0]
        a.append(float(g.detach().double().pow(2).sum()) / m)
        if spread:
            with _quiet_forward_ad():
                _, jg = jvp(fn, (x,), (g.detach(),))
            b.append(float(jg.detach().double().pow(2).sum()) / m)
    a_arr = np.array(a)
    b_arr = np.array(b) if spread else np.full_like(a_arr, np.nan)
    chi, chi_se, v, v_se = _jackknife(a_arr, b_arr)
    return Measure(q_in, q_out, chi, chi_se, v if spread else float("nan"), v_se if spread else float("nan"), n_probes)


class Knob:
    """A group of parameters multiplied by one factor s (relative to their values at creation)."""

    def __init__(self, tensors: list[torch.Tensor], label: str):
        seen, self.tensors = set(), []
        for t in tensors:
            if t is None or id(t) in seen or not t.is_floating_point():
                continue
            seen.add(id(t))
            self.tensors.append(t)
        self.label = label
        self.original = [t.detach().clone() for t in self.tensors]
        self.scale = 1.0

    def __bool__(self) -> bool:
        return bool(self.tensors)

    def set(self, s: float) -> None:
        with torch.no_grad():
            for t, o in zip(self.tensors, self.original):
                t.copy_(o * s)
        self.scale = float(s)


def knob_tensors(module: nn.Module) -> list[torch.Tensor]:
    """The parameters that scale a module's output: weight and bias of an affine layer or a
    normalisation, the output projection of attention, the branch outputs of a transformer layer."""
    if isinstance(module, nn.MultiheadAttention):
        return [module.out_proj.weight, module.out_proj.bias]
    if isinstance(module, nn.TransformerEncoderLayer):
        return [module.self_attn.out_proj.weight, module.self_attn.out_proj.bias, module.linear2.weight,
                module.linear2.bias]
    own = [p for n, p in module.named_parameters(recurse=False) if n in ("weight", "bias")]
    if own:
        return own
    return [p for p in module.parameters()]


def refresh_norm_statistics(modules: list[nn.Module], fn: Callable, x: torch.Tensor) -> None:
    """Set the running statistics of the BatchNorm layers in ``modules`` to the batch statistics
    of their inputs when ``fn`` runs on ``x`` (as ``torch.optim.swa_utils.update_bn`` does), so
    that eval mode computes what train mode computes on this batch."""
    bns = [m for m in modules if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats]
    if not bns:
        return
    saved = [(m, m.momentum, m.training) for m in bns]
    try:
        for m in bns:
            m.reset_running_stats()
            m.momentum = None  # cumulative average: one batch gives its own statistics
            m.train()
        with torch.no_grad():
            fn(x)
    finally:
        for m, mom, training in saved:
            m.momentum = mom
            m.train(training)


@dataclass
class Calibration:
    """The outcome of :func:`calibrate` for one block."""

    scale: float
    target: float
    passes: int
    converged: bool
    after: Measure
    knob: str
    note: str = ""


def calibrate(fn: Callable, x: torch.Tensor, knob: Knob, *, residual: bool, refresh: Callable[[], None],
              fallback: Knob | None = None, growth: float = 0.01, floor: float | None = None,
              tol: float = DEFAULT_TOLERANCE,
              max_passes: int = DEFAULT_MAX_PASSES, n_probes: int = DEFAULT_N_PROBES, seed: int = 0) -> Calibration:
    """Scale ``knob`` until chi of ``fn`` is 1 within ``tol``; at most ``max_passes`` measurements.

    ``refresh`` is called after every change (it refreshes normalisation statistics). A residual
    block first measures chi at a tiny branch scale, chi_0. If that is already >= 1 - tol / 2 the
    branch can only add to chi, and its target becomes chi_0 (1 + ``growth``): the largest branch
    within the growth allowed (or ``floor``, a schedule of the body's chi, when that is larger);
    otherwise the branch alone is solved for chi = 1 (a ReLU after the addition, which removes
    directions the branch must make up for). A block that ends with a normalisation after the
    addition (``fallback``: its affine weight scales chi by its square) is different: the
    normalisation divides out the branch's size, so chi hardly depends on it; its branch is set by
    the spread of the eigenvalues of J J^T it adds (2 ``growth``, to 5%), then the
    normalisation's gain brings chi to 1. Without a fallback, an unreachable target is reported.
    """
    passes = 0

    def measure_at(k: Knob, s: float, spread: bool):
        """Set knob ``k`` to ``s`` and measure the block (one pass; the spread only when asked)."""
        nonlocal passes
        k.set(s)
        refresh()
        passes += 1
        return measure(fn, x, n_probes=n_probes, generator=torch.Generator().manual_seed(seed), spread=spread)

    def chi_at(k: Knob, s: float) -> float:
        return measure_at(k, s, False).chi

    def spread_at(k: Knob, s: float) -> float:
        return measure_at(k, s, True).variance

    target, note = 1.0, ""
    with_fallback = fallback is not None and bool(fallback)
    if residual and with_fallback:
        # a normalisation after the addition divides out the branch's size, so chi hardly tells it:
        # the branch is set by the spread it adds (2 growth, what a branch adding `growth` to chi adds
        # without the normalisation), and the normalisation's gain then sets chi = 1
        v0 = spread_at(knob, _S_MIN)
        v1 = spread_at(knob, 1.0)
        tiny = 1e-12
        s, _, _ = solve_scale(lambda v: max(spread_at(knob, v) - v0, tiny), 1.0, max(v1 - v0, tiny), 2.0 * growth,
                              0.05, max_passes - passes - _FALLBACK_PASSES)
        knob.set(s)
        refresh()
        note = f"branch set to add {2 * growth:.3g} to the spread of J J^T (without it {v0:.4g})"
        c1 = chi_at(fallback, 1.0)
        s_f, c, ok = solve_scale(lambda v: chi_at(fallback, v), 1.0, c1, 1.0, tol, max_passes - passes)
        fallback.set(s_f)
        note += f"; {fallback.label} scaled by {s_f:.4g} to bring chi to 1"
        refresh()
        gen = torch.Generator().manual_seed(seed)
        after = measure(fn, x, n_probes=n_probes, generator=gen)
        if not ok:
            note += f"; not converged in {passes} passes"
        return Calibration(knob.scale, 1.0, passes, ok, after, f"{knob.label} (+ {fallback.label})", note)
    c1 = chi_at(knob, 1.0)
    if residual:
        c0 = chi_at(knob, _S_MIN)
        if c0 >= 1.0 - tol / 2:
            target = c0 * (1.0 + growth) if floor is None else max(floor, c0 * (1.0 + growth / 4))
            note = f"the branch only adds to chi: set at chi = {target:.4g} (without the branch {c0:.4g})"
    reserve = _FALLBACK_PASSES if with_fallback else 0
    s, c, ok = solve_scale(lambda v: chi_at(knob, v), 1.0, c1, target, tol, max_passes - passes - reserve)
    knob.set(s)
    refresh()
    if with_fallback and not ok:
        cf = chi_at(fallback, 1.0)
        s_f, c, ok = solve_scale(lambda v: chi_at(fallback, v), 1.0, cf, 1.0, tol, max_passes - passes)
        fallback.set(s_f)
        target = 1.0
        note = "; ".join(x for x in (note, f"{fallback.label} scaled by {s_f:.4g} to bring chi to 1") if x)
    if not ok:
        note = "; ".join(x for x in (note, f"not converged in {passes} passes") if x)
    refresh()
    gen = torch.Generator().manual_seed(seed)
    after = measure(fn, x, n_probes=n_probes, generator=gen)
    return Calibration(knob.scale, target, passes, ok, after, knob.label, note)


def solve_scale(chi: Callable[[float], float], s0: float, c0: float, target: float, tol: float,
                budget: int, slope0: float = 2.0) -> tuple[float, float, bool]:
    """Solve chi(s) = target for s in [_S_MIN, _S_MAX], in t = log s, with at most ``budget``
    evaluations of chi; returns (s, chi(s), converged) at the best point found.

    Outside a bracket: secant steps on h(t) = log chi - log target (slope ``slope0`` to start: 2
    is that of an output-linear knob), at most a factor 100 at a time; inside one: regula falsi
    with the Illinois modification. ``chi`` may be any positive measured function of s."""
    lt, eps = math.log(target), math.log1p(tol) * 0.999

    def h(c: float) -> float:
        return math.log(c) - lt if c > 0 and math.isfinite(c) else float("nan")

    t, hv = math.log(s0), h(c0)
    if not math.isfinite(hv):
        return s0, c0, False
    best = (abs(hv), t, c0)
    if abs(hv) <= eps:
        return s0, c0, True
    neg = (t, hv) if hv < 0 else None
    pos = (t, hv) if hv > 0 else None
    prev: tuple[float, float] | None = None
    side = 0
    t_lo, t_hi = math.log(_S_MIN), math.log(_S_MAX)
    for _ in range(max(budget, 0)):
        if neg is not None and pos is not None:
            (ta, ha), (tb, hb) = neg, pos
            t_new = ta - ha * (tb - ta) / (hb - ha)
        else:
            slope = slope0
            if prev is not None and t != prev[0]:
                sl = (hv - prev[1]) / (t - prev[0])
                if math.isfinite(sl) and abs(sl) > 1e-2:
                    slope = sl
            step = max(-math.log(100.0), min(math.log(100.0), -hv / slope))
            t_new = t + step
        t_new = max(t_lo, min(t_hi, t_new))
        if abs(t_new - t) < 1e-12:
            break
        c = chi(math.exp(t_new))
        h_new = h(c)
        if not math.isfinite(h_new):  # overflow or a dead block: step back halfway
            t_new = 0.5 * (t + t_new)
            h_new = h(chi(math.exp(t_new)))
            if not math.isfinite(h_new):
                break
        prev, t, hv = (t, hv), t_new, h_new
        if abs(hv) < best[0]:
            best = (abs(hv), t, math.exp(hv + lt))
        if abs(hv) <= eps:
            return math.exp(t), best[2], True
        if hv < 0:
            if neg is not None and pos is not None and side == -1:
                pos = (pos[0], pos[1] / 2)  # Illinois: the other end was kept twice
            neg, side = (t, hv), -1
        else:
            if neg is not None and pos is not None and side == 1:
                neg = (neg[0], neg[1] / 2)
            pos, side = (t, hv), 1
    return math.exp(best[1]), best[2], False
