"""JacobianSpectrum: the spectrum of J J^T for a deep random network, from free probability.

J = D^L W^L ... D^1 W^1 with h ~ N(0, q*) at every layer (Pennington, Schoenholz
& Ganguli 2017, sec. 2; 2018).  With the factors normalised to mean 1,

    S_{JJ^T}(z) = chi^{-L} S_{D^2}(z)^L S_{W^T W}(z)^L,     chi = sigma_w2 mu_1,

so lambda = chi^L lambda~, where lambda~ has mean 1 and variance
L (mu_2/mu_1^2 - 1 - s_1) (eq. 16; s_1 = 0 orthogonal, -1 Gaussian).  The scale
is kept as ``log_scale = L log chi`` so depth and distance from criticality
never overflow; quantities that are not representable raise ``ValueError``
and have ``log_`` variants.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from ..activations import get_activation
from ..meanfield import critical_point, mu, network_parameters
from . import series
from .d2 import D2Law, d2_law
from .s_transforms import WeightLaw, weight_law
from .solver import Band, FiniteDepth, Universal, band_cdf, solve_at, trace_bands

__all__ = ["JacobianSpectrum", "jacobian_spectrum", "q_star_for_variance", "universal_spectrum"]

_LOG_MAX = 709.0
_T_FLOOR = -745.0  # log of the smallest positive double: traced at least this far down


@dataclass(frozen=True, eq=False)
class JacobianSpectrum:
    """Law of the eigenvalues lambda of J J^T (squared singular values of J).

    Atoms are listed in ``atoms`` as (location, mass); ``atom`` is the mass at 0.
    ``density`` is the continuous part; ``cdf`` includes the atoms.
    """

    activation: str
    depth: float
    weights: str
    q_star: float
    sigma_w2: float
    sigma_b2: float
    mu1: float
    mu2: float
    log_scale: float  # L log chi: lambda = exp(log_scale) * lambda~
    variance_normalised: float  # Var lambda~ = L (mu2/mu1^2 - 1 - s1)
    atoms_normalised: tuple[tuple[float, float], ...]  # (log lambda~, mass), zero atom as (-inf, mass)
    _param: Any = field(repr=False)
    _s_series: Callable[[int], np.ndarray] = field(repr=False)
    _cache: dict = field(default_factory=dict, repr=False)

    # ----------------------------------------------------------------- scale and moments
    @property
    def chi(self) -> float:
        return float(math.exp(self.log_scale / self.depth)) if math.isfinite(self.depth) else 1.0

    @property
    def log_mean(self) -> float:
        """log E[lambda] = L log chi (exact)."""
        return self.log_scale

    @property
    def mean(self) -> float:
        """E[lambda] = (sigma_w2 mu_1)^L = chi^L (eq. 15)."""
        return self._exp(self.log_scale, "mean")

    @property
    def variance(self) -> float:
        """Var[lambda] = chi^{2L} L (mu_2/mu_1^2 - 1 - s_1) (eq. 16 off criticality)."""
        if self.variance_normalised == 0:
            return 0.0
        return self._exp(2 * self.log_scale + math.log(self.variance_normalised), "variance")

    def moments(self, k: int) -> np.ndarray:
        """The first k moments E[lambda^j], j = 1..k, from the exact S-transform series."""
        return np.exp(self.log_moments(k))

    def log_moments(self, k: int) -> np.ndarray:
        """log E[lambda^j], j = 1..k (never overflows)."""
        if int(k) != k or k < 1 or k > 20:
            raise ValueError(f"k must be an integer in [1, 20], got {k!r}")
        k = int(k)
        s = self._s_series(k + 1)
        m = series.moments_from_s(s[: k + 1])[1 : k + 1]
        if np.any(m <= 0):
            raise ValueError("moment recursion lost precision (non-positive moment); use a smaller k")
        return np.log(m) + self.log_scale * np.arange(1, k + 1)

    # ----------------------------------------------------------------- atoms
    @property
    def atom(self) -> float:
        """Mass at lambda = 0."""
        return float(sum(m for t, m in self.atoms_normalised if t == -np.inf))

    @property
    def atoms(self) -> tuple[tuple[float, float], ...]:
        """All atoms as (lambda, mass); lambda = 0 for the zero atom."""
        out = []
        for t, m in self.atoms_normalised:
            out.append((0.0 if t == -np.inf else float(np.exp(t + self.log_scale)), m))
        return tuple(out)

    # ----------------------------------------------------------------- bands
    @property
    def _bands(self) -> list[Band]:
        b = self._cache.get("bands")
        if b is None:
            cont = 1.0 - sum(m for _, m in self.atoms_normalised)
            b = [] if cont < 1e-13 else trace_bands(self._param, np.inf)
            self._cache["bands"] = b
        return b

    @property
    def continuous_mass(self) -> float:
        """Mass of the continuous part as integrated numerically (compare 1 - sum of atoms)."""
        return float(sum(b.mass for b in self._bands))

    @property
    def log_max_eigenvalue(self) -> float:
        """log of the right edge of the support (or of the top atom)."""
        ts = [b.t_top for b in self._bands] + [t for t, m in self.atoms_normalised if m > 0]
        return float(max(ts)) + self.log_scale

    @property
    def max_eigenvalue(self) -> float:
        return self._exp(self.log_max_eigenvalue, "max_eigenvalue")

    def _t(self, lam) -> np.ndarray:
        lam = np.asarray(lam, dtype=float)
        with np.errstate(divide="ignore"):
            return np.log(np.where(lam > 0, lam, 0.0)) - self.log_scale

    # ----------------------------------------------------------------- density / cdf
    def log_lambda_density(self, log_lam) -> np.ndarray:
        """Density of t = log lambda (continuous part): lambda rho(lambda) = -Im M / pi."""
        t = np.asarray(log_lam, dtype=float) - self.log_scale
        out = np.zeros(t.shape)
        for b in self._bands:
            sel = (t < b.t_top) & (t >= b.t[-1])
            if np.any(sel):
                y, m, ok = solve_at(self._param, b, t[sel])
                out[sel] += np.maximum(-m.imag, 0.0) / np.pi
                if not np.all(ok):
                    self._cache["interpolated_points"] = self._cache.get("interpolated_points", 0) + int((~ok).sum())
            tail = t < b.t[-1]
            if np.any(tail):  # beyond the traced end (little mass there): the fitted tail in t
                out[tail] += b.tail_density(t[tail])
        return out

    def density(self, lam) -> np.ndarray:
        """rho(lambda), the continuous part of the density of eigenvalues of J J^T (0 for lambda <= 0)."""
        lam = np.asarray(lam, dtype=float)
        if not np.all(np.isfinite(lam)):
            raise ValueError("lam must be finite")
        pos = lam > 0
        out = np.zeros(lam.shape)
        if np.any(pos):
            g = self.log_lambda_density(np.log(lam[pos]))
            out[pos] = g / lam[pos]
        return out[()] if out.ndim == 0 else out

    def singular_value_density(self, s) -> np.ndarray:
        """p(s) = 2 s rho(s^2), the density of the singular values s of J."""
        s = np.asarray(s, dtype=float)
        return 2.0 * s * self.density(s * s)

    def _cdf_t(self, t: np.ndarray) -> np.ndarray:
        """P(log lambda~ <= t) for normalised t (atoms included)."""
        out = np.full(t.shape, self.atom)
        for tt, m in self.atoms_normalised:
            if tt > -np.inf:  # lambda at the atom (to rounding of log lambda) includes it
                out += np.where(t >= tt - 4e-15 * (1.0 + abs(tt) + abs(self.log_scale)), m, 0.0)
        for b in self._bands:
            out += band_cdf(self._param, b, t)
        return np.clip(out, 0.0, 1.0)

    def cdf(self, lam) -> np.ndarray:
        """P(lambda' <= lambda), atoms included (the zero atom counts for lambda >= 0)."""
        lam = np.asarray(lam, dtype=float)
        if np.any(np.isnan(lam)):
            raise ValueError("lam must not be NaN")
        out = np.zeros(lam.shape)
        pos = lam > 0
        out[lam == 0] = self.atom
        if np.any(pos):
            out[pos] = self._cdf_t(self._t(lam[pos]))
        return out[()] if out.ndim == 0 else out

    def log_cdf(self, log_lam) -> np.ndarray:
        """P(log lambda <= log_lam) (atoms included): the cdf for lambda beyond double range."""
        t = np.asarray(log_lam, dtype=float) - self.log_scale
        out = self._cdf_t(np.atleast_1d(t)).reshape(t.shape)
        return out[()] if out.ndim == 0 else out

    def log_quantile(self, p) -> np.ndarray:
        """log of the p-quantile of lambda (-inf inside the zero atom)."""
        p = np.asarray(p, dtype=float)
        if np.any(~np.isfinite(p)) or np.any((p < 0) | (p > 1)):
            raise ValueError(f"p must lie in [0, 1], got {p}")
        flat = np.atleast_1d(p).ravel()
        # bracket on a table of t values (traced points and atoms)
        ts = [t for b in self._bands for t in b.t] + [t for t, m in self.atoms_normalised if t > -np.inf]
        ts += [b.t[-1] * (1e6 if b.tail_kind == "power" and b.t[-1] < 0 else 1.0) - 50.0 * (1.0 + 1.0 / max(b.tail_rate, 1e-300))
               for b in self._bands if not b.lower_edge]
        tab = np.unique(np.asarray(ts, float))
        if tab.size == 0:
            tab = np.array([0.0])
        F = self._cdf_t(tab)
        out = np.empty(flat.shape)
        for i, pi in enumerate(flat):
            if pi <= self.atom:
                out[i] = -np.inf
                continue
            j = int(np.searchsorted(F, pi, side="left"))
            if j >= tab.size:
                out[i] = tab[-1]
                continue
            if j == 0:
                lo, hi = tab[0] - 1.0, tab[0]
                while self._cdf_t(np.array([lo]))[0] >= pi and lo > -1e300:
                    lo = hi - 2.0 * (hi - lo)
            else:
                lo, hi = tab[j - 1], tab[j]
            out[i] = hi
        # vectorised bisection on [lo, hi]
        todo = np.isfinite(out) & (flat > self.atom)
        if np.any(todo):
            idx = np.flatnonzero(todo)
            hi = out[idx].copy()
            j = np.searchsorted(tab, hi)
            lo = np.where(j > 0, tab[np.maximum(j - 1, 0)], hi - 1.0)
            for _ in range(60):
                mid = 0.5 * (lo + hi)
                f = self._cdf_t(mid)
                up = f >= flat[idx]
                hi = np.where(up, mid, hi)
                lo = np.where(up, lo, mid)
                if np.all(hi - lo <= 1e-13 * (1 + np.abs(hi))):
                    break
            out[idx] = hi
        res = (out + self.log_scale).reshape(np.shape(p))
        return res[()] if res.ndim == 0 else res

    def quantile(self, p) -> np.ndarray:
        """The p-quantile of lambda (0 inside the zero atom; underflows to 0 below ~1e-308)."""
        lq = np.asarray(self.log_quantile(p))
        if np.any(lq > _LOG_MAX):
            raise ValueError("quantile overflows a double; use log_quantile")
        with np.errstate(under="ignore"):
            out = np.exp(lq)
        return out[()] if out.ndim == 0 else out

    # ----------------------------------------------------------------- misc
    def _exp(self, x: float, name: str) -> float:
        if x < -745.0 and self.log_scale < 0:
            raise ValueError(
                f"{name} = exp({x:.6g}) underflows a double (chi^L = exp({self.log_scale:.6g}) with depth "
                f"{self.depth:g}); use the log_ variant or a sigma_w2 closer to criticality"
            )
        if x > _LOG_MAX:
            raise ValueError(
                f"{name} = exp({x:.6g}) overflows a double (chi^L = exp({self.log_scale:.6g}) with depth "
                f"{self.depth:g}); use the log_ variant or a sigma_w2 closer to criticality"
            )
        return float(np.exp(x))

    def summary(self, quantiles=(0.01, 0.1, 0.5, 0.9, 0.99)) -> dict[str, Any]:
        d: dict[str, Any] = {
            "activation": self.activation, "depth": self.depth, "weights": self.weights,
            "q_star": self.q_star, "sigma_w2": self.sigma_w2, "sigma_b2": self.sigma_b2,
            "chi": self.chi, "log_mean": self.log_mean, "variance_normalised": self.variance_normalised,
            "atom": self.atom, "atoms": [list(a) for a in self.atoms if a[0] > 0],
            "log_max_eigenvalue": self.log_max_eigenvalue,
        }
        for key, fn in (("mean", lambda: self.mean), ("variance", lambda: self.variance),
                        ("max_eigenvalue", lambda: self.max_eigenvalue)):
            try:
                d[key] = fn()
            except ValueError:
                d[key] = None
        lq = self.log_quantile(np.asarray(quantiles, float))
        d["log_quantiles"] = {str(q): float(v) for q, v in zip(quantiles, np.atleast_1d(lq))}
        # None where lambda is not representable as a double (see log_quantiles)
        d["quantiles"] = {str(q): (0.0 if v == -np.inf else float(np.exp(v)) if -744.0 < v < _LOG_MAX else None)
                          for q, v in zip(quantiles, np.atleast_1d(lq))}
        return d

    def plot(self, ax=None, n: int = 400, **kw):
        """Plot the singular-value density p(s) = 2 s rho(s^2) (atoms as vertical lines)."""
        from ..plotting import _plt

        plt = _plt()
        if ax is None:
            _, ax = plt.subplots(figsize=(5, 3.5))
        smax = math.sqrt(self.max_eigenvalue) * 1.05
        s = np.linspace(smax / n / 10, smax, n)
        ax.plot(s, self.singular_value_density(s), **kw)
        for lam, m in self.atoms:
            if m > 0:
                ax.axvline(math.sqrt(lam), ls="--", lw=1, color="k", alpha=0.6)
                ax.annotate(f"atom {m:.3g}", (math.sqrt(lam), 0), rotation=90, va="bottom", fontsize=7)
        ax.set_xlabel("singular value s of J")
        ax.set_ylabel("p(s)")
        ax.set_title(f"{self.activation}, L={self.depth:g}, {self.weights}, q*={self.q_star:.3g}", fontsize=9)
        return ax


# --------------------------------------------------------------------- construction
def _check_sigma0_2(sigma0_2) -> float:
    """sigma0_2 as a finite float > 0, or a ValueError naming it."""
    try:
        s2 = float(sigma0_2)
    except (TypeError, ValueError):
        raise ValueError(f"sigma0_2 must be a number > 0, got {sigma0_2!r}") from None
    if not (math.isfinite(s2) and s2 > 0):
        raise ValueError(f"sigma0_2 must be finite and > 0, got {sigma0_2!r}")
    return s2


def _check_depth(depth) -> int:
    try:
        L = int(depth)
    except (TypeError, ValueError):
        raise ValueError(f"depth must be an integer >= 1, got {depth!r}") from None
    if L != depth or L < 1 or L > 10**9:
        raise ValueError(f"depth must be an integer in [1, 1e9], got {depth!r}")
    return L


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
    act,
    depth: int,
    *,
    q_star: float | None = None,
    sigma_w2: float | None = None,
    sigma_b2: float | None = None,
    weights: "str | WeightLaw | Callable" = "orthogonal",
    q0: float | None = None,
) -> JacobianSpectrum:
    """The spectrum of J J^T for a depth-L network at its fixed point q*.

    ``q0`` (input length) selects the fixed point where every q is one (ReLU at
    (2, 0), linear at (1, 0)); for the positively homogeneous units (linear, relu,
    leaky_relu) the spectrum does not depend on q, and q0 defaults to 1 there.

    Give either ``q_star`` (the network is taken at criticality, chi = 1, with
    ``sigma_w2, sigma_b2`` from :func:`isometry.critical_point`), or ``sigma_w2``
    and ``sigma_b2`` (variances; q* from :func:`isometry.q_star`, chi may differ
    from 1).  ``weights``: "orthogonal", "gaussian", or an S-transform callable
    (its shape only; the scale is sigma_w2).

    >>> sp = jacobian_spectrum("erf", 100, q_star=0.01)
    >>> round(sp.mean, 12), sp.variance      # doctest: +SKIP
    """
    a = get_activation(act)
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
    log_chi = math.log(sw) + math.log(mu1)
    log_scale = L * log_chi
    var_n = L * (law.exact_moments[2] - 1.0 - wl.s1)
    var_n = max(var_n, 0.0)
    return JacobianSpectrum(
        activation=a.name, depth=L, weights=wl.name, q_star=q, sigma_w2=sw, sigma_b2=sb, mu1=mu1, mu2=mu2,
        log_scale=log_scale, variance_normalised=var_n, atoms_normalised=tuple(_top_atoms(law, wl, L)),
        _param=FiniteDepth(law, wl, L), _s_series=_s_series_factory(law, wl, L),
    )


def q_star_for_variance(act, depth: int, sigma0_2: float, weights: "str | WeightLaw | Callable" = "orthogonal") -> float:
    """The q* at which the critical network has Var[lambda] = sigma0_2 (double scaling).

    Solves L (mu_2(q*)/mu_1(q*)^2 - 1 - s_1) = sigma0_2 (Pennington et al. 2017,
    eq. 16) on a log-q grid + Brent.  Raises ValueError when no q* reaches it,
    e.g. for ReLU (mu_2/mu_1^2 = 2 at every q*) or Gaussian weights with
    sigma0_2 < L (their per-layer variance is at least 1).
    """
    from scipy.optimize import brentq

    a = get_activation(act)
    L = _check_depth(depth)
    wl = weight_law(weights)
    s2 = _check_sigma0_2(sigma0_2)
    s1 = wl.s1

    def g(logq):
        q = np.exp(logq)
        m1 = np.asarray(mu(a, q, 1), float)
        m2 = np.asarray(mu(a, q, 2), float)
        return L * (m2 / m1**2 - 1.0 - s1) - s2

    grid = np.linspace(np.log(1e-12), np.log(1e6), 181)
    vals = g(grid)
    lo_v, hi_v = float(np.nanmin(vals)) + s2, float(np.nanmax(vals)) + s2
    idx = np.flatnonzero(np.sign(vals[:-1]) * np.sign(vals[1:]) <= 0)
    for i in idx:
        if not (np.isfinite(vals[i]) and np.isfinite(vals[i + 1])):
            continue
        if vals[i] == 0:
            root = grid[i]
        else:
            root = brentq(g, grid[i], grid[i + 1], xtol=1e-14, rtol=1e-15)
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
        f"critical networks give Var[lambda] in [{lo_v:.6g}, {hi_v:.6g}] for q* in [1e-12, 1e6]"
    )


def universal_spectrum(kind: str, sigma0_2: float) -> JacobianSpectrum:
    """The L -> infinity limit at fixed Var[lambda] = sigma0_2 (double scaling; Pennington et al. 2018).

    kind "bernoulli": S(z) = exp(-sigma0_2 z / (1 + z)) (orthogonal weights with
    hard-tanh-like Bernoulli D^2): an atom at e^{sigma0_2} of mass 1 - sigma0_2
    (for sigma0_2 < 1) and a bulk with edge e sigma0_2.
    kind "smooth": S(z) = exp(-sigma0_2 z) (smooth activations, orthogonal weights).
    """
    s2 = _check_sigma0_2(sigma0_2)
    k = str(kind).strip().lower()
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
    return JacobianSpectrum(
        activation=f"universal-{k}", depth=math.inf, weights="orthogonal", q_star=0.0, sigma_w2=1.0, sigma_b2=0.0,
        mu1=1.0, mu2=1.0 + s2, log_scale=0.0, variance_normalised=s2, atoms_normalised=atoms,
        _param=Universal(log_s, dlog_s), _s_series=ser,
    )
