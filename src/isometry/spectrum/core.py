"""The free-probability laws of J J^T: :class:`JacobianSpectrum` and :class:`UniversalSpectrum`.

J = D^L W^L ... D^1 W^1 with h ~ N(0, q*) at every layer (Pennington, Schoenholz
& Ganguli 2017, sec. 2; 2018). With the factors normalised to mean 1,

    S_{JJ^T}(z) = chi^{-L} S_{D^2}(z)^L S_{W^T W}(z)^L,     chi = sigma_w2 mu_1,

so lambda = chi^L lambda~, where lambda~ has mean 1 and variance
L (mu_2/mu_1^2 - 1 - s_1) (eq. 16; s_1 = 0 orthogonal, -1 Gaussian). The scale is kept
as ``L log chi`` so depth and distance from criticality never overflow; the bands of the
continuous part are traced by :mod:`isometry.spectrum.solver` on the scale log lambda.

:class:`BandSpectrum` implements the hooks of :class:`~isometry.spectrum.base.Spectrum`
for any law given by a solver parametrisation (its bands), a log-scale, atoms and an
exact S-transform series; the finite-depth and the universal (L -> infinity) laws are
its subclasses, and other free-probability laws (e.g. residual networks) can be too.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from .._checks import check_int, check_positive
from ..activations import get_activation
from ..meanfield import Q_STAR_SCAN, critical_point, mu, network_parameters
from . import series
from .base import Spectrum
from .d2 import D2Law, d2_law
from .s_transforms import WeightLaw, weight_law
from .solver import Band, FiniteDepth, Universal, band_cdf, solve_at, trace_bands

__all__ = [
    "BandSpectrum",
    "JacobianSpectrum",
    "UniversalSpectrum",
    "jacobian_spectrum",
    "jacobian_variance",
    "q_star_for_variance",
    "universal_spectrum",
    "MAX_DEPTH",
]

MAX_DEPTH = 10**7
"""The largest depth the finite-depth law is computed for (tested: bands, cdf and quantiles)."""

_MASS_TOL = 1e-3  # a traced law whose masses do not add up to 1 within this is refused (typical error: 1e-9)


# --------------------------------------------------------------------- the one variance formula
def _normalised_variance(mu1: float, mu2: float, depth: int, wl: WeightLaw) -> float:
    """Var[lambda / chi^L] = L (mu_2/mu_1^2 - 1 - s_1) (Pennington et al. 2017, eq. 16).

    ``s_1`` is the first S-transform coefficient of the normalised W^T W (0 orthogonal,
    -1 Gaussian). Rounding below 0 (orthogonal linear networks: exactly 0) is clipped.
    """
    return max(float(depth) * (mu2 / (mu1 * mu1) - 1.0 - wl.s1), 0.0)


def jacobian_variance(activation, depth: int, *, q_star: float, weights="orthogonal") -> float:
    """Variance of the eigenvalues of J J^T at the critical point (chi = 1) with fixed point q*.

    sigma^2_{JJ^T} = L (mu_2/mu_1^2 - 1 - s_1), mu_k = E[phi'(h)^(2k)], h ~ N(0, q*)
    (Pennington, Schoenholz & Ganguli 2017, eq. 16); s_1 = 0 for orthogonal weights, -1 for
    Gaussian weights. The mean of the eigenvalues is 1 there.

    Args:
        activation: a registry name, an :class:`isometry.Activation` or a callable phi.
        depth: L, the number of critical layers.
        q_star: the fixed point q* > 0 selecting the critical point.
        weights: "orthogonal", "gaussian", a :class:`WeightLaw` or an S-transform callable.

    Example:
        >>> round(jacobian_variance("relu", 10, q_star=1.0), 12)     # mu2/mu1^2 = 2 for ReLU
        10.0
        >>> round(jacobian_variance("linear", 10, q_star=1.0, weights="gaussian"), 12)
        10.0
    """
    a = get_activation(activation)
    L = _check_depth(depth)
    wl = weight_law(weights)
    cp = critical_point(a, q_star)
    return _normalised_variance(cp.mu1, cp.mu2, L, wl)


# --------------------------------------------------------------------- a law traced in bands
@dataclass(eq=False)
class _Engine:
    """What a :class:`BandSpectrum` is computed from.

    ``param``: a solver parametrisation (``FiniteDepth``, ``Universal``, or any object with
    their methods); ``log_scale``: lambda = exp(log_scale) lambda~; ``atoms``: (log lambda~,
    mass) with the atom at 0 as (-inf, mass); ``var_normalised``: Var[lambda~];
    ``s_series(K)``: the first K Taylor coefficients of the S-transform of lambda~.
    """

    param: Any
    log_scale: float
    atoms: tuple[tuple[float, float], ...]
    var_normalised: float
    s_series: Callable[[int], np.ndarray]
    cache: dict = field(default_factory=dict)


class BandSpectrum(Spectrum):
    """A free-probability law whose continuous part is traced in bands by the master-equation solver.

    Subclasses are dataclasses with their parameters and a private ``_engine`` (see
    :class:`_Engine`); everything else comes from here.
    """

    _engine: _Engine

    # ---------------------------------------------------------------- bands
    @property
    def _bands(self) -> list[Band]:
        e = self._engine
        b = e.cache.get("bands")
        if b is None:
            cont = 1.0 - sum(m for _, m in e.atoms)
            b = [] if cont < 1e-13 else trace_bands(e.param, np.inf)
            traced = sum(x.mass for x in b)
            if cont >= 1e-13 and not abs(traced - cont) <= _MASS_TOL:
                raise ValueError(
                    f"the spectrum ({self._title()}) could not be traced: its bands hold mass {traced:.6g} "
                    f"where {cont:.6g} is expected; this law is outside what the solver resolves (e.g. phi'(h)^2 "
                    "spanning more than a double's range at a large q*): try a smaller q_star"
                )
            e.cache["bands"] = b
        return b

    # ---------------------------------------------------------------- hooks
    def _atoms_log(self):
        s = self._engine.log_scale
        return tuple((t + s if t > -math.inf else t, m) for t, m in self._engine.atoms)

    def _support_log(self) -> tuple[float, float]:
        e = self._engine
        tops = [b.t_top for b in self._bands] + [t for t, m in e.atoms if m > 0 and t > -math.inf]
        bottoms = [b.t_bottom for b in self._bands] + [t for t, m in e.atoms if m > 0]
        return float(min(bottoms)) + e.log_scale, float(max(tops)) + e.log_scale

    def _pdf_log(self, t: np.ndarray) -> np.ndarray:
        e = self._engine
        t = np.asarray(t, dtype=float) - e.log_scale
        out = np.zeros(t.shape)
        for b in self._bands:
            sel = (t < b.t_top) & (t >= b.t[-1])
            if np.any(sel):
                _, m, _ = solve_at(e.param, b, t[sel])
                out[sel] += np.maximum(-m.imag, 0.0) / np.pi
            tail = t < b.t[-1]
            if np.any(tail):  # beyond the traced end (little mass there): the fitted tail in t
                out[tail] += b.tail_density(t[tail])
        return out

    def _cdf_log(self, t: np.ndarray) -> np.ndarray:
        e = self._engine
        t = np.asarray(t, dtype=float) - e.log_scale
        out = np.full(t.shape, float(sum(m for tt, m in e.atoms if tt == -math.inf)))
        for tt, m in e.atoms:
            if tt > -math.inf:  # lambda at the atom (to rounding of log lambda) includes it
                out += np.where(t >= tt - 4e-15 * (1.0 + abs(tt) + abs(e.log_scale)), m, 0.0)
        for b in self._bands:
            out += band_cdf(e.param, b, t)
        return np.clip(out, 0.0, 1.0)

    def _continuous_mass(self) -> float:
        return float(sum(b.mass for b in self._bands))

    def _quantile_table(self):
        e = self._engine
        ts = [t for b in self._bands for t in b.t] + [t for t, m in e.atoms if t > -math.inf]
        # below the traced end of a band reaching lambda -> 0: points inside its extrapolated tail
        ts += [b.t[-1] * (1e6 if b.tail_kind == "power" and b.t[-1] < 0 else 1.0)
               - 50.0 * (1.0 + 1.0 / max(b.tail_rate, 1e-300)) for b in self._bands if not b.lower_edge]
        tab = np.unique(np.asarray(ts, float))
        if tab.size == 0:
            tab = np.array([0.0])
        tab = tab + e.log_scale
        return tab, self._cdf_log(tab)

    def _log_moment(self, order: int) -> float:
        e = self._engine
        s = e.s_series(order + 1)
        m = series.moments_from_s(s[: order + 1])[order]
        if not m > 0:
            raise ValueError(f"the moment recursion lost precision at order {order} (non-positive moment); "
                             "use a smaller order")
        return float(math.log(m) + e.log_scale * order)

    def _log_mean(self) -> float:
        return float(self._engine.log_scale)

    def _log_var(self) -> float:
        e = self._engine
        if e.var_normalised <= 0:
            return -math.inf
        return float(2.0 * e.log_scale + math.log(e.var_normalised))


@dataclass(frozen=True, eq=False)
class JacobianSpectrum(BandSpectrum):
    """Law of the eigenvalues lambda of J J^T (squared singular values of J) of a deep random network.

    Made by :func:`jacobian_spectrum`. Fields: the network (``activation`` name, ``depth`` L,
    ``weights`` law name, fixed point ``q_star``, variances ``sigma_w2``, ``sigma_b2``) and
    ``mu1``, ``mu2`` (mu_k = E[phi'(h)^(2k)], h ~ N(0, q*)). E[lambda] = chi^L with
    chi = sigma_w2 mu1; Var[lambda] = chi^{2L} L (mu2/mu1^2 - 1 - s1).

    The scipy.stats verbs (``pdf``, ``cdf``, ``ppf``, ``moment``, ``mean()``, ``var()``,
    ``rvs`` ...) are documented on :class:`~isometry.spectrum.base.Spectrum`.
    """

    activation: str
    depth: int
    weights: str
    q_star: float
    sigma_w2: float
    sigma_b2: float
    mu1: float
    mu2: float
    _engine: _Engine = field(repr=False, compare=False, kw_only=True)

    @property
    def chi(self) -> float:
        """sigma_w2 mu_1: the mean squared singular value per layer (1 at criticality)."""
        return float(self.sigma_w2 * self.mu1)

    def _describe(self) -> dict[str, Any]:
        return {"activation": self.activation, "depth": self.depth, "weights": self.weights,
                "q_star": self.q_star, "sigma_w2": self.sigma_w2, "sigma_b2": self.sigma_b2,
                "mu1": self.mu1, "mu2": self.mu2, "chi": self.chi}

    def _title(self) -> str:
        crit = "critical" if abs(self.chi - 1.0) < 1e-9 else f"chi={self.chi:.4g}"
        return f"{self.activation}, L={self.depth:g}, {self.weights} weights, q*={self.q_star:.3g} ({crit})"


@dataclass(frozen=True, eq=False)
class UniversalSpectrum(BandSpectrum):
    """The L -> infinity law at fixed Var[lambda] = ``sigma0_2`` (double scaling; Pennington et al. 2018).

    ``kind`` "bernoulli" (hard-tanh-like Bernoulli D^2, orthogonal weights) or "smooth"
    (smooth activations, orthogonal weights). Made by :func:`universal_spectrum`.
    """

    kind: str
    sigma0_2: float
    _engine: _Engine = field(repr=False, compare=False, kw_only=True)

    def _describe(self) -> dict[str, Any]:
        return {"kind": self.kind, "sigma0_2": self.sigma0_2}

    def _title(self) -> str:
        return f"universal {self.kind} law ($L\\to\\infty$), orthogonal weights, $\\sigma_0^2$={self.sigma0_2:.4g}"


# --------------------------------------------------------------------- construction
def _check_sigma0_2(sigma0_2) -> float:
    return check_positive("sigma0_2", sigma0_2)


def _check_depth(depth) -> int:
    """depth as an int in [1, MAX_DEPTH]; booleans, strings and fractions are refused (3.0 is 3)."""
    return check_int("depth", depth, 1, hi=MAX_DEPTH, integral_float=True)


def _s_series_factory(law: D2Law, wl: WeightLaw, L: int):
    def s_series(K: int) -> np.ndarray:
        mom = law.moments(K)
        sd = series.s_from_moments(mom)[:K]
        sw = wl.series(K)
        return series.exp(L * (series.log(sd) + series.log(sw)))

    return s_series


def _top_atoms(law: D2Law, wl: WeightLaw, L: int) -> list[tuple[float, float]]:
    atoms = []
    if law.zero_mass > 0:
        atoms.append((-np.inf, law.zero_mass))
    if wl.name == "orthogonal":
        for v, pv in zip(law.atoms_x, law.atoms_p):
            mass = 1.0 - L * (1.0 - pv)
            if v > 0 and mass > 1e-14:
                atoms.append((L * float(np.log(v)), float(mass)))
    return atoms


def jacobian_spectrum(
    activation,
    depth: int,
    *,
    q_star: float | None = None,
    sigma_w2: float | None = None,
    sigma_b2: float | None = None,
    weights: "str | WeightLaw | Callable" = "orthogonal",
    q0: float | None = None,
) -> JacobianSpectrum:
    """The law of the eigenvalues of J J^T for a depth-L network at its fixed point q*.

    Give either ``q_star`` (the network is taken at criticality, chi = 1, with ``sigma_w2,
    sigma_b2`` from :func:`isometry.critical_point`), or ``sigma_w2`` and ``sigma_b2``
    (variances; q* from :func:`isometry.q_star`, chi may differ from 1). ``q0`` (the length
    of h^0) selects the fixed point where every q is one (ReLU at (2, 0), linear at (1, 0));
    for the positively homogeneous units the law does not depend on q and q0 defaults to 1.

    Args:
        activation: a registry name, an :class:`isometry.Activation` or a callable phi.
        depth: L in [1, ``MAX_DEPTH``] = [1, 1e7], the number of critical layers.
        weights: "orthogonal", "gaussian", a :class:`WeightLaw`, or an S-transform callable
            (its shape only; the scale is sigma_w2).

    Returns:
        a :class:`JacobianSpectrum` (scipy.stats verbs, atoms, log-scale variants).

    Example:
        >>> sp = jacobian_spectrum("erf", 100, q_star=0.01)
        >>> round(sp.mean(), 12), round(sp.var(), 5)
        (1.0, 0.04642)
    """
    a = get_activation(activation)
    L = _check_depth(depth)
    wl = weight_law(weights)
    sw, sb, q = network_parameters(a, q_star=q_star, sigma_w2=sigma_w2, sigma_b2=sigma_b2, q0=q0)
    law = d2_law(a, q)
    inner_atom = bool(np.any((law.atoms_x > 0) & (law.atoms_x < law.x_max_cont * (1 - 1e-12))))
    if L == 1 and wl.name == "orthogonal" and law.has_continuous and (law.n_extrema > 1 or inner_atom):
        raise ValueError(
            f"depth=1 with orthogonal weights (J J^T = sigma_w2 D^2) is not supported for {a.name}, whose phi'^2 "
            "has several extrema or an atom inside its range; use depth >= 2 or gaussian weights"
        )
    mu1 = law.mu1
    mu2 = float(mu(a, q, 2)) if q > 0 else mu1 * mu1
    log_scale = L * (math.log(sw) + math.log(mu1))
    engine = _Engine(FiniteDepth(law, wl, L), log_scale, tuple(_top_atoms(law, wl, L)),
                     _normalised_variance(mu1, mu2, L, wl), _s_series_factory(law, wl, L))
    return JacobianSpectrum(activation=a.name, depth=L, weights=wl.name, q_star=q, sigma_w2=sw, sigma_b2=sb,
                            mu1=mu1, mu2=mu2, _engine=engine)


def q_star_for_variance(activation, depth: int, sigma0_2: float,
                        weights: "str | WeightLaw | Callable" = "orthogonal") -> float:
    """The q* at which the critical network has Var[lambda] = sigma0_2 (double scaling).

    Solves L (mu_2(q*)/mu_1(q*)^2 - 1 - s_1) = sigma0_2 (Pennington et al. 2017, eq. 16;
    :func:`jacobian_variance`) on a log-q grid + Brent, returning the smallest root with a
    critical point (sigma_b2 >= 0). Raises ValueError when no q* reaches it, e.g. for ReLU
    (mu_2/mu_1^2 = 2 at every q*) or Gaussian weights with sigma0_2 < L (their per-layer
    variance is at least 1).

    Example:
        >>> q = q_star_for_variance("tanh", 100, 0.25)
        >>> round(jacobian_variance("tanh", 100, q_star=q), 10)
        0.25
    """
    from scipy.optimize import brentq

    a = get_activation(activation)
    L = _check_depth(depth)
    wl = weight_law(weights)
    s2 = _check_sigma0_2(sigma0_2)

    def g(logq):
        q = np.exp(logq)
        m1 = np.asarray(mu(a, q, 1), float)
        m2 = np.asarray(mu(a, q, 2), float)
        return np.vectorize(lambda x, y: _normalised_variance(x, y, L, wl))(m1, m2) - s2

    grid = np.linspace(np.log(Q_STAR_SCAN[0]), np.log(Q_STAR_SCAN[1]), 181)
    vals = g(grid)
    lo_v, hi_v = float(np.nanmin(vals)) + s2, float(np.nanmax(vals)) + s2
    idx = np.flatnonzero(np.sign(vals[:-1]) * np.sign(vals[1:]) <= 0)
    for i in idx:
        if not (np.isfinite(vals[i]) and np.isfinite(vals[i + 1])):
            continue
        root = grid[i] if vals[i] == 0 else brentq(lambda x: float(g(np.array(x))), grid[i], grid[i + 1],
                                                   xtol=1e-14, rtol=1e-15)
        q = float(np.exp(root))
        try:
            critical_point(a, q)
        except ValueError:
            continue
        return q
    if np.ptp(vals) < 1e-9 * max(abs(hi_v), 1.0):
        raise ValueError(
            f"{a.name} with {wl.name} weights has Var[lambda] = {lo_v:.6g} at every q* for depth {L}; "
            f"sigma0_2={s2:g} is unreachable"
        )
    raise ValueError(
        f"sigma0_2={s2:g} is unreachable for {a.name} with {wl.name} weights at depth {L}: "
        f"critical networks give Var[lambda] in [{lo_v:.6g}, {hi_v:.6g}] for q* in [{Q_STAR_SCAN[0]:g}, {Q_STAR_SCAN[1]:g}]"
    )


def universal_spectrum(kind: str, sigma0_2: float) -> UniversalSpectrum:
    """The L -> infinity limit at fixed Var[lambda] = sigma0_2 (double scaling; Pennington et al. 2018).

    kind "bernoulli": S(z) = exp(-sigma0_2 z / (1 + z)) (orthogonal weights with
    hard-tanh-like Bernoulli D^2): an atom at e^{sigma0_2} of mass 1 - sigma0_2
    (for sigma0_2 < 1) and a bulk with edge e sigma0_2.
    kind "smooth": S(z) = exp(-sigma0_2 z) (smooth activations, orthogonal weights).

    Example:
        >>> sp = universal_spectrum("bernoulli", 0.5)
        >>> sp.atoms                                      # doctest: +ELLIPSIS
        ((1.6487212707..., 0.5),)
    """
    s2 = _check_sigma0_2(sigma0_2)
    if not isinstance(kind, str):
        raise TypeError(f"kind must be 'bernoulli' or 'smooth', got {kind!r}")
    k = kind.strip().lower()
    if k == "bernoulli":
        def log_s(z):
            return -s2 * z / (1.0 + z)

        def dlog_s(z):
            return -s2 / (1.0 + z) ** 2

        def ser(K):
            c = np.zeros(K)
            c[1:] = -s2 * (-1.0) ** np.arange(K - 1)
            return series.exp(c)

        atoms = ((s2, 1.0 - s2),) if s2 < 1 else ()
    elif k == "smooth":
        def log_s(z):
            return -s2 * z

        def dlog_s(z):
            return -s2 + 0 * z

        def ser(K):
            c = np.zeros(K)
            if K > 1:
                c[1] = -s2
            return series.exp(c)

        atoms = ()
    else:
        raise ValueError(f"kind must be 'bernoulli' or 'smooth', got {kind!r}")
    engine = _Engine(Universal(log_s, dlog_s), 0.0, atoms, s2, ser)
    return UniversalSpectrum(kind=k, sigma0_2=s2, _engine=engine)


