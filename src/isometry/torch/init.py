"""Critical (orthogonal) initialisation of PyTorch models: :func:`critical_init_`.

For a network h^l = W^l phi(h^{l-1}) + b^l the input-output Jacobian is
J = prod_{l=1}^{L} D^l W^l with D^l = diag(phi'(h^l)). Pennington, Schoenholz & Ganguli
(2017) show that at criticality, chi = sigma_w2 mu_1(q*) = 1, the eigenvalues lambda of
J J^T have mean 1 and variance (their moment formula, derived from the S-transform)

    sigma^2_{JJ^T} = L (mu_2 / mu_1^2 - 1 - s_1),     mu_k = E[phi'(h)^(2k)], h ~ N(0, q*),

with s_1 = 0 for orthogonal and s_1 = -1 for Gaussian weights. Orthogonal weights and an
activation whose per-layer spread mu_2/mu_1^2 - 1 vanishes as q* -> 0 (tanh, erf, hard tanh,
shifted ReLU, ...) can keep sigma^2_{JJ^T} = O(1) at any depth by letting q* shrink as L grows
(q* ~ L^{-1/2} for tanh and erf: the double-scaling limit); ReLU cannot (mu_2/mu_1^2 - 1 = 1
at every q*), and Gaussian weights cannot (sigma^2_{JJ^T} >= L).

:func:`critical_init_` finds the affine layers of a model and the activations that follow
them, picks q* (given, or from a target sigma^2_{JJ^T}), sets every weight to sigma_w times a
Haar-orthogonal matrix (delta-orthogonal kernels for convolutions, Xiao et al. 2018) and every
bias to N(0, sigma_b2), and returns an :class:`InitReport` with the predicted spectrum.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, ClassVar

import numpy as np
import torch
from torch import nn

from ..activations import Activation, get_activation
from ..meanfield import CriticalPoint, critical_line, critical_point
from ..spectrum import jacobian_spectrum, q_star_for_variance
from .modules import detect_activation

__all__ = [
    "critical_init_",
    "InitReport",
    "LayerInit",
    "choose_critical_point",
    "haar_orthogonal",
    "delta_orthogonal_",
    "DEFAULT_SIGMA0_2",
    "ISOMETRY_RULE",
]

DEFAULT_SIGMA0_2 = 0.25
"""Default target variance sigma^2_{JJ^T} of the eigenvalues of J J^T."""

ISOMETRY_RULE = (
    "isometric = orthogonal weights and predicted sigma^2_{JJ^T} < 1, i.e. the eigenvalues of "
    "J J^T (squared singular values, mean 1 at criticality) have a standard deviation below their mean"
)
_S1 = {"orthogonal": 0.0, "gaussian": -1.0}
_AFFINE = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)
_Q_GRID = np.logspace(-10.0, 4.0, 281)  # 20 points per decade


# ------------------------------------------------------------------------------ random matrices
def _as_generator(generator: torch.Generator | int | None) -> torch.Generator | None:
    if generator is None or isinstance(generator, torch.Generator):
        return generator
    if isinstance(generator, (int, np.integer)) and not isinstance(generator, bool):
        return torch.Generator().manual_seed(int(generator))
    raise ValueError(f"generator must be a torch.Generator, an int seed or None, got {type(generator).__name__}")


def haar_orthogonal(
    n_out: int, n_in: int, generator: torch.Generator | None = None, dtype: torch.dtype = torch.float64
) -> torch.Tensor:
    """A Haar-distributed n_out x n_in matrix with orthonormal rows (n_out <= n_in) or columns.

    QR of a standard Gaussian matrix with the signs of diag(R) moved into Q (Mezzadri 2007),
    on the CPU in ``dtype`` (float64, or float32 for float32/low-precision parameters: half
    the cost), drawn from ``generator`` (torch's global generator if None).
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


def _orthogonal_gain(sigma_w2: float, n_out: int, n_in: int) -> float:
    """sigma_w sqrt(max(1, n_out / n_in)): every row of W then has squared norm sigma_w2 on average.

    Mean field needs E[h_i^2] = sigma_w2 |x|^2 / n_in + sigma_b2, i.e. rows of squared norm
    sigma_w2 (the Gaussian W_ij ~ N(0, sigma_w2 / n_in)). Orthonormal rows (n_out <= n_in) have
    norm 1; orthonormal columns (n_out > n_in) have rows of squared norm n_in / n_out on average,
    hence the factor, which makes W^T W = sigma_w2 (n_out / n_in) I.
    """
    return math.sqrt(sigma_w2 * max(1.0, n_out / n_in))


def delta_orthogonal_(
    weight: torch.Tensor, sigma_w2: float, groups: int = 1, generator: torch.Generator | None = None
) -> float:
    """Fill a conv kernel (out, in/groups, *k) with a delta-orthogonal kernel (Xiao et al. 2018).

    Zero everywhere except the centre tap (index k // 2 in every spatial dimension), which is
    gain * H with H Haar orthogonal per group (rows or columns orthonormal as in
    :func:`haar_orthogonal`) and gain = :func:`_orthogonal_gain` (sigma_w2, out/groups, in/groups).
    With stride 1 and a shape-preserving padding the convolution is then gain times an
    orthogonal map (channel mixing at each position). Returns the gain.
    """
    c_out, c_in_g = weight.shape[0], weight.shape[1]
    if c_out % groups:
        raise ValueError(f"out_channels={c_out} is not divisible by groups={groups}")
    c_out_g = c_out // groups
    gain = _orthogonal_gain(sigma_w2, c_out_g, c_in_g)
    centre = tuple(k // 2 for k in weight.shape[2:])
    with torch.no_grad():
        weight.zero_()
        for g in range(groups):
            h = gain * haar_orthogonal(c_out_g, c_in_g, generator, _work_dtype(weight))
            weight[(slice(g * c_out_g, (g + 1) * c_out_g), slice(None), *centre)] = h.to(weight.dtype)
    return gain


# ------------------------------------------------------------------------------ choosing q*
def _spread(mu1, mu2):
    return np.asarray(mu2, float) / np.square(np.asarray(mu1, float)) - 1.0


def predicted_variance(cp: CriticalPoint, depth: int, weights: str = "orthogonal") -> float:
    """sigma^2_{JJ^T} = L (mu_2/mu_1^2 - 1 - s_1) (s_1 = 0 orthogonal, -1 Gaussian: the first
    S-transform coefficient of W^T W)."""
    return float(depth * (_spread(cp.mu1, cp.mu2) - _S1[weights]))


def choose_critical_point(
    activation: str | Activation, depth: int, *, q_star: float | None = None, sigma0_2: float | None = None
) -> tuple[CriticalPoint, str]:
    """The critical point used by :func:`critical_init_`, with a note saying how it was chosen.

    * ``q_star`` given: :func:`isometry.critical_point` (activation, q_star).
    * otherwise the target t = ``sigma0_2`` (default 1/4) for the orthogonal-weight variance
      L (mu_2/mu_1^2 - 1) is solved for q* on the critical line (chi = 1, sigma_b2 >= 0),
      taking the smallest solution (:func:`isometry.q_star_for_variance`). This is the
      double-scaling rule: for tanh mu_2/mu_1^2 - 1 ~ 8 q*^2, so
      q* ~ (t / 8L)^{1/2}.
    * where no q* reaches t: if the spread does not depend on q* (ReLU, leaky ReLU, linear) q* = 1;
      if it stays below t, q* = 1 (or the valid q* nearest to 1); if it stays above t, the q* of
      least spread.
    """
    act = get_activation(activation)
    if q_star is not None:
        return critical_point(act, q_star), "q* given"
    t = DEFAULT_SIGMA0_2 if sigma0_2 is None else float(sigma0_2)
    per_layer = t / depth
    cl = critical_line(act, _Q_GRID)
    r = _spread(cl.mu1, cl.mu2)
    ok = cl.valid & np.isfinite(r)
    if not np.any(ok):
        raise ValueError(
            f"{act.name} has no critical point (chi = 1 with sigma_b2 >= 0) for q* in [1e-10, 1e4]; "
            "critical initialisation is impossible for this activation"
        )
    qv, rv = _Q_GRID[ok], r[ok]
    if np.ptp(rv) <= 1e-9 * max(1.0, float(np.max(np.abs(rv)))):
        q = 1.0 if ok[np.argmin(np.abs(np.log(_Q_GRID)))] else float(qv[np.argmin(np.abs(np.log(qv)))])
        return critical_point(act, q), (
            f"the per-layer spread mu2/mu1^2 - 1 = {rv[0]:.4g} of {act.name} does not depend on q*; q* = {q:g} chosen"
        )
    try:  # the double-scaling solution (first crossing from small q*), when it exists
        q = q_star_for_variance(act, depth, t, "orthogonal")
        return critical_point(act, q), f"q* chosen so that sigma^2_JJT = {t:.4g} with orthogonal weights at depth {depth}"
    except ValueError:
        pass
    if np.all(rv < per_layer):
        q = float(qv[np.argmin(np.abs(np.log(qv)))])
        return critical_point(act, q), (
            f"target sigma0_2 = {t:.4g} exceeds the orthogonal-weight variance at every q* "
            f"(at most {depth * float(np.max(rv)):.4g}); q* = {q:g} chosen"
        )
    idx = np.flatnonzero(ok)
    k = int(np.argmin(rv))
    q = float(qv[k])
    if 0 < k < len(qv) - 1 and idx[k + 1] - idx[k - 1] == 2:
        from scipy.optimize import minimize_scalar

        res = minimize_scalar(
            lambda s: float(_spread(*_mu12(act, math.exp(s)))),
            bounds=(math.log(qv[k - 1]), math.log(qv[k + 1])), method="bounded", options={"xatol": 1e-6},
        )
        q = math.exp(float(res.x))
    cp = critical_point(act, q)
    return cp, (
        f"target sigma0_2 = {t:.4g} is not reachable: the least orthogonal-weight variance on the "
        f"critical line of {act.name} at depth {depth} is {predicted_variance(cp, depth):.4g} (q* = {q:.4g})"
    )


def _mu12(act: Activation, q: float):
    cp = critical_point(act, q)
    return cp.mu1, cp.mu2


# ------------------------------------------------------------------------------ the report
@dataclass(frozen=True)
class LayerInit:
    """How one affine layer was initialised.

    ``role``: ``input`` (the first critical layer), ``hidden``, ``linear`` (no activation
    follows: a sigma_w2 = 1, sigma_b2 = 0 linear layer, transparent to the mean-field
    recursion) or ``readout`` (the last affine layer, when no activation follows it).
    ``gain`` is the factor multiplying the orthonormal rows/columns (orthogonal) or the weight
    standard deviation times sqrt(fan_in) (Gaussian); ``sigma_w2``, ``sigma_b2`` are variances.
    """

    name: str
    module: str
    role: str
    shape: tuple[int, ...]
    activation: str | None
    weights: str
    sigma_w2: float
    sigma_b2: float
    gain: float
    note: str = ""


@dataclass(frozen=True)
class InitReport:
    """What :func:`critical_init_` did and what it predicts for the Jacobian J = prod D^l W^l.

    ``depth`` L counts the critical layers (affine layer + activation); ``predicted_variance``
    is sigma^2_{JJ^T} = L (mu_2/mu_1^2 - 1 - s_1), the variance of the eigenvalues of
    J J^T, whose mean is 1; ``predicted_max_singular_value`` is sqrt(lambda_max) of the
    free-probability spectrum (NaN if unavailable). ``input_q`` = (q* - sigma_b2) / sigma_w2 is
    the mean squared input coordinate |x|^2 / d_in that puts the first layer at q^1 = q* (scale
    your data to it). ``isometric`` follows :data:`ISOMETRY_RULE`; ``reason`` says why not.
    """

    activation: str
    depth: int
    weights: str
    sigma_w2: float
    sigma_b2: float
    q_star: float
    mu1: float
    mu2: float
    input_q: float
    predicted_mean: float
    predicted_variance: float
    predicted_max_singular_value: float
    isometric: bool
    reason: str
    choice: str
    layers: tuple[LayerInit, ...] = field(default=())
    activation_spec: Activation | None = field(default=None, repr=False, compare=False)
    isometry_rule: ClassVar[str] = ISOMETRY_RULE

    @property
    def predicted_std(self) -> float:
        return math.sqrt(max(self.predicted_variance, 0.0))

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready fields (the per-layer table as a list of dicts)."""
        d = {k: v for k, v in asdict(self).items() if k not in ("activation_spec", "layers")}
        d["layers"] = [asdict(layer) for layer in self.layers]
        d["isometry_rule"] = ISOMETRY_RULE
        return d

    def spectrum(self):
        """The free-probability spectrum of J J^T (:func:`isometry.jacobian_spectrum`)."""
        act = self.activation_spec if self.activation_spec is not None else self.activation.split("(")[0]
        return _theory_spectrum(get_activation(act), self.depth, self.q_star, self.weights)

    def plot(self, ax=None):
        """The predicted density of the singular values sigma = sqrt(lambda) of J."""
        from ..plotting import _plt

        spec = self.spectrum()
        if ax is None:
            fig, ax = _plt().subplots(figsize=(5, 3.5))
        with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
            s_max = math.sqrt(float(spec.max_eigenvalue))
            s = np.linspace(s_max * 1e-4, s_max * 1.03, 400)
            ax.plot(s, spec.singular_value_density(s), color="C0")  # p(s) = 2 s rho(s^2)
        for lam, mass in spec.atoms:
            if mass > 1e-6:
                ax.axvline(math.sqrt(lam), color="C1", lw=1, label=f"atom, mass {mass:.3g}")
        if any(m > 1e-6 for _, m in spec.atoms):
            ax.legend(fontsize=8)
        ax.set_xlabel("singular value of J")
        ax.set_ylabel("density")
        ax.set_title(
            f"{self.activation}, L = {self.depth}, {self.weights}, q* = {self.q_star:.3g}: "
            f"$\\sigma^2_{{JJ^T}}$ = {self.predicted_variance:.3g}",
            fontsize=9,
        )
        return ax

    def __str__(self) -> str:
        lines = [
            f"critical initialisation: {self.activation}, depth L = {self.depth}, {self.weights} weights",
            f"  q* = {self.q_star:.6g}   sigma_w2 = {self.sigma_w2:.6g}   sigma_b2 = {self.sigma_b2:.6g}"
            f"   (chi = sigma_w2 mu1 = {self.sigma_w2 * self.mu1:.6g})",
            f"  {self.choice}",
            f"  input: scale data to mean(x^2) = {self.input_q:.6g} so that q^1 = q*",
            f"  predicted J J^T spectrum: mean {self.predicted_mean:.4g}, variance sigma^2 = "
            f"{self.predicted_variance:.4g}, max singular value {self.predicted_max_singular_value:.4g}",
            f"  isometric: {'yes' if self.isometric else 'NO'}" + (f" -- {self.reason}" if self.reason else ""),
            f"  ({ISOMETRY_RULE})",
        ]
        if self.layers:
            lines.append(f"  {'layer':<18}{'module':<8}{'role':<9}{'shape':<18}{'activation':<13}"
                         f"{'weights':<17}{'sigma_w2':>10}{'sigma_b2':>11}")
            shown = self.layers if len(self.layers) <= 12 else (*self.layers[:5], None, *self.layers[-5:])
            for layer in shown:
                if layer is None:
                    lines.append(f"  ... {len(self.layers) - 10} more layers ...")
                    continue
                shape = "x".join(str(s) for s in layer.shape)
                lines.append(
                    f"  {layer.name[:17]:<18}{layer.module:<8}{layer.role:<9}{shape:<18}{layer.activation or '-':<13}"
                    f"{layer.weights:<17}{layer.sigma_w2:>10.5g}{layer.sigma_b2:>11.4g}"
                    + (f"  ({layer.note})" if layer.note else "")
                )
        return "\n".join(lines)


def _act_label(act: Activation) -> str:
    return act.name + ("" if not act.params else "(" + ", ".join(f"{k}={v:g}" for k, v in act.params.items()) + ")")


_SPECTRA: dict[tuple, Any] = {}


def _theory_spectrum(act: Activation, depth: int, q_star: float, weights: str):
    """:func:`isometry.jacobian_spectrum` at criticality, memoised (critical_init_ is called in loops)."""
    from ..activations import ACTIVATIONS

    key = (act.name if act.name in ACTIVATIONS else id(act), tuple(sorted(act.params.items())), depth, q_star, weights)
    spec = _SPECTRA.get(key)
    if spec is None:
        if len(_SPECTRA) > 64:
            _SPECTRA.clear()
        spec = _SPECTRA[key] = jacobian_spectrum(act, depth, q_star=q_star, weights=weights)
    return spec


def _predicted_max_singular_value(act: Activation, depth: int, q_star: float, weights: str) -> float:
    try:
        # the band tracer can meet NaN intermediate values it then discards: keep them silent
        with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
            lam = float(_theory_spectrum(act, depth, q_star, weights).max_eigenvalue)
        return math.sqrt(lam) if math.isfinite(lam) and lam >= 0 else float("nan")
    except (ValueError, ArithmeticError, NotImplementedError):
        return float("nan")


# ------------------------------------------------------------------------------ walking the model
@dataclass
class _Slot:
    name: str
    module: nn.Module
    role: str = "linear"
    activation: Activation | None = None
    note: str = ""


_OUTPUT = (nn.Softmax, nn.LogSoftmax, nn.Softmin, nn.Softmax2d)


def _is_ignorable(m: nn.Module) -> bool:
    """Dropout, Flatten/Unflatten and placeholder nn.Identity: no effect on the mean-field recursion."""
    from torch.nn.modules.dropout import _DropoutNd

    if getattr(m, "isometry_activation", None) is not None:
        return False
    return isinstance(m, (_DropoutNd, nn.Flatten, nn.Unflatten, nn.Identity))


def _has_params(m: nn.Module) -> bool:
    return any(True for _ in m.parameters(recurse=False)) or any(True for _ in m.buffers(recurse=False))


def _walk(model: nn.Module, override: Activation | None) -> list[_Slot]:
    """Affine layers in registration order, each with the activation module that follows it."""
    leaves = [(n or type(model).__name__, m) for n, m in model.named_modules() if not any(True for _ in m.children())]
    slots: list[_Slot] = []
    pending: list[tuple[str, nn.Module]] = []  # non-affine leaves since the last affine layer

    def close(slot: _Slot, between: list[tuple[str, nn.Module]], last: bool = False) -> None:
        found: list[tuple[str, nn.Module, Activation | None, str]] = []
        for n, m in between:
            if _is_ignorable(m) or (last and isinstance(m, _OUTPUT)):  # softmax after the readout
                continue
            det = detect_activation(m)
            if det is None and _has_params(m):
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

    for n, m in leaves:
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
    by a pointwise activation module (nn.Tanh, ReLU, LeakyReLU, Hardtanh, SiLU, GELU, ELU, SELU,
    Softplus, Sigmoid, :class:`isometry.torch.Erf`, :class:`isometry.torch.ShiftedReLU`,
    :class:`isometry.torch.LinearActivation`, or a module with an ``isometry_activation``
    attribute) is a *critical layer*; their number is the depth L. Dropout, Flatten and
    placeholder ``nn.Identity`` modules are skipped, and so is a softmax after the last layer.
    ``activation=`` overrides detection (and, if the model has no activation modules because it
    applies phi in ``forward``, makes every affine layer but the last critical).

    **Critical point.** q* is ``q_star``, or solves L (mu_2/mu_1^2 - 1) = ``sigma0_2`` (default
    1/4) on the critical line (:func:`choose_critical_point`, the double-scaling rule); then
    sigma_w2 = 1 / mu_1(q*), sigma_b2 = q* - sigma_w2 E[phi(h)^2] (chi = 1). Gaussian
    weights use the same q* as orthogonal ones.

    **Weights.** ``weights="orthogonal"``: W = sigma_w sqrt(max(1, n_out/n_in)) Q, Q Haar with
    orthonormal rows (n_out <= n_in) or columns (n_out > n_in), so every row has squared norm
    sigma_w2 on average, as the mean-field recursion requires; convolutions get delta-orthogonal
    kernels (orthogonal centre tap, zeros elsewhere; Xiao et al. 2018), per group.
    ``weights="gaussian"``: W_ij ~ N(0, sigma_w2 / fan_in). Biases ~ N(0, sigma_b2).

    **Input layer and readout.** The first critical layer is initialised like the others; its
    input should have mean(x^2) = ``report.input_q`` = (q* - sigma_b2)/sigma_w2 so that
    q^1 = q*. Affine layers with no activation after them (the readout, the last affine layer,
    and linear bottlenecks) get sigma_w2 = 1, sigma_b2 = 0 (orthogonal: gain 1 rows/columns),
    a norm-preserving map that leaves the spectrum of J J^T unchanged when square.

    **Isometry.** ``report.isometric`` follows :data:`ISOMETRY_RULE`. ReLU and Gaussian weights
    cannot be isometric (ReLU: sigma_w2 = 2, sigma_b2 = 0 and sigma^2_{JJ^T} = L for orthogonal
    weights; Gaussian: sigma^2_{JJ^T} >= L); they are still initialised critically and
    ``report.reason`` explains, unless ``strict=True``, which raises ``ValueError`` before
    touching the model. Meta-device parameters are left untouched (the report is still built).

    ``generator``: a ``torch.Generator`` or an int seed makes the result reproducible;
    None uses torch's global generator.

    >>> from isometry.torch import mlp, critical_init_
    >>> report = critical_init_(mlp(100, 256, "tanh"), generator=0)
    >>> round(report.predicted_variance, 6), report.isometric
    (0.25, True)
    """
    if weights not in _S1:
        raise ValueError(f"weights must be 'orthogonal' or 'gaussian', got {weights!r}")
    if q_star is not None and sigma0_2 is not None:
        raise ValueError("give q_star or sigma0_2, not both")
    if sigma0_2 is not None:
        try:
            s = float(sigma0_2)
        except (TypeError, ValueError):
            raise ValueError(f"sigma0_2 must be a number > 0, got {sigma0_2!r}") from None
        if not (math.isfinite(s) and s > 0):
            raise ValueError(f"sigma0_2 must be finite and > 0, got {sigma0_2!r}")
    if not isinstance(model, nn.Module):
        raise ValueError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    gen = _as_generator(generator)
    override = _resolve_override(activation)
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
    depth = len(crit)
    crit[0].role = "input"
    for s in crit[1:]:
        s.role = "hidden"
    if slots[-1].activation is None:
        slots[-1].role = "readout"

    cp, choice = choose_critical_point(act, depth, q_star=q_star, sigma0_2=sigma0_2)
    var = predicted_variance(cp, depth, weights)
    spread = float(_spread(cp.mu1, cp.mu2))
    reasons = []
    if weights == "gaussian":
        reasons.append(
            f"Gaussian weights: sigma^2_JJT = L mu2/mu1^2 >= L = {depth} at every q*; use weights='orthogonal'"
        )
    if act.name in ("relu", "leaky_relu"):
        reasons.append(
            f"{act.name}: mu2/mu1^2 - 1 = {spread:.4g} at every q*, so sigma^2_JJT grows like L "
            f"({var:.4g} here) whatever the initialisation"
        )
    isometric = weights == "orthogonal" and var < 1.0
    if not isometric and not reasons:
        reasons.append(f"predicted sigma^2_JJT = {var:.4g} >= 1 at the chosen q* (see choice)")
    reason = "; ".join(reasons) if not isometric else ""
    if strict and not isometric:
        raise ValueError(f"critical_init_(strict=True): {act.name} network of depth {depth} cannot be isometric: {reason}")

    label = _act_label(act)
    table = []
    for s in slots:
        critical = s.activation is not None
        sw2, sb2 = (cp.sigma_w2, cp.sigma_b2) if critical else (1.0, 0.0)
        kind, gain, note = _init_layer(s.module, sw2, sb2, weights, gen)
        notes = "; ".join(x for x in (s.note, note) if x)
        table.append(
            LayerInit(s.name, type(s.module).__name__, s.role, tuple(s.module.weight.shape),
                      label if critical else None, kind, sw2, sb2, gain, notes)
        )
    input_q = (cp.q_star - cp.sigma_b2) / cp.sigma_w2
    return InitReport(
        activation=label,
        depth=depth,
        weights=weights,
        sigma_w2=cp.sigma_w2,
        sigma_b2=cp.sigma_b2,
        q_star=cp.q_star,
        mu1=cp.mu1,
        mu2=cp.mu2,
        input_q=float(input_q),
        predicted_mean=float(cp.sigma_w2 * cp.mu1) ** depth,
        predicted_variance=var,
        predicted_max_singular_value=_predicted_max_singular_value(act, depth, cp.q_star, weights),
        isometric=isometric,
        reason=reason,
        choice=choice,
        layers=tuple(table),
        activation_spec=act,
    )


def _init_layer(m: nn.Module, sigma_w2: float, sigma_b2: float, weights: str, gen) -> tuple[str, float, str]:
    w = m.weight
    note = ""
    is_conv = not isinstance(m, nn.Linear)
    groups = getattr(m, "groups", 1)
    if is_conv:
        if any(s != 1 for s in tuple(m.stride)):
            note = "stride > 1: the delta kernel subsamples, the layer is not norm-preserving"
    meta = w.is_meta
    if weights == "orthogonal":
        n_out, n_in = w.shape[0] // groups, w.shape[1]
        if is_conv:
            kind = "delta-orthogonal"
            gain = _orthogonal_gain(sigma_w2, n_out, n_in)
            if not meta:
                delta_orthogonal_(w, sigma_w2, groups, gen)
        else:
            kind = "orthogonal"
            gain = _orthogonal_gain(sigma_w2, n_out, n_in)
            if not meta:
                with torch.no_grad():
                    w.copy_((gain * haar_orthogonal(n_out, n_in, gen, _work_dtype(w))).to(w.dtype))
    else:
        kind = "gaussian"
        fan_in = int(np.prod(w.shape[1:]))
        gain = math.sqrt(sigma_w2)
        if not meta:
            with torch.no_grad():
                z = torch.randn(tuple(w.shape), generator=gen, dtype=_work_dtype(w))
                w.copy_((gain / math.sqrt(fan_in) * z).to(w.dtype))
    b = getattr(m, "bias", None)
    if b is not None and not b.is_meta:
        with torch.no_grad():
            if sigma_b2 > 0:
                z = torch.randn(tuple(b.shape), generator=gen, dtype=_work_dtype(b))
                b.copy_((math.sqrt(sigma_b2) * z).to(b.dtype))
            else:
                b.zero_()
    return kind, gain, note
