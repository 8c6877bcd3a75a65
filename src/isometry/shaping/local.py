"""Local Q- and C-maps of an activation at unit input length, and their composition through a network.

For a layer h -> W phi(h) with E[W_ij^2] = 1 / fan_in (Martens et al. 2021, sec. 3), an input of
squared length q (per unit) goes to the length Q(q) and two inputs of unit length and correlation
c go to the correlation C(c):

    Q(q) = E[phi(sqrt(q) z)^2],                   z ~ N(0, 1)         (= isometry.q_map(phi, q, 1, 0))
    C(c) = E[phi(u) phi(v)] / Q(1),               u, v ~ N(0, 1), E[u v] = c

so C(1) = 1 (the normalisation of the DKS reference code; it is the plain kernel when Q(1) = 1,
as for every shaped activation). Kernel shaping prescribes the few numbers

    Q(1),  Q'(1) = E[phi(z) phi'(z) z],  C(0) = E[phi(z)]^2 / Q(1),
    C'(1) = E[phi'(z)^2] / Q(1),  C'(0) = E[phi'(z)]^2 / Q(1),  C''(1) = E[phi''(z)^2] / Q(1)

(the last two from the Hermite expansion C(c) = sum_n a_n^2 c^n / Q(1): C^(k)(c) =
E[phi^(k)(u) phi^(k)(v)] / Q(1)). C''(1) is infinite when phi' jumps (ReLU, SELU, hard tanh).
Exact forms of the :class:`isometry.Activation` record are used where it has them (``e_phi2``,
``kernel``, ``mu_exact``; Q'(1) = Q(1) for positively homogeneous units); everything else is one
pass of the composite Gauss-Legendre rule of :mod:`isometry.gaussian` over the nodes split at the
kinks. phi'' is the complex-step derivative of the record's complex phi' when it has one, else a
fourth-order central difference of phi'.

A network's C-map composes the local ones. A *subnetwork maximising function* ``subnet(x, r)``
(Zhang et al. 2022, appendix B; ``subnet_max_func`` of the dks package) evaluates the composition
of a scalar map r through the architecture, maximised over its subnetworks (what DKS and TAT
constrain: the maximal C'_f(1), C''_f(1), C_f(0)). The architectures here also compose r through
the whole network alone, ``compose(x, r)``: the network's own C-map is ``compose(c, C)``
(:func:`network_c_map`). For a plain chain the two agree; for residual blocks the maximum can be
the branch alone (a DKS residual network contracts correlations less in one branch than in all
its blocks together). :class:`Chain`, :class:`ResidualChain` and :class:`Composed` are the
common ones.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Callable

import numpy as np

from ..activations import Activation, get_activation
from ..gaussian import gauss_nodes
from ..meanfield import _kernel

__all__ = [
    "LocalMaps",
    "local_maps",
    "local_c_map",
    "network_c_map",
    "Chain",
    "ResidualChain",
    "Composed",
]


# ------------------------------------------------------------------ one quadrature pass
def _jumps(a: Activation) -> tuple[float, ...]:
    """The kinks of phi at which phi' jumps (phi'' has a delta there, so C''(1) is infinite)."""
    out = []
    for k in a.kinks:
        e = 1e-9 * (1.0 + abs(k))
        lo, hi = (float(a.dphi(np.array(k + s * e))) for s in (-1.0, 1.0))
        if abs(hi - lo) > 1e-6 * max(abs(hi), abs(lo), 1e-300):
            out.append(float(k))
    return tuple(out)


def _second_derivative(a: Activation) -> Callable[[np.ndarray], np.ndarray]:
    """phi'': complex step on the record's complex phi' when it has one, else central differences of phi'."""
    if a.dphi_complex is not None:
        dc = a.dphi_complex

        def d2(h):
            return np.imag(dc(np.asarray(h, dtype=float) + 1e-30j)) / 1e-30

        return d2
    dphi = a.dphi

    def d2_fd(h):
        h = np.asarray(h, dtype=float)
        e = 1e-3 * np.maximum(1.0, np.abs(h))
        return (-dphi(h + 2 * e) + 8 * dphi(h + e) - 8 * dphi(h - e) + dphi(h - 2 * e)) / (12 * e)

    return d2_fd


@dataclass(frozen=True)
class _Raw:
    """Gaussian moments of psi = phi + shift at unit length (z ~ N(0, 1)); phi' = psi'."""

    shift: float  # the constant added to phi
    m: float  # E[psi]
    s2: float  # E[psi^2]
    d1: float  # E[psi']
    d2: float  # E[psi'^2]
    p1: float  # E[psi psi' z]
    dd: float  # E[psi''^2] (inf when psi' jumps; nan when not asked for)


def _raw_moments(a: Activation, shift: float | None = 0.0, curvature: bool = True) -> _Raw:
    """One pass of the composite Gauss-Legendre rule over the nodes split at the kinks of ``a``, for
    psi = phi + ``shift`` (``None``: shift = -E[phi], centred by a second pass, which keeps E[psi^2]
    accurate when phi varies little about a large mean)."""
    z, w = gauss_nodes(a.kinks)
    with np.errstate(over="ignore", invalid="ignore"):
        p = np.asarray(a.phi(z), dtype=float)
        if shift is None:
            shift = -float(w @ p)
        p = p + shift
        d = np.asarray(a.dphi(z), dtype=float)
        dd = math.nan
        if curvature:
            if _jumps(a):
                dd = math.inf
            else:
                s = np.asarray(_second_derivative(a)(z), dtype=float)
                dd = float(w @ (s * s))
        return _Raw(float(shift), float(w @ p), float(w @ (p * p)), float(w @ d), float(w @ (d * d)),
                    float(w @ (p * d * z)), dd)


# ------------------------------------------------------------------ the local maps
@dataclass(frozen=True)
class LocalMaps:
    """The local Q- and C-map values of an activation at unit input length (Martens et al. 2021, sec. 3-4).

    Attributes:
        activation: the activation's name.
        q: Q(1) = E[phi(z)^2].
        q_slope: Q'(1) = E[phi(z) phi'(z) z].
        c_zero: C(0) = E[phi(z)]^2 / Q(1).
        c_slope: C'(1) = E[phi'(z)^2] / Q(1).
        c_slope_zero: C'(0) = E[phi'(z)]^2 / Q(1).
        c_curvature: C''(1) = E[phi''(z)^2] / Q(1) (inf when phi' jumps).
    """

    activation: str
    q: float
    q_slope: float
    c_zero: float
    c_slope: float
    c_slope_zero: float
    c_curvature: float

    def to_dict(self) -> dict:
        """The fields as a plain dict (inf stays a float; :func:`isometry._io.to_jsonable` maps it to None)."""
        return asdict(self)


def _combine(name: str, r: _Raw, scale: float = 1.0) -> LocalMaps:
    """Local maps of phi_hat = scale * psi from the raw moments of psi."""
    g2 = scale * scale
    q = g2 * r.s2
    return LocalMaps(
        activation=name,
        q=q,
        q_slope=g2 * r.p1,
        c_zero=g2 * r.m * r.m / q,
        c_slope=g2 * r.d2 / q,
        c_slope_zero=g2 * r.d1 * r.d1 / q,
        c_curvature=g2 * r.dd / q,
    )


def local_maps(activation) -> LocalMaps:
    """Q(1), Q'(1), C(0), C'(1), C'(0) and C''(1) of ``activation`` (see :class:`LocalMaps`).

    Exact where the record has exact forms: Q(1) from ``e_phi2``, C(0) from ``kernel``, C'(1)
    from ``mu_exact``, Q'(1) = Q(1) for positively homogeneous units; composite Gauss-Legendre
    quadrature otherwise.

    Args:
        activation: a registry name, an :class:`isometry.Activation` or a callable phi.

    Example:
        >>> m = local_maps("relu")
        >>> round(m.q, 12), round(m.c_slope, 12), m.c_curvature          # Q(1) = 1/2, C'(1) = 1
        (0.5, 1.0, inf)
    """
    a = get_activation(activation)
    r = _raw_moments(a)
    out = _combine(a.name, r)
    q = out.q
    if a.e_phi2 is not None:
        q = float(np.asarray(a.e_phi2(np.array(1.0)), dtype=float))
    if not (math.isfinite(q) and q > 0):
        raise ValueError(f"activation {a.name!r}: Q(1) = E[phi(z)^2] = {q!r}; the local maps need 0 < Q(1) < inf")
    c_zero = float(np.asarray(a.kernel(np.array(1.0), np.array(0.0)))) / q if a.kernel is not None else r.m * r.m / q
    mu1 = float(np.asarray(a.mu_exact(np.array(1.0), 1))) if a.mu_exact is not None else r.d2
    return LocalMaps(
        activation=a.name,
        q=q,
        q_slope=q if a.homogeneous else r.p1,
        c_zero=c_zero,
        c_slope=mu1 / q,
        c_slope_zero=r.d1 * r.d1 / q,
        c_curvature=r.dd / q,
    )


def local_c_map(activation, c) -> np.ndarray:
    """The local C-map C(c) = E[phi(u) phi(v)] / Q(1), u, v ~ N(0, 1) with correlation ``c``.

    The exact ``kernel`` of the record where it has one, else the two-dimensional composite rule
    of the mean field's correlation map (vectorised over ``c`` in [-1, 1]; about 1e-12 for smooth
    units, 1e-5 for units whose phi' jumps off 0, since the rule is not split along the kink).
    Unlike :func:`isometry.c_map` (taken at the fixed point q* of a network), the length here is 1.

    Example:
        >>> float(local_c_map("relu", 0.0))                # 1 / pi
        0.3183098861837907
    """
    a = get_activation(activation)
    c = np.asarray(c, dtype=float)
    if not np.all(np.isfinite(c)) or np.any(np.abs(c) > 1.0):
        raise ValueError(f"c must lie in [-1, 1], got {c if c.size < 8 else '<array>'}")
    q = local_maps(a).q if a.e_phi2 is None else float(np.asarray(a.e_phi2(np.array(1.0))))
    return (np.asarray(_kernel(a, 1.0, c), dtype=float) / q)[()]


# ------------------------------------------------------------------ architectures
MAX_DEPTH = 10**5
"""The deepest chain kernel shaping composes (layer by layer: up to ~10 s of C-map evaluations at this depth)."""


@dataclass(frozen=True)
class Chain:
    """A plain chain of ``depth`` nonlinear layers: subnet(x, r) = r(r(...r(x))) (``depth`` times).

    Its maximal slope function is x^depth and its maximal curvature function depth * x (Martens
    et al. 2021, sec. 5; Zhang et al. 2022, sec. 4).
    """

    depth: int

    def __post_init__(self):
        d = self.depth
        if isinstance(d, (bool, np.bool_)) or not isinstance(d, (int, np.integer)):
            raise TypeError(f"depth must be an integer, got {d!r}")
        if not 1 <= d <= MAX_DEPTH:
            raise ValueError(f"depth must be an integer in [1, {MAX_DEPTH:.0e}] (the chain's C-map is composed "
                             f"layer by layer), got {d!r}")
        object.__setattr__(self, "depth", int(d))

    def __call__(self, x: float, r: Callable[[float], float]) -> float:
        for _ in range(self.depth):
            x = r(x)
        return x

    def compose(self, x: float, r: Callable[[float], float]) -> float:
        """r composed through the network: the same as the subnetwork maximum for a chain."""
        return self(x, r)

    def to_dict(self) -> dict:
        return {"kind": "chain", "depth": self.depth}


@dataclass(frozen=True)
class ResidualChain:
    """``blocks`` residual blocks x -> w x + v f(x), f a chain of ``branch_depth`` nonlinear layers.

    With w^2 + v^2 = 1 (``shortcut_weight`` w, ``residual_weight`` v = sqrt(1 - w^2) by default)
    the block keeps unit lengths and maps correlations by c -> w^2 c + v^2 C_f(c) (Zhang et al.
    2022, appendix B; the modified ResNets of Martens et al. 2021). The subnetwork maximum also
    covers the residual branch alone: subnet(x, r) = max(block^blocks(x), r^branch_depth(x)).
    ``depth`` = blocks * branch_depth is the number of nonlinear layers on the longest path.
    """

    blocks: int
    shortcut_weight: float
    branch_depth: int = 1
    residual_weight: float | None = None

    def __post_init__(self):
        for name in ("blocks", "branch_depth"):
            v = getattr(self, name)
            if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, np.integer)):
                raise TypeError(f"{name} must be an integer, got {v!r}")
            if v < 1:
                raise ValueError(f"{name} must be >= 1, got {v!r}")
            object.__setattr__(self, name, int(v))
        w = self.shortcut_weight
        if isinstance(w, (bool, np.bool_)) or not isinstance(w, (int, float, np.integer, np.floating)):
            raise TypeError(f"shortcut_weight must be a real number, got {w!r}")
        if not (0.0 <= float(w) <= 1.0):
            raise ValueError(f"shortcut_weight must lie in [0, 1], got {w!r}")
        v = self.residual_weight
        if v is None:
            v = math.sqrt(1.0 - float(w) ** 2)
        elif not (math.isfinite(float(v)) and float(v) >= 0.0 and abs(float(w) ** 2 + float(v) ** 2 - 1.0) <= 1e-12):
            raise ValueError(
                f"residual_weight must be >= 0 with shortcut_weight^2 + residual_weight^2 = 1 (unit lengths), got "
                f"shortcut_weight={w!r}, residual_weight={self.residual_weight!r}"
            )
        object.__setattr__(self, "shortcut_weight", float(w))
        object.__setattr__(self, "residual_weight", float(v))

    @property
    def depth(self) -> int:
        return self.blocks * self.branch_depth

    def _branch(self, x: float, r: Callable[[float], float]) -> float:
        for _ in range(self.branch_depth):
            x = r(x)
        return x

    def __call__(self, x: float, r: Callable[[float], float]) -> float:
        return max(self.compose(x, r), self._branch(x, r))

    def compose(self, x: float, r: Callable[[float], float]) -> float:
        """r composed through the blocks: x -> w^2 x + v^2 r^branch_depth(x), ``blocks`` times."""
        w2, v2 = self.shortcut_weight ** 2, self.residual_weight ** 2
        for _ in range(self.blocks):
            x = w2 * x + v2 * self._branch(x, r)
        return x

    def to_dict(self) -> dict:
        return {"kind": "residual_chain", "blocks": self.blocks, "shortcut_weight": self.shortcut_weight,
                "residual_weight": self.residual_weight, "branch_depth": self.branch_depth}


@dataclass(frozen=True)
class Composed:
    """Architectures applied one after the other: subnet(x, r) = parts[-1](... parts[0](x, r) ..., r).

    A network made of a plain chain followed by residual blocks (a stem layer with its
    activation, then :class:`ResidualChain`) is ``Composed((Chain(1), ResidualChain(...)))``.
    Composing the parts' maxima is the maximum over the whole network's subnetworks for the maps
    kernel shaping composes (C-maps on [0, 1], slope and curvature functions): they are
    increasing and raise their argument through every block, so the longest path dominates.
    """

    parts: tuple

    def __post_init__(self):
        parts = tuple(self.parts)
        if not parts:
            raise ValueError("parts must not be empty")
        for p in parts:
            if not callable(p):
                raise TypeError(f"every part must be a callable subnet(x, r), got {p!r}")
        object.__setattr__(self, "parts", parts)

    @property
    def depth(self) -> int | None:
        """The number of nonlinear layers on the longest path (None when a part does not say)."""
        ds = [getattr(p, "depth", None) for p in self.parts]
        return None if any(d is None for d in ds) else int(sum(ds))

    def __call__(self, x: float, r: Callable[[float], float]) -> float:
        for p in self.parts:
            x = p(x, r)
        return x

    def compose(self, x: float, r: Callable[[float], float]) -> float:
        """r composed through the whole network (each part's ``compose`` where it has one)."""
        for p in self.parts:
            x = getattr(p, "compose", p)(x, r)
        return x

    def to_dict(self) -> dict:
        return {"kind": "composed",
                "parts": [p.to_dict() if hasattr(p, "to_dict") else {"kind": "custom"} for p in self.parts]}


def network_c_map(activation, c, subnet: Callable) -> np.ndarray:
    """The network's C-map: the local C-map C of ``activation`` composed through the architecture
    ``subnet``, ``subnet.compose(c, C)`` (the whole network, not the maximum over its subnetworks;
    ``subnet(c, C)`` for a callable without ``compose``), for each correlation in ``c``. Two inputs
    of unit length and correlation c leave a network of this architecture (weights of variance
    1 / fan_in, zero biases, infinite width) with correlation ``network_c_map(activation, c, subnet)``.

    Example:
        >>> round(float(network_c_map("relu", 0.0, Chain(2))), 6)        # C(C(0)) for ReLU
        0.493731
    """
    if not callable(subnet):
        raise TypeError(f"subnet must be a callable subnet(x, r), got {subnet!r}")
    a = get_activation(activation)
    c = np.asarray(c, dtype=float)
    if not np.all(np.isfinite(c)) or np.any(np.abs(c) > 1.0):
        raise ValueError(f"c must lie in [-1, 1], got {c if c.size < 8 else '<array>'}")

    def r(x):
        return float(np.clip(local_c_map(a, float(x)), -1.0, 1.0))

    f = getattr(subnet, "compose", subnet)
    out = np.array([float(f(float(ci), r)) for ci in c.ravel()]).reshape(c.shape)
    return out[()]
