"""Deep kernel shaping (DKS) and tailored activation transformation (TAT): solving for the shaped activation.

Both methods replace phi by phi_hat(h) = output_scale * (phi(input_scale * h + input_shift) +
output_shift) (:func:`isometry.shaping.shaped_activation`) in a network whose weights have variance
1 / fan_in (sigma_w2 = 1, sigma_b2 = 0) and whose inputs have unit squared length per unit, so that
the whole network's kernel function stays close to the identity. In terms of the local maps at
unit length (:class:`isometry.shaping.LocalMaps`) and an architecture ``subnet`` (the maximal
C-map composition, :class:`~isometry.shaping.Chain` for a plain chain of ``depth`` layers):

DKS (Martens et al. 2021, sec. 5):
    Q(1) = 1, Q'(1) = 1, C(0) = 0 and C'(1) = t with subnet(1, y -> t y) = zeta, the network's
    maximal C'_f(1) (t = zeta^(1/depth) for a chain). output_shift = -E[phi(a z + b)] gives C(0) = 0
    and output_scale gives Q(1) = 1; (input_scale, input_shift) solve the remaining two equations.
    For positively homogeneous units the slope is solved instead of the input scale (leaky ReLU:
    ``negative_slope`` and ``input_shift``); ReLU keeps its zero slope, its input shift is +-1 and
    only C'(1) = t is imposed (the choices of the reference implementation, dks 0.1.2).

TAT for smooth units (Zhang et al. 2022, sec. 4.3):
    Q(1) = 1, Q'(1) = 1, C'(1) = 1 and C''(1) = t with subnet(0, y -> y + t) = tau, the network's
    maximal C''_f(1) (t = tau / depth for a chain); (input_scale, input_shift, output_shift) solve
    the three equations, output_scale gives Q(1) = 1. A unit whose phi' jumps has C''(1) = inf and
    cannot be shaped this way.

TAT for (leaky) ReLU (Zhang et al. 2022, sec. 4.2):
    phi_hat = output_scale * LeakyReLU(negative_slope) with output_scale = sqrt(2 / (1 + s^2)) (Q(1) = 1)
    and the slope s solving subnet(0, C_s) = eta, the network's maximal C_f(0).

The multidimensional equations are solved by :func:`scipy.optimize.root` (Powell's hybrid method)
from the fixed starting points of the reference implementation (random ones only if none of those
converges), the one-dimensional ones by bracketed Brent iterations. The equations have several
roots (e.g. a tanh TAT root with a steep, strongly shifted unit, or silu roots with shifts of 5-15
where the unit is nearly linear); the one with the smallest |input_shift|, the least reshaped
input, is returned (it is also the root the reference implementation keeps). It is refined by
Newton steps to the rounding level of the quadrature (the centred moments are summed directly, so
E[phi_hat^2] keeps its accuracy when phi varies little about a large mean) and checked by its
residual: the local maps of the returned activation, recomputed from its record, match the targets
to 1e-10, and the network-level value to 1e-8. Among equivalent roots the canonical one is
returned: input_scale > 0 (the Gaussian is symmetric, so the sign of the input scale changes no
local map) and, for point-symmetric phi (phi(-u) = 2 m - phi(u), e.g. tanh, sigmoid),
input_shift >= 0 (the mirror root -phi_hat(-h) has the same kernel).
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import numpy as np
from scipy import optimize

from ..activations import Activation, get_activation
from .activation import shaped_activation
from .local import (Chain, Composed, LocalMaps, ResidualChain, _combine, _jumps, _raw_moments, local_c_map, local_maps,
                    network_c_map)

__all__ = ["KernelShaping", "ShapingIsometry", "dks_transform", "tat_transform"]

_RESIDUAL_TOL = 1e-10
_N_STARTS = 50
_SEED = 123
# starting values of the reference implementation (dks 0.1.2), tried in this order before random ones
_ALWAYS_TRY = {"input_scale": (1.0, 0.1), "input_shift": (0.0, 1.0, -1.0), "output_shift": (0.0, 1.0, -1.0),
               "negative_slope": (0.0, 0.5)}
_SAMPLE_RANGE = {"input_scale": (0.0, 2.0), "input_shift": (-3.0, 3.0), "output_shift": (-3.0, 3.0),
                 "negative_slope": (0.0, 1.0)}


# ------------------------------------------------------------------ results
@dataclass(frozen=True)
class ShapingIsometry:
    """How isometric a network of shaped layers is: the eigenvalues lambda of J J^T for its
    input-output Jacobian J with sigma_w2 = 1, sigma_b2 = 0 and unit input length, so that every
    layer sits at q = 1 (:meth:`KernelShaping.isometry`).

    Attributes:
        activation: the shaped activation's name.
        depth: the number of nonlinear layers on the longest path.
        weights: the weight law.
        chi: sigma_w2 mu_1 = C'(1), the mean squared singular value per nonlinear layer.
        mean: E[lambda] (chi^depth for a chain).
        variance: Var[lambda] (Pennington et al. 2017, eq. 16, for a chain).
        normalised_variance: Var[lambda] / E[lambda]^2 (0 for an exact isometry).
        s_max: the largest singular value of J (square root of the right edge of the law; NaN
            unless the architecture is a plain chain).
        architecture: the architecture's ``to_dict()`` (``{"kind": "chain", "depth": L}``, ...).
    """

    activation: str
    depth: int
    weights: str
    chi: float
    mean: float
    variance: float
    normalised_variance: float
    s_max: float
    architecture: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"activation": self.activation, "depth": self.depth, "weights": self.weights, "chi": self.chi,
                "mean": self.mean, "variance": self.variance, "normalised_variance": self.normalised_variance,
                "s_max": self.s_max, "architecture": dict(self.architecture)}

    def __str__(self) -> str:
        kind = self.architecture.get("kind", "chain")
        where = f"depth {self.depth}" + ("" if kind == "chain" else f" ({kind.replace('_', ' ')})")
        return (f"{self.activation}, {where}, {self.weights} weights: E[lambda] = {self.mean:.4g}, "
                f"Var[lambda] = {self.variance:.4g} (relative {self.normalised_variance:.4g}), "
                f"s_max = {self.s_max:.4g}")


@dataclass(frozen=True, eq=False)
class KernelShaping:
    """A shaped activation and the parameters DKS or TAT chose for it.

    The shaped activation is ``activation`` (an :class:`isometry.Activation`, usable everywhere an
    activation is): phi_hat(h) = output_scale * (phi(input_scale * h + input_shift) + output_shift),
    where phi is the base unit (a leaky ReLU with ``negative_slope`` when the slope was solved).

    Attributes:
        method: "dks" or "tat".
        base: the name of the unit that was shaped.
        activation: the shaped activation.
        input_scale, input_shift, output_scale, output_shift: the affine maps around phi.
        negative_slope: the solved leaky-ReLU slope (None when the unit's shape was kept).
        depth: the number of nonlinear layers on the longest path (None when ``subnet`` has none).
        subnet: the architecture, subnet(x, r) (e.g. :class:`~isometry.shaping.Chain`).
        targets: the network-level targets ({"zeta": ...}, {"tau": ...} or {"eta": ...}).
        achieved: the same network-level quantities of the solution (subnet composed with its local maps).
        local_targets: the local-map values that were imposed (:class:`LocalMaps` field names).
        local: the local maps of the shaped activation, recomputed from its record.
        residual: max |local value - local target| (<= 1e-10).
    """

    method: str
    base: str
    activation: Activation
    input_scale: float
    input_shift: float
    output_scale: float
    output_shift: float
    negative_slope: float | None
    depth: int | None
    subnet: Callable = field(repr=False)
    targets: Mapping[str, float] = field(default_factory=dict)
    achieved: Mapping[str, float] = field(default_factory=dict)
    local_targets: Mapping[str, float] = field(default_factory=dict)
    local: LocalMaps | None = None
    residual: float = 0.0

    @property
    def parameters(self) -> dict[str, float]:
        """The activation's parameters: the four affine numbers and, when solved, ``negative_slope``."""
        out = {"input_scale": self.input_scale, "input_shift": self.input_shift, "output_scale": self.output_scale,
               "output_shift": self.output_shift}
        if self.negative_slope is not None:
            out["negative_slope"] = self.negative_slope
        return out

    def to_dict(self) -> dict[str, Any]:
        sub = self.subnet.to_dict() if hasattr(self.subnet, "to_dict") else {"kind": "custom"}
        return {"method": self.method, "base": self.base, "activation": self.activation.name, **self.parameters,
                "negative_slope": self.negative_slope, "depth": self.depth, "subnet": sub,
                "targets": dict(self.targets), "achieved": dict(self.achieved),
                "local_targets": dict(self.local_targets), "local": self.local.to_dict() if self.local else None,
                "residual": self.residual}

    def network_c_map(self, c) -> np.ndarray:
        """The network's C-map: the local C-map of the shaped activation composed through the whole
        architecture (:func:`isometry.shaping.network_c_map`)."""
        return network_c_map(self.activation, c, self.subnet)

    def _depth(self, depth) -> int:
        if depth is None:
            if not isinstance(self.subnet, Chain):
                raise ValueError("depth: give the depth of the plain chain whose Jacobian to describe (the free-"
                                 "probability law is that of a chain; this shaping is for another architecture)")
            return self.subnet.depth
        return Chain(depth).depth

    def jacobian_spectrum(self, depth: int | None = None, *, weights="orthogonal"):
        """The law of the eigenvalues of J J^T for a chain of ``depth`` (default: this chain's) shaped
        layers with sigma_w2 = 1, sigma_b2 = 0 and unit input length, so q = 1 at every layer
        (:func:`isometry.jacobian_spectrum` with ``q0=1``).

        Raises:
            ValueError: the length map's solver (:func:`isometry.q_star`) does not return q* = 1 to
                1e-6: q = 1 is a fixed point with Q'(1) = 1, stable on one side only, which a Newton
                step from it may leave. :meth:`isometry` does not need the solver.
        """
        from ..spectrum import jacobian_spectrum

        sp = jacobian_spectrum(self.activation, self._depth(depth), sigma_w2=1.0, sigma_b2=0.0, weights=weights,
                               q0=1.0)
        if not abs(sp.q_star - 1.0) <= 1e-6:
            raise ValueError(
                f"the length map of {self.activation.name} was solved to q* = {sp.q_star:.6g}, not the fixed point "
                "q = 1 the shaped network keeps (Q(1) = 1, Q'(1) = 1); use .isometry() for the predictions at q = 1"
            )
        return sp

    def isometry(self, depth: int | None = None, *, weights="orthogonal", subnet: Callable | None = None
                 ) -> ShapingIsometry:
        """The predicted mean and variance of the eigenvalues of J J^T (and, for a chain, the largest
        singular value of J) for a network of shaped layers.

        With sigma_w2 = 1, sigma_b2 = 0 and unit input length every layer sits at q = 1, where
        chi = C'(1) = mu_1 (Q(1) = 1) and mu_k = E[phi_hat'(z)^(2k)].

        * A chain of L layers (``depth``, or a :class:`~isometry.shaping.Chain`): the law is that
          of the critical network at q* = 1 (:func:`isometry.jacobian_spectrum` with ``q_star=1``:
          the same D^l, weights scaled by 1 / sqrt(C'(1))) scaled by chi^L: E[lambda] = chi^L,
          Var[lambda] / E[lambda]^2 = L (mu_2/mu_1^2 - 1 - s_1), s_max = chi^(L/2) s_max,crit
          (Pennington et al. 2017, eqs. 15-16). For TAT (C'(1) = 1) the two networks coincide.
        * Residual blocks x -> w x + v f(x), f a chain of b layers
          (:class:`~isometry.shaping.ResidualChain`): the block's Jacobian w I + v J_f = w (I + X)
          with X = (v/w) J_f R-diagonal (Haar or Gaussian weights), so blocks are free factors
          with E[lambda] = w^2 (1 + c), c = (v/w)^2 mu_1^b, and normalised variance
          (2 c + c^2 kappa_b) / (1 + c)^2, kappa_b = b (mu_2/mu_1^2 - 1 - s_1) the normalised
          variance of J_f J_f^T (the block law of :mod:`isometry.residual`). Lengths stay 1 when
          E[phi_hat] = 0 (DKS: C(0) = 0); a unit with a mean (TAT) adds a common component to the
          stream that the prediction leaves out.
        * :class:`~isometry.shaping.Composed` parts multiply means and add normalised variances.

        Args:
            depth: a chain of ``depth`` layers (default: this shaping's architecture).
            weights: the weight law (``"orthogonal"`` or ``"gaussian"``).
            subnet: an architecture (:class:`Chain`, :class:`ResidualChain` or :class:`Composed` of
                them) instead of ``depth``.

        Example:
            >>> iso = tat_transform("tanh", 16).isometry()
            >>> round(iso.mean, 10)                   # TAT keeps C'(1) = 1: chi = 1
            1.0
        """
        from ..meanfield import mu
        from ..residual import _block_variances
        from ..spectrum import jacobian_spectrum, weight_law
        from ..spectrum.core import _normalised_variance

        if depth is not None and subnet is not None:
            raise ValueError("give depth or subnet, not both")
        arch = Chain(self._depth(depth)) if depth is not None else (self.subnet if subnet is None else subnet)
        parts = _flat_parts(arch)
        wl = weight_law(weights)
        mu1 = float(mu(self.activation, 1.0, 1))
        mu2 = float(mu(self.activation, 1.0, 2))
        chi = float(self.local.c_slope * self.local.q)
        log_mean, nv, layers = 0.0, 0.0, 0
        for part in parts:
            if isinstance(part, Chain):
                log_mean += part.depth * math.log(chi)
                nv += _normalised_variance(mu1, mu2, part.depth, wl)
                layers += part.depth
                continue
            w2, v2, b = part.shortcut_weight ** 2, part.residual_weight ** 2, part.branch_depth
            nv_branch = _normalised_variance(mu1, mu2, b, wl)
            layers += part.blocks * b
            if w2 == 0.0:  # no shortcut: a chain of blocks * b layers scaled by v
                log_mean += part.blocks * (math.log(v2) + b * math.log(chi))
                nv += part.blocks * nv_branch
                continue
            c = v2 / w2 * math.exp(b * math.log(chi))
            # one block as I + X with the normalised variance of X X^T = nv_branch (mu_2 = 1 + s_1 + nv_branch
            # with mu_1 = 1 puts it in the block law's kappa)
            block_nv = float(_block_variances(np.array([c]), np.array([1.0]), np.array([1.0 + wl.s1 + nv_branch]),
                                              wl.s1)[0])
            log_mean += part.blocks * (math.log(w2) + math.log1p(c))
            nv += part.blocks * block_nv
        mean = math.exp(log_mean)
        s_max = math.nan
        if len(parts) == 1 and isinstance(parts[0], Chain):
            crit = jacobian_spectrum(self.activation, parts[0].depth, q_star=1.0, weights=weights)
            s_max = math.exp(0.5 * (log_mean + float(crit.log_max_eigenvalue)))
        return ShapingIsometry(activation=self.activation.name, depth=int(layers), weights=wl.name, chi=chi,
                               mean=mean, variance=nv * mean * mean, normalised_variance=nv, s_max=s_max,
                               architecture=arch.to_dict())


def _flat_parts(arch) -> list:
    """The Chain and ResidualChain parts of an architecture, in order."""
    if isinstance(arch, (Chain, ResidualChain)):
        return [arch]
    if isinstance(arch, Composed):
        return [p for part in arch.parts for p in _flat_parts(part)]
    raise ValueError(f"subnet: the Jacobian's law is computed for Chain, ResidualChain and Composed architectures, "
                     f"not {arch!r}")


# ------------------------------------------------------------------ input checks
def _real(value, name: str) -> float:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{name} must be a real number, got {value!r}")
    return float(value)


def _architecture(depth, subnet) -> tuple[Callable, int | None]:
    if subnet is None:
        if depth is None:
            raise ValueError("depth: give the number of nonlinear layers of the chain (an integer >= 1) or a subnet")
        return Chain(depth), Chain(depth).depth
    if not callable(subnet) or not _takes_x_and_r(subnet):
        raise TypeError(f"subnet must be a callable subnet(x, r) -> float (e.g. isometry.shaping.Chain(depth)), "
                        f"got {subnet!r}")
    own = getattr(subnet, "depth", None)
    if depth is None:
        return subnet, own
    d = Chain(depth).depth
    if own is not None and own != d:
        raise ValueError(f"depth={depth!r} disagrees with the subnet's depth {own} (give one of them)")
    return subnet, d


def _takes_x_and_r(subnet) -> bool:
    """Whether ``subnet(x, r)`` can be called with two positional arguments (checked before solving,
    so a wrong callable is refused with a message naming subnet, not deep inside the solver)."""
    import inspect

    if isinstance(subnet, np.ufunc):  # ufuncs also accept ``out`` positionally: count real inputs
        return subnet.nin == 2
    try:
        sig = inspect.signature(subnet)
    except (TypeError, ValueError):  # no introspectable signature (a ufunc, a builtin)
        nin = getattr(subnet, "nin", None)
        return nin is None or nin == 2
    try:
        sig.bind(0.0, lambda x: x)
    except TypeError:
        return False
    return True


def _describe(depth, subnet) -> str:
    return f"depth={depth}" if isinstance(subnet, Chain) else f"this subnet (depth={depth})"


# ------------------------------------------------------------------ one-dimensional inversions
def _invert_increasing(f: Callable[[float], float], target: float, lo: float, start: float, name: str) -> float:
    """The x > lo with f(x) = target for increasing f (f below target near lo): bracket from ``start``
    by halving towards lo or doubling away from it, then Brent's method to rounding."""
    x = start
    v = f(x)
    if v >= target:
        hi = x
        for _ in range(1100):
            x = lo + 0.5 * (x - lo)
            if f(x) < target:
                break
            hi = x
        else:
            raise ValueError(f"{name}: target {target!r} is reached arbitrarily close to the end of the range")
        a, b = x, hi
    else:
        a = x
        for _ in range(2100):
            x = lo + 2.0 * (x - lo)
            v = f(x)
            while not math.isfinite(v) and x - a > 1e-12 * abs(a):
                x = a + 0.5 * (x - a)
                v = f(x)
            if v >= target:
                break
            if not math.isfinite(v):
                raise ValueError(f"{name}: the composition through the architecture is not finite near {x!r}")
            a = x
        else:
            raise ValueError(f"{name}: target {target!r} is not reached by the architecture")
        b = x
    return float(optimize.brentq(lambda y: f(y) - target, a, b, xtol=1e-300, rtol=4 * np.finfo(float).eps,
                                 maxiter=500))


# ------------------------------------------------------------------ multidimensional solves
def _starts(names: tuple[str, ...]) -> list[tuple[float, ...]]:
    pts = list(itertools.product(*(_ALWAYS_TRY[n] for n in names)))
    rs = np.random.RandomState(_SEED)
    while len(pts) < _N_STARTS:
        pts.append(tuple(rs.uniform(*_SAMPLE_RANGE[n]) for n in names))
    return pts


def _solve(residual: Callable[[np.ndarray], np.ndarray], names: tuple[str, ...],
           canonical: Callable[[np.ndarray], np.ndarray] = lambda x: x) -> np.ndarray | None:
    """The root of ``residual`` with the smallest |input_shift| among those reached from the reference
    starting points (in canonical form, refined to the rounding level); random starting points only
    when none of those converges (then the first root found)."""
    def safe(x):
        if not np.all(np.isfinite(x)):
            return np.full(len(names), _BAD)
        try:
            return residual(x)
        except ValueError:  # parameters that define no activation (e.g. input_scale = 0)
            return np.full(len(names), _BAD)

    def attempt(x0) -> np.ndarray | None:
        with np.errstate(all="ignore"):
            sol = optimize.root(safe, np.asarray(x0, dtype=float), method="hybr")
        if not sol.success or not np.all(np.isfinite(sol.x)) or not np.max(np.abs(safe(sol.x))) <= 1e-7:
            return None
        return np.asarray(canonical(sol.x), dtype=float)

    def refine(x: np.ndarray) -> np.ndarray | None:
        """Newton steps with a central-difference Jacobian while the residual decreases."""
        r = safe(x)
        for _ in range(8):
            err = float(np.max(np.abs(r)))
            if not err > 0:
                break
            step = 1e-6 * np.maximum(1.0, np.abs(x))
            jac = np.empty((x.size, x.size))
            for i in range(x.size):
                e = np.zeros(x.size)
                e[i] = step[i]
                jac[:, i] = (safe(x + e) - safe(x - e)) / (2.0 * step[i])
            try:
                x_new = x - np.linalg.solve(jac, r)
            except np.linalg.LinAlgError:
                break
            r_new = safe(x_new)
            if not float(np.max(np.abs(r_new))) < err:
                break
            x, r = x_new, r_new
        x = np.asarray(canonical(x), dtype=float)
        r = safe(x)
        return x if np.all(np.isfinite(r)) and float(np.max(np.abs(r))) <= 0.1 * _RESIDUAL_TOL else None

    shift = names.index("input_shift")
    starts = _starts(names)
    n_fixed = len(list(itertools.product(*(_ALWAYS_TRY[n] for n in names))))
    found = [x for x in (attempt(x0) for x0 in starts[:n_fixed]) if x is not None]
    for x in sorted(found, key=lambda x: abs(x[shift])):
        x = refine(x)
        if x is not None:
            return x
    for x0 in starts[n_fixed:]:
        x = attempt(x0)
        x = refine(x) if x is not None else None
        if x is not None:
            return x
    return None


_BAD = 1e3  # residual returned where the trial parameters make phi_hat undefined (zero variance, ...)


def _point_symmetry(a: Activation) -> float | None:
    """m with phi(-u) = 2 m - phi(u) for all u (checked on a grid), else None."""
    u = np.linspace(0.05, 6.05, 61)
    s = np.asarray(a.phi(u), dtype=float) + np.asarray(a.phi(-u), dtype=float)
    scale = max(float(np.max(np.abs(a.phi(u)))), 1e-300)
    if np.ptp(s) <= 1e-13 * scale and abs(2.0 * float(a.phi(np.array(0.0))) - s[0]) <= 1e-13 * scale:
        return 0.5 * float(s[0])
    return None


def _canonical(base: Activation, x: np.ndarray, m: float | None) -> np.ndarray:
    """(input_scale, input_shift[, output_shift]) with input_scale > 0 and, for point-symmetric phi,
    input_shift >= 0 (the mirror solution has the same local maps)."""
    x = np.array(x, dtype=float)
    x[0] = abs(x[0])
    if m is not None and x[1] < 0:
        x[1] = -x[1]
        if x.size > 2:
            x[2] = -2.0 * m - x[2]
    return x


# ------------------------------------------------------------------ leaky-ReLU family
def _leaky(s: float) -> Activation:
    return get_activation("leaky_relu", alpha=s) if s > 0 else get_activation("relu")


def _homogeneous_slopes(base: Activation) -> tuple[float, float]:
    """(p, n): phi(h) = p h for h > 0 and n h for h < 0 (a positively homogeneous unit)."""
    return float(base.phi(np.array(1.0))), -float(base.phi(np.array(-1.0)))


def _is_leaky_family(base: Activation) -> bool:
    if not base.homogeneous:
        return False
    p, n = _homogeneous_slopes(base)
    return p != n


# ------------------------------------------------------------------ assembling a result
def _result(method: str, base: Activation, shaped: Activation, params: dict, slope: float | None, depth, subnet,
            targets: dict, local_targets: dict, network: Callable[[LocalMaps], dict]) -> KernelShaping:
    loc = local_maps(shaped)
    residual = max(abs(getattr(loc, k) - v) for k, v in local_targets.items())
    if not residual <= _RESIDUAL_TOL:
        raise ValueError(
            f"{method}_transform({base.name!r}): the solution misses the local targets by {residual:.3g} "
            f"(local maps {loc.to_dict()}, targets {local_targets}); no accurate solution for {targets}"
        )
    achieved = network(loc)
    for k, v in targets.items():
        if not abs(achieved[k] - v) <= 1e-8 * max(1.0, abs(v)):
            raise ValueError(
                f"{method}_transform({base.name!r}): the network reaches {k}={achieved[k]!r}, not {v!r}: the local "
                f"maps are too close to linear for float64 at depth={depth} (use a smaller depth)"
            )
    return KernelShaping(
        method=method, base=base.name, activation=shaped, negative_slope=slope, depth=depth, subnet=subnet,
        targets=targets, achieved=achieved, local_targets=local_targets, local=loc, residual=float(residual),
        **params,
    )


# ------------------------------------------------------------------ DKS
def dks_transform(activation, depth: int | None = None, *, zeta: float = 1.5, subnet: Callable | None = None
                  ) -> KernelShaping:
    """Deep kernel shaping (Martens et al. 2021): the shaped activation whose network has maximal C'_f(1) = zeta.

    Conditions (sec. 5): Q(1) = 1, Q'(1) = 1, C(0) = 0 and C'(1) = t with subnet(1, y -> t y) = zeta
    (t = zeta^(1/depth) for a chain of ``depth`` layers). C'_f(1) is the mean of the eigenvalues of
    J J^T of the network (weights of variance 1 / fan_in), so zeta sets how far from an isometry it is.

    Args:
        activation: the unit to shape: a registry name, an :class:`isometry.Activation` or a callable.
        depth: the number of nonlinear layers of the plain chain (or of the longest path of ``subnet``).
        zeta: the target maximal C'_f(1), > 1 (1.5 in the paper).
        subnet: the architecture as a subnetwork maximising function subnet(x, r) (default
            ``Chain(depth)``; see :class:`~isometry.shaping.ResidualChain`).

    Returns:
        A :class:`KernelShaping` with the shaped activation and its parameters.

    Raises:
        ValueError: zeta <= 1, a bad depth, or no shaped activation of this unit meets the targets
            (the message names the parameter and what is possible).

    References:
        J. Martens, A. Ballard, G. Desjardins, G. Swirszcz, V. Dalibard, J. Sohl-Dickstein, S. Schoenholz,
        "Rapid training of deep neural networks without skip connections or normalization layers using
        Deep Kernel Shaping", arXiv:2110.01765 (2021).

    Example:
        >>> s = dks_transform("tanh", 16)
        >>> round(s.input_scale, 6), round(s.input_shift, 6)
        (0.231056, 0.614975)
        >>> round(s.achieved["zeta"], 12)
        1.5
    """
    base = get_activation(activation)
    zeta = _real(zeta, "zeta")
    if not (math.isfinite(zeta) and zeta > 1.0):
        raise ValueError(f"zeta must be a finite number > 1 (the network's maximal C'_f(1)), got {zeta!r}")
    subnet, depth = _architecture(depth, subnet)
    where = _describe(depth, subnet)
    t = _invert_increasing(lambda x: float(subnet(1.0, lambda y: x * y)), zeta, 1.0, zeta, "zeta")
    name = f"dks({base.name})"
    targets = {"zeta": zeta}

    def network(loc: LocalMaps) -> dict:
        return {"zeta": float(subnet(1.0, lambda y: loc.c_slope * y))}

    if base.homogeneous:
        p, n = _homogeneous_slopes(base)
        if not (p > 0 and 0.0 <= n / p < 1.0):
            raise ValueError(f"activation {base.name!r}: a positively homogeneous unit can be shaped only when it is "
                             "a (leaky) ReLU (0 <= negative slope < positive slope); the linear unit's C-map is the "
                             "identity")
        if n == 0.0:
            return _dks_relu(base, t, name, depth, subnet, targets, network, where)
        return _dks_leaky(base, t, name, depth, subnet, targets, network, where)

    def residual(x):
        a, b = x
        raw = _raw_moments(shaped_activation(base, input_scale=a, input_shift=b), None, curvature=False)
        if not (math.isfinite(raw.s2) and raw.s2 > 1e-300):
            return np.array([_BAD, _BAD])
        loc = _combine(name, raw, 1.0 / math.sqrt(raw.s2))
        return np.array([loc.q_slope - 1.0, loc.c_slope - t])

    m = _point_symmetry(base)
    x = _solve(residual, ("input_scale", "input_shift"), lambda x: _canonical(base, x, m))
    if x is None:
        raise ValueError(
            f"dks_transform({base.name!r}): no input_scale, input_shift give Q'(1) = 1 and C'(1) = {t:.10g} "
            f"(zeta={zeta!r} with {where}); try a zeta closer to 1 or a larger depth"
        )
    a, b = float(x[0]), float(x[1]) + 0.0
    g, d = _centred_normalised(base, a, b)
    params = {"input_scale": a, "input_shift": b, "output_scale": g, "output_shift": d}
    shaped = shaped_activation(base, **params, name=name)
    local_targets = {"q": 1.0, "q_slope": 1.0, "c_zero": 0.0, "c_slope": t}
    return _result("dks", base, shaped, params, None, depth, subnet, targets, local_targets, network)


def _centred_normalised(base: Activation, a: float, b: float) -> tuple[float, float]:
    """(output_scale, output_shift) giving E[phi_hat] = 0 and E[phi_hat^2] = 1."""
    raw = _raw_moments(shaped_activation(base, input_scale=a, input_shift=b), None, curvature=False)
    return 1.0 / math.sqrt(raw.s2), raw.shift


def _dks_relu(base, t, name, depth, subnet, targets, network, where) -> KernelShaping:
    """ReLU: slope kept at 0, input_shift = +1 (or -1 beyond the C'(1) of the centred ReLU), C'(1) = t."""
    relu = _leaky(0.0)
    raw = _raw_moments(relu, None, curvature=False)
    c_centred = raw.d2 / raw.s2  # C'(1) of the centred, normalised ReLU: pi / (pi - 1)
    b = 1.0 if t < c_centred else -1.0

    def c_slope(a):
        r = _raw_moments(shaped_activation(relu, input_scale=a, input_shift=b), None, curvature=False)
        return r.d2 / r.s2

    # C'(1) runs from 1 (a -> 0, linear) up to c_centred for b = +1, and from inf down to c_centred for b = -1
    if b > 0:
        a = _invert_increasing(c_slope, t, 0.0, 1.0, "zeta")
    else:
        a = 1.0 / _invert_increasing(lambda u: c_slope(1.0 / u), t, 0.0, 1.0, "zeta")
    g, d = _centred_normalised(relu, a, b)
    params = {"input_scale": a, "input_shift": b, "output_scale": g, "output_shift": d}
    shaped = shaped_activation(relu, **params, name=name)
    local_targets = {"q": 1.0, "c_zero": 0.0, "c_slope": t}
    return _result("dks", base, shaped, params, None, depth, subnet, targets, local_targets, network)


def _dks_leaky(base, t, name, depth, subnet, targets, network, where) -> KernelShaping:
    """Leaky ReLU: (negative_slope, input_shift) solve Q'(1) = 1 and C'(1) = t (input_scale = 1)."""

    def residual(x):
        s, b = x
        if not (0.0 <= s < 1.0):
            return np.array([_BAD, _BAD])
        raw = _raw_moments(shaped_activation(_leaky(s), input_shift=b), None, curvature=False)
        if not (math.isfinite(raw.s2) and raw.s2 > 1e-300):
            return np.array([_BAD, _BAD])
        loc = _combine(name, raw, 1.0 / math.sqrt(raw.s2))
        return np.array([loc.q_slope - 1.0, loc.c_slope - t])

    x = _solve(residual, ("negative_slope", "input_shift"))
    if x is None:
        raise ValueError(
            f"dks_transform({base.name!r}): no negative_slope in [0, 1) and input_shift give Q'(1) = 1 and "
            f"C'(1) = {t:.10g} ({where}); try a zeta closer to 1 or a larger depth"
        )
    s, b = float(x[0]), float(x[1])
    g, d = _centred_normalised(_leaky(s), 1.0, b)
    params = {"input_scale": 1.0, "input_shift": b, "output_scale": g, "output_shift": d}
    shaped = shaped_activation(_leaky(s), **params, name=name)
    local_targets = {"q": 1.0, "q_slope": 1.0, "c_zero": 0.0, "c_slope": t}
    return _result("dks", base, shaped, params, s, depth, subnet, targets, local_targets, network)


# ------------------------------------------------------------------ TAT
def tat_transform(activation, depth: int | None = None, *, tau: float = 0.3, eta: float = 0.9,
                  subnet: Callable | None = None) -> KernelShaping:
    """Tailored activation transformation (Zhang et al. 2022): shape phi so the network's kernel stays near linear.

    Smooth units (sec. 4.3): Q(1) = 1, Q'(1) = 1, C'(1) = 1 and C''(1) = t with subnet(0, y -> y + t)
    = tau, the network's maximal C''_f(1) (t = tau / depth for a chain). The network is then exactly
    critical (chi = C'(1) = 1) at q* = 1.

    ReLU and leaky ReLU (positively homogeneous units, sec. 4.2): the shaped unit is
    sqrt(2 / (1 + s^2)) LeakyReLU(s) with the negative slope s solving subnet(0, C_s) = eta, the
    network's maximal C_f(0) (the base's own slope is replaced).

    Args:
        activation: the unit to shape (registry name, :class:`isometry.Activation` or callable).
        depth: the number of nonlinear layers of the plain chain (or of the longest path of ``subnet``).
        tau: the target maximal C''_f(1) for smooth units, > 0 (0.3 in the paper).
        eta: the target maximal C_f(0) for (leaky) ReLU, in (0, 1) (0.9 in the paper).
        subnet: the architecture as a subnetwork maximising function (default ``Chain(depth)``).

    Returns:
        A :class:`KernelShaping` (``negative_slope`` set for the (leaky) ReLU).

    Raises:
        ValueError: tau <= 0, eta outside (0, 1), a unit whose phi' jumps (C''(1) = inf), an eta
            beyond what a ReLU network of this depth reaches, or no solution.

    References:
        G. Zhang, A. Botev, J. Martens, "Deep Learning without Shortcuts: Shaping the Kernel with
        Tailored Rectifiers", ICLR 2022.

    Example:
        >>> s = tat_transform("leaky_relu", 16)
        >>> round(s.negative_slope, 6), round(s.output_scale, 6)
        (0.104499, 1.406555)
    """
    base = get_activation(activation)
    tau = _real(tau, "tau")
    eta = _real(eta, "eta")
    if not (math.isfinite(tau) and tau > 0.0):
        raise ValueError(f"tau must be a finite number > 0 (the network's maximal C''_f(1)), got {tau!r}")
    if not (0.0 < eta < 1.0):
        raise ValueError(f"eta must lie in (0, 1) (the network's maximal C_f(0)), got {eta!r}")
    subnet, depth = _architecture(depth, subnet)
    where = _describe(depth, subnet)
    name = f"tat({base.name})"
    if base.homogeneous:
        if not _is_leaky_family(base):
            raise ValueError(f"activation {base.name!r}: the linear unit's C-map is the identity; it cannot be shaped")
        return _tat_leaky(base, eta, name, depth, subnet, where)
    jumps = _jumps(base)
    if jumps:
        raise ValueError(
            f"tat_transform({base.name!r}): phi' jumps at h = {jumps[0]:g}, so C''(1) is infinite and no tau can be "
            "met; TAT shapes smooth units (tanh, softplus, silu, gelu, ...) and (leaky) ReLU"
        )
    t = _invert_increasing(lambda x: float(subnet(0.0, lambda y: y + x)), tau, 0.0, tau, "tau")

    def residual(x):
        a, b, d = x
        raw = _raw_moments(shaped_activation(base, input_scale=a, input_shift=b), d)
        if not (math.isfinite(raw.s2) and raw.s2 > 1e-300):
            return np.array([_BAD, _BAD, _BAD])
        loc = _combine(name, raw, 1.0 / math.sqrt(raw.s2))
        return np.array([loc.q_slope - 1.0, loc.c_slope - 1.0, loc.c_curvature - t])

    def output_scale(x):
        raw = _raw_moments(shaped_activation(base, input_scale=x[0], input_shift=x[1]), x[2], curvature=False)
        return 1.0 / math.sqrt(raw.s2)

    m = _point_symmetry(base)
    x = _solve(residual, ("input_scale", "input_shift", "output_shift"), lambda x: _canonical(base, x, m))
    if x is None:
        raise ValueError(
            f"tat_transform({base.name!r}): no input_scale, input_shift, output_shift give Q'(1) = 1, C'(1) = 1 and "
            f"C''(1) = {t:.10g} (tau={tau!r} with {where}); try another tau"
        )
    a, b, d = float(x[0]), float(x[1]) + 0.0, float(x[2])
    g = output_scale((a, b, d))
    params = {"input_scale": a, "input_shift": b, "output_scale": g, "output_shift": d}
    shaped = shaped_activation(base, **params, name=name)
    local_targets = {"q": 1.0, "q_slope": 1.0, "c_slope": 1.0, "c_curvature": t}

    def network(loc: LocalMaps) -> dict:
        return {"tau": float(subnet(0.0, lambda y: y + loc.c_curvature))}

    return _result("tat", base, shaped, params, None, depth, subnet, {"tau": tau}, local_targets, network)


def _scalar_c_map(a: Activation) -> Callable[[float], float]:
    """c -> C(c) as a float, from the exact kernel when the record has one (clipped to [-1, 1])."""
    if a.kernel is not None:
        k = a.kernel
        q = float(np.asarray(a.kernel(np.array(1.0), np.array(1.0)), dtype=float))

        def r(c: float) -> float:
            return min(max(float(k(np.array(1.0), np.array(c))) / q, -1.0), 1.0)

        return r
    return lambda c: float(np.clip(local_c_map(a, c), -1.0, 1.0))


def _tat_leaky(base, eta, name, depth, subnet, where) -> KernelShaping:
    """sqrt(2 / (1 + s^2)) LeakyReLU(s) with subnet(0, C_s) = eta."""

    def c0(s: float) -> float:  # the network's maximal C_f(0) for slope s
        return float(subnet(0.0, _scalar_c_map(_leaky(s))))

    top = c0(0.0)
    if not eta <= top:
        raise ValueError(
            f"eta={eta!r} is out of reach with {where}: a ReLU network of this architecture has C_f(0) = {top:.6g}, "
            f"the largest a leaky ReLU reaches; valid range 0 < eta <= {top:.6g} (or use a deeper network)"
        )
    s_max = 1.0 - 1e-9  # C_s -> identity as s -> 1
    if eta == top:
        s = 0.0
    else:
        s = float(optimize.brentq(lambda s: c0(s) - eta, 0.0, s_max, xtol=1e-15, rtol=4 * np.finfo(float).eps))
    unit = _leaky(s)
    g = 1.0 / math.sqrt(float(unit.e_phi2(np.array(1.0))))
    params = {"input_scale": 1.0, "input_shift": 0.0, "output_scale": g, "output_shift": 0.0}
    shaped = shaped_activation(unit, **params, name=name)
    local_targets = {"q": 1.0, "q_slope": 1.0}

    def network(loc: LocalMaps) -> dict:
        return {"eta": float(subnet(0.0, _scalar_c_map(shaped)))}

    res = _result("tat", base, shaped, params, s, depth, subnet, {"eta": eta}, local_targets, network)
    if not abs(res.achieved["eta"] - eta) <= _RESIDUAL_TOL:
        raise ValueError(f"tat_transform({base.name!r}): the slope {s!r} gives C_f(0) = {res.achieved['eta']!r}, "
                         f"not eta={eta!r}")
    return res
