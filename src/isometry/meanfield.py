"""Mean-field signal propagation (Poole et al. 2016; Schoenholz et al. 2017;
Pennington, Schoenholz & Ganguli 2017, eqs. 3-5).

For a network h^l = W^l phi(h^{l-1}) + b^l with W_ij ~ N(0, sigma_w2 / N) (or
scaled orthogonal) and b_i ~ N(0, sigma_b2), the pre-activation length obeys

    q^l = sigma_w2 E_z[phi(sqrt(q^{l-1}) z)^2] + sigma_b2            (eq. 3)

with stable fixed point q*; perturbations grow by chi = sigma_w2 mu_1 per layer,
mu_k = E[phi'(h)^(2k)], h ~ N(0, q*) (eq. 5). chi = 1 is the critical line.
Variances (``sigma_w2``, ``sigma_b2``) not standard deviations.

Every function takes ``activation``: a registry name, an :class:`isometry.Activation`
or a callable phi (resolved by :func:`isometry.get_activation`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from ._checks import check_fits, check_int, check_nonnegative, check_positive, nonnegative_array, real_array
from .activations import Activation, get_activation
from .gaussian import _CHUNK_NODES, expect, gauss_nodes

__all__ = [
    "e_phi2",
    "q_map",
    "q_star",
    "mu",
    "chi",
    "CriticalPoint",
    "critical_point",
    "CriticalLine",
    "critical_line",
    "PhaseDiagram",
    "phase_diagram",
    "c_map",
    "c_star",
    "xi_q",
    "xi_c",
    "network_parameters",
]

_Q_MAX = 1e12
_MAX_ITER = 400
_CHAOS_EPS = 1e-12  # chi <= 1 + this counts as ordered/critical (c* = 1)


# ------------------------------------------------------------------------ input checks
def _check_q(q, name: str = "q") -> np.ndarray:
    return nonnegative_array(name, q)


def _check_var(v, name: str, positive: bool = False) -> np.ndarray:
    return nonnegative_array(name, v, positive=positive)


# Peak memory of the vectorised solvers: about 48 doubles per point (tracemalloc, q_star of tanh on
# 1e5 points) plus the chunked quadrature's temporaries and, for phase diagrams, the tabulated E[phi^2].
_BYTES_PER_POINT = 48 * 8
_FIXED_BYTES = 64 * 2**20
_TABLE_BYTES = 256 * 2**20


def _check_points_fit(n_points: int, what: str, extra: int = 0) -> None:
    """Refuse (``ValueError``) a vectorised request over ``n_points`` points that cannot fit in memory."""
    check_fits(n_points * _BYTES_PER_POINT + _FIXED_BYTES + extra, f"{what} on {n_points} points",
               "use fewer points")


# ------------------------------------------------------------------------ Gaussian expectations
def _raise_non_finite(a: Activation, q: np.ndarray, values: np.ndarray, what: str):
    """Say where the activation made an expectation non-finite (a NaN or inf of phi or phi')."""
    q = np.atleast_1d(q)
    vals = np.broadcast_to(np.atleast_1d(values), q.shape)
    qi = float(q[~np.isfinite(vals)].ravel()[0])
    z, _ = gauss_nodes()
    h = np.sqrt(qi) * z
    with np.errstate(all="ignore"):
        bad = ~(np.isfinite(a.phi(h)) & np.isfinite(a.dphi(h)))
    where = (f"phi or phi' is not finite at h in [{h[bad].min():.4g}, {h[bad].max():.4g}]" if np.any(bad)
             else "the integrand overflows")
    raise ValueError(f"activation {a.name!r}: {what} at q={qi:g} is not finite ({where}; the Gaussian expectation "
                     f"needs phi on |h| <= {np.sqrt(qi) * z.max():.4g})")


def _finite(a: Activation, q: np.ndarray, values, what: str) -> np.ndarray:
    values = np.asarray(values, dtype=float)
    if not np.all(np.isfinite(values)):
        _raise_non_finite(a, q, values, what)
    return values


def e_phi2(activation, q) -> np.ndarray:
    """E[phi(h)^2], h ~ N(0, q): exact where known, composite quadrature otherwise.

    >>> float(e_phi2("relu", 2.0))
    1.0
    """
    a = get_activation(activation)
    q = _check_q(q)
    if a.e_phi2 is not None:
        return _finite(a, q, a.e_phi2(q), "E[phi(h)^2]")[()]
    return _finite(a, q, expect(lambda h: np.square(a.phi(h)), q, a.kinks), "E[phi(h)^2]")[()]


def _de_phi2_dq(a: Activation, q: np.ndarray) -> np.ndarray:
    """d/dq E[phi(sqrt(q) z)^2] = E[phi^2 (z^2 - 1)] / (2q) (derivative-free)."""
    qs = np.where(q > 0, q, 1.0)
    if a.e_phi2 is not None:
        eps = 1e-6 * qs
        d = (a.e_phi2(qs + eps) - a.e_phi2(np.maximum(qs - eps, 0.0))) / (qs + eps - np.maximum(qs - eps, 0.0))
    else:
        z, w = gauss_nodes()
        wz = (z * z - 1.0) * w
        if qs.ndim == 0:
            d = np.square(a.phi(np.sqrt(qs) * z)) @ wz / (2.0 * qs)
        else:
            d = np.empty(qs.shape)
            flat, o = qs.ravel(), d.reshape(-1)
            step = max(1, _CHUNK_NODES // z.size)  # bounded temporary memory
            for i in range(0, flat.size, step):
                o[i:i + step] = np.square(a.phi(np.sqrt(flat[i:i + step])[:, None] * z)) @ wz / (2.0 * flat[i:i + step])
    # at q = 0 use phi'(0)^2 + phi(0) phi''(0) ~ phi'(0)^2 for phi(0) = 0
    d0 = np.square(a.dphi(np.array(0.0)))
    return _finite(a, q, np.where(q > 0, d, d0), "d E[phi(h)^2] / dq")


def q_map(activation, q, sigma_w2, sigma_b2) -> np.ndarray:
    """The length map q -> sigma_w2 E[phi(sqrt(q) z)^2] + sigma_b2 (eq. 3).

    >>> float(q_map("linear", 0.5, 1.0, 0.25))
    0.75
    """
    sw = _check_var(sigma_w2, "sigma_w2")
    sb = _check_var(sigma_b2, "sigma_b2")
    return sw * e_phi2(activation, q) + sb


def _linear_growth(a: Activation) -> float | None:
    """E[phi^2](q) / q for positively homogeneous units (exactly linear in q), else None."""
    if not a.homogeneous:
        return None
    return float(e_phi2(a, 1.0))


def _q_star_array(a: Activation, sw: np.ndarray, sb: np.ndarray, q0, diverged: str = "raise") -> np.ndarray:
    """q* on broadcast arrays; where q diverges: raise (``diverged="raise"``) or inf (``"inf"``).

    Huge variances overflow to inf inside the iteration: such points diverge (no warnings)."""
    given = [("sigma_w2", sw), ("sigma_b2", sb)] + ([("q0", q0)] if q0 is not None else [])
    try:
        arrays = np.broadcast_arrays(*(np.asarray(v, dtype=float) for _, v in given))
    except ValueError:
        shapes = ", ".join(f"{k} of shape {np.shape(v)}" for k, v in given)
        raise ValueError(f"{shapes} do not broadcast together") from None
    sw, sb = arrays[0], arrays[1]
    q0 = arrays[2] if q0 is not None else None
    _check_points_fit(sw.size, "q*")
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        return _q_star_solve(a, sw, sb, q0, diverged)


def _q_star_solve(a: Activation, sw: np.ndarray, sb: np.ndarray, q0, diverged: str) -> np.ndarray:
    c = _linear_growth(a)
    if c is not None:  # Q(q) = sw c q + sb exactly
        slope = sw * c
        with np.errstate(divide="ignore", invalid="ignore"):
            out = np.where(slope < 1, sb / (1.0 - slope), np.inf)
        marginal = np.isclose(slope, 1.0, rtol=1e-12, atol=0) & (sb == 0)
        if np.any(marginal):
            if q0 is None:
                raise ValueError(
                    f"every q is a fixed point of the {a.name} length map at sigma_w2={1 / c:g}, sigma_b2=0; pass q0= "
                    "(the input length) to choose one"
                )
            out = np.where(marginal, np.broadcast_to(q0, out.shape), out)
        if diverged == "raise" and np.any(np.isinf(out)):
            raise ValueError(
                f"no fixed point: the {a.name} length map diverges for sigma_w2 >= {1 / c:g} "
                f"(with sigma_b2 > 0 at equality); valid range is sigma_w2 < {1 / c:g}"
            )
        return out

    shape = sw.shape
    sw, sb = np.atleast_1d(sw).ravel(), np.atleast_1d(sb).ravel()
    q = np.broadcast_to(np.asarray(1.0 if q0 is None else q0, dtype=float), shape).ravel().copy()
    active = np.ones(sw.shape, dtype=bool)
    gone = np.zeros(sw.shape, dtype=bool)
    for _ in range(_MAX_ITER):
        idx = np.nonzero(active)
        if not idx[0].size:
            break
        qa, swa, sba = q[idx], sw[idx], sb[idx]
        Q = swa * e_phi2(a, qa) + sba
        g = Q - qa
        dg = swa * _de_phi2_dq(a, qa) - 1.0
        with np.errstate(divide="ignore", invalid="ignore"):
            newton = qa - g / dg
        ok = (dg < 0) & np.isfinite(newton) & (newton >= 0)
        qn = np.where(ok, newton, Q)
        qn = np.where((qn == 0) & (qa > 0) & ~ok, 0.5 * qa, qn)
        # already a fixed point to rounding (e.g. a shaped unit's q = 1, where Q'(1) = 1): a Newton step on
        # Q - q that is pure rounding noise could leave a one-sided-stable fixed point, so stay
        qn = np.where(np.abs(g) <= 8 * np.finfo(float).eps * np.maximum(qa, 1e-300), qa, qn)
        # far out and still expanding (Q > q, Q' >= 1): leap ahead, so a slow linear divergence is
        # seen in a few steps; a fixed point further out is then approached from above
        qn = np.where((g > 0) & (dg >= 0) & (qa > 10.0 * (1.0 + sba)), 4.0 * Q, qn)
        away = (qn > _Q_MAX) | ~np.isfinite(qn)
        if np.any(away):
            if diverged == "raise":
                bad = np.flatnonzero(away)[0]
                raise ValueError(
                    f"no fixed point: q diverges for the {a.name} length map at sigma_w2={swa[bad]:g}, "
                    f"sigma_b2={sba[bad]:g}; lower sigma_w2"
                )
            gone[idx[0][away]] = True
            qn = np.where(away, np.inf, qn)
        # Q - q carries rounding ~eps q, so Newton steps are only resolved to ~eps q / |g'|
        tol = (1e-14 + 8 * np.finfo(float).eps / np.maximum(np.abs(dg), 1e-6)) * np.maximum(qn, 1e-16)
        with np.errstate(invalid="ignore"):
            done = (np.abs(qn - qa) <= tol + 1e-300) | away | ((sba == 0) & (qn < 1e-30))
        q[idx] = qn
        active[idx] = ~done
    if np.any(active):
        # slow (sub-linear) approach to q* = 0 on the boundary of the ordered phase
        stuck = active & (q < 1e-12) & (sb == 0)
        q[stuck] = 0.0
        active &= ~stuck
    if np.any(active):
        raise ValueError(f"q* iteration for {a.name} did not converge in {_MAX_ITER} steps")
    q[(q < 1e-30) & (sb == 0)] = 0.0  # converging to the fixed point q* = 0
    # stability of the fixed point: |Q'(q*)| <= 1
    fin = ~gone
    slope = np.zeros(q.shape)
    slope[fin] = sw[fin] * _de_phi2_dq(a, q[fin])
    if np.any(slope > 1.0 + 1e-6):
        bad = np.flatnonzero(slope > 1.0 + 1e-6)[0]
        raise ValueError(
            f"the fixed point q*={q.ravel()[bad]:g} of {a.name} at sigma_w2={sw.ravel()[bad]:g} is unstable; "
            "pass a different q0"
        )
    return q.reshape(shape)


def q_star(activation, sigma_w2, sigma_b2, q0=None) -> np.ndarray:
    """The stable fixed point q* of the length map (vectorised over sigma_w2, sigma_b2).

    Raises ``ValueError`` where q diverges (e.g. ReLU with sigma_w2 > 2) or every
    q is a fixed point and ``q0`` is not given (ReLU at (2, 0), linear at (1, 0)).
    Solved by safeguarded Newton iteration on Q(q) - q from ``q0`` (default 1).

    >>> round(float(q_star("relu", 1.5, 0.1)), 12)
    0.4
    """
    a = get_activation(activation)
    sw = _check_var(sigma_w2, "sigma_w2")
    sb = _check_var(sigma_b2, "sigma_b2")
    if q0 is not None:
        q0 = _check_q(q0, "q0")
    return _q_star_array(a, sw, sb, q0)[()]


_q_star_solver = q_star  # for callers whose keyword argument ``q_star`` shadows the solver


def mu(activation, q, k: int = 1) -> np.ndarray:
    """mu_k = E[phi'(h)^(2k)], h ~ N(0, q).

    >>> float(mu("relu", 1.0, 2))
    0.5
    """
    a = get_activation(activation)
    q = _check_q(q)
    k = check_int("k", k, 0, integral_float=True)
    if k == 0:
        return np.ones_like(q)[()]
    what = f"mu_{k} = E[phi'(h)^{2 * k}]"
    if a.mu_exact is not None:
        return _finite(a, q, a.mu_exact(q, k), what)[()]
    return _finite(a, q, expect(lambda h: np.abs(a.dphi(h)) ** (2 * k), q, a.kinks), what)[()]


def chi(activation, sigma_w2, sigma_b2, q0=None) -> np.ndarray:
    """chi = sigma_w2 mu_1(q*), the mean squared singular value per layer (eq. 5).

    >>> float(chi("relu", 1.5, 0.1))
    0.75
    """
    q = q_star(activation, sigma_w2, sigma_b2, q0)
    return np.asarray(sigma_w2, dtype=float) * mu(activation, q, 1)


@dataclass(frozen=True)
class CriticalPoint:
    """A point on the critical line chi = 1 with fixed point ``q_star``; ``mu1``, ``mu2`` at q*."""

    sigma_w2: float
    sigma_b2: float
    q_star: float
    mu1: float
    mu2: float

    @property
    def chi(self) -> float:
        return self.sigma_w2 * self.mu1

    def to_dict(self) -> dict[str, float]:
        return {"sigma_w2": self.sigma_w2, "sigma_b2": self.sigma_b2, "q_star": self.q_star,
                "mu1": self.mu1, "mu2": self.mu2, "chi": self.chi}


def _critical_arrays(a: Activation, qs: np.ndarray):
    m1 = np.asarray(mu(a, qs, 1), dtype=float)
    m2 = np.asarray(mu(a, qs, 2), dtype=float)
    with np.errstate(divide="ignore"):
        sw = 1.0 / m1
    with np.errstate(invalid="ignore"):
        sb = qs - sw * e_phi2(a, qs)
    # sigma_b2 is a difference of two O(q*) numbers: values within rounding of 0 are 0
    tol = 64 * np.finfo(float).eps * np.maximum(qs, 1e-300)
    sb = np.where(np.abs(sb) <= tol, 0.0, sb)
    return sw, sb, m1, m2


def critical_point(activation, q_star: float) -> CriticalPoint:
    """The critical point (chi = 1) whose fixed point is ``q_star``.

    sigma_w2 = 1 / mu_1(q*), sigma_b2 = q* - sigma_w2 E[phi(h)^2].
    Examples: hard tanh sigma_w2 = 1/erf(1/sqrt(2 q*)); erf sigma_w2 = sqrt(1 + pi q*);
    ReLU (2, 0) and linear (1, 0) for every q*.

    >>> critical_point("relu", 0.5).sigma_w2
    2.0
    """
    a = get_activation(activation)
    qv = check_positive("q_star", q_star)
    sw, sb, m1, m2 = (float(x) for x in _critical_arrays(a, np.array(qv)))
    if not (np.isfinite(sw) and m1 > 0):
        raise ValueError(f"{a.name}: mu_1(q*={qv:g}) = {m1:g}; no finite sigma_w2 makes chi = 1 (try a smaller q_star)")
    if sb < 0:
        raise ValueError(
            f"{a.name} has no critical point with q_star={qv:g}: it would need sigma_b2={sb:.3g} < 0 "
            f"({_valid_q_star_hint(a)})"
        )
    return CriticalPoint(sw, sb, qv, m1, m2)


Q_STAR_SCAN = (1e-12, 1e6)
"""The q* range every scan of the critical line covers (hints here, q_star_for_variance, the initialiser)."""


def _valid_q_star_hint(a: Activation, lo: float = Q_STAR_SCAN[0], hi: float = Q_STAR_SCAN[1]) -> str:
    """Where on [lo, hi] the critical line has sigma_b2 >= 0, in words (edges refined by Brent)."""
    from scipy.optimize import brentq

    logq = np.linspace(np.log(lo), np.log(hi), 141)
    sw, sb, _, _ = _critical_arrays(a, np.exp(logq))
    ok = (sb >= 0) & np.isfinite(sw)
    if not np.any(ok):
        return (f"no q_star in [{lo:g}, {hi:g}] gives sigma_b2 >= 0: {a.name} has no critical point there; "
                "give sigma_w2 and sigma_b2 instead")

    def sb_at(x: float) -> float:
        return float(_critical_arrays(a, np.array(math.exp(x)))[1])

    parts = []
    edges = np.flatnonzero(np.diff(ok.astype(int)))
    bounds = [math.exp(brentq(sb_at, logq[i], logq[i + 1], xtol=1e-10)) for i in edges]
    starts = ([lo] if ok[0] else []) + [b for b, i in zip(bounds, edges) if not ok[i]]
    ends = [b for b, i in zip(bounds, edges) if ok[i]] + ([hi] if ok[-1] else [])
    for s_, e_ in zip(starts, ends):
        if s_ == lo and e_ == hi:
            parts.append(f"[{lo:g}, {hi:g}]")
        elif s_ == lo:
            parts.append(f"q_star <= {e_:.4g}")
        elif e_ == hi:
            parts.append(f"q_star >= {s_:.4g}")
        else:
            parts.append(f"q_star in [{s_:.4g}, {e_:.4g}]")
    return "critical points with sigma_b2 >= 0 exist for " + " or ".join(parts)


@dataclass(frozen=True)
class CriticalLine:
    """Arrays along the critical line of ``activation``; NaN where no critical point has that q*."""

    q_star: np.ndarray
    sigma_w2: np.ndarray
    sigma_b2: np.ndarray
    mu1: np.ndarray
    mu2: np.ndarray
    activation: str = ""

    @property
    def valid(self) -> np.ndarray:
        return np.isfinite(self.sigma_b2)

    def to_dict(self) -> dict[str, Any]:
        """``{"activation", "points": [{"q_star", "sigma_w2", "sigma_b2", "mu1", "mu2"}, ...]}`` (valid points)."""
        pts = [{"q_star": float(q), "sigma_w2": float(w), "sigma_b2": float(b), "mu1": float(m1), "mu2": float(m2)}
               for q, w, b, m1, m2, ok in zip(self.q_star, self.sigma_w2, self.sigma_b2, self.mu1, self.mu2, self.valid)
               if ok]
        return {"activation": self.activation, "points": pts}


def critical_line(activation, q_stars) -> CriticalLine:
    """Vectorised :func:`critical_point` over an array of q* (NaN where sigma_b2 would be < 0).

    >>> [round(float(w), 6) for w in critical_line("erf", [0.5, 1.0]).sigma_w2]
    [1.60337, 2.03509]
    """
    a = get_activation(activation)
    qs = nonnegative_array("q_stars", q_stars, positive=True)
    _check_points_fit(qs.size, "critical_line")
    sw, sb, m1, m2 = _critical_arrays(a, qs)
    bad = (sb < 0) | ~np.isfinite(sw)
    nan = np.where(bad, np.nan, 1.0)
    return CriticalLine(qs, sw * nan, sb * nan, m1 * nan, m2 * nan, a.name)


@dataclass(frozen=True)
class PhaseDiagram:
    """chi and q* on a (sigma_w2, sigma_b2) grid; arrays shaped (len(sigma_b2 grid), len(sigma_w2 grid)).

    ``q_star`` is the fixed point the length map reaches from q = 1; where it diverges instead
    (no fixed point, e.g. ReLU with sigma_w2 > 2, or one that q = 1 does not reach) ``q_star``
    is inf and ``chi`` is NaN.
    """

    activation: str
    sigma_w2: np.ndarray
    sigma_b2: np.ndarray
    q_star: np.ndarray
    chi: np.ndarray

    def to_dict(self) -> dict[str, Any]:
        """The grid axes (1-D) and q*, chi (2-D lists; None where q diverges)."""
        return {"activation": self.activation, "sigma_w2": self.sigma_w2[0].tolist(),
                "sigma_b2": self.sigma_b2[:, 0].tolist(), "q_star": self.q_star.tolist(), "chi": self.chi.tolist()}

    def plot(self, ax=None, path=None, *, critical_q_stars=None):
        """The paper's Fig. 1: ordered/chaotic phases and the critical line coloured by q*.

        Args:
            ax: a matplotlib Axes to draw into (a new Figure otherwise).
            path: also write the figure there.
            critical_q_stars: the q* at which to draw the critical line (default 1e-4 .. 10).

        Returns:
            the matplotlib Figure.
        """
        from .plotting.meanfield import plot_phase_diagram

        return plot_phase_diagram(self, ax=ax, path=path, critical_q_stars=critical_q_stars)


def _q_star_tabulated(a: Activation, sw: np.ndarray, sb: np.ndarray) -> np.ndarray:
    """q* on many (sigma_w2, sigma_b2) pairs for one activation.

    E[phi^2](q) is tabulated once on a log-q grid (exact values and derivatives,
    cubic Hermite interpolation, relative error ~1e-12), Newton runs on the
    interpolant, and points that leave the table are solved exactly. For unbounded
    units the table reaches past the divergence threshold ``_Q_MAX``, so points where
    q diverges are found on the table too (q* = inf).
    """
    qmax_guess = float(np.max(sw)) + float(np.max(sb)) + 1.0
    top, n = (qmax_guess * 4, 8000) if a.bounded else (10 * _Q_MAX, 12000)
    s_grid = np.linspace(np.log(1e-10), np.log(top), n)
    spline, s_grid = _log_q_spline(lambda h: np.square(a.phi(h)), a, s_grid, truncate=True)
    qg = np.exp(s_grid)
    dspline = spline.derivative()
    sw, sb = np.broadcast_arrays(sw, sb)
    q = np.ones(sw.shape)
    for _ in range(200):
        qc = np.clip(q, qg[0], qg[-1])
        s = np.log(qc)
        Fq, dFq = spline(s) * (q / qc), dspline(s) / qc  # F ~ F(q0) q / q0 below the table
        g = sw * Fq + sb - q
        dg = sw * dFq - 1.0
        with np.errstate(divide="ignore", invalid="ignore"):
            newton = q - g / dg
        qn = np.where((dg < 0) & np.isfinite(newton) & (newton >= 0), newton, sw * Fq + sb)
        qn = np.where((g > 0) & (dg >= 0) & (q > 10.0 * (1.0 + sb)), 4.0 * (sw * Fq + sb), qn)  # as _q_star_array
        qn = np.minimum(qn, 10 * qg[-1])
        if np.allclose(qn, q, rtol=1e-15, atol=0):
            q = qn
            break
        q = qn
    diverged = (q > _Q_MAX) & (qg[-1] > _Q_MAX)
    outside = ((q <= 100 * qg[0]) | (q >= qg[-2])) & ~diverged
    q = np.where(diverged, np.inf, q)
    mu1 = np.full(q.shape, np.nan)
    inside = ~outside & ~diverged
    mu_spline, _ = _log_q_spline(lambda h: np.square(a.dphi(h)), a, s_grid)
    mu1[inside] = mu_spline(np.log(q[inside]))
    if np.any(outside):
        q[outside] = _q_star_array(a, sw[outside], sb[outside], None, diverged="inf")
        fin = outside & np.isfinite(q)
        mu1[fin] = mu(a, q[fin], 1)
    return q, mu1


def _log_q_spline(f, a: Activation, s_grid: np.ndarray, truncate: bool = False):
    """(Cubic Hermite interpolant of s -> E[f(sqrt(e^s) z)] from exact values and slopes, its grid).

    With ``truncate`` the grid ends where the expectation stops being finite (an activation
    growing too fast for huge q); otherwise that raises.
    """
    from scipy.interpolate import CubicHermiteSpline

    qg = np.exp(s_grid)
    z, w = gauss_nodes()
    with np.errstate(all="ignore"):
        vals = f(np.sqrt(qg)[:, None] * z)
        F = vals @ w
        dF = 0.5 * (vals * (z * z - 1.0)) @ w  # dE/dlog q = q dE/dq = E[f (z^2 - 1)] / 2
    ok = np.isfinite(F) & np.isfinite(dF)
    if truncate and not np.all(ok) and ok[0]:
        n = int(np.argmin(ok)) if not np.all(ok) else ok.size
        s_grid, F, dF = s_grid[:n], F[:n], dF[:n]
    else:
        _finite(a, qg, np.where(ok, F, np.nan), "E[phi(h)^2] or mu_1")
    return CubicHermiteSpline(s_grid, F, dF), s_grid


def phase_diagram(activation, sigma_w2_grid, sigma_b2_grid) -> PhaseDiagram:
    """q* and chi on the grid sigma_w2_grid x sigma_b2_grid (vectorised).

    Points where the length map iterated from q = 1 diverges get q* = inf and chi = NaN. For the positively
    homogeneous units the marginal point (every q fixed; ReLU at (2, 0)) takes q* = 1.

    >>> import numpy as np
    >>> pd = phase_diagram("tanh", np.linspace(0.5, 3, 4), [0.0, 0.1])
    >>> pd.chi.shape
    (2, 4)
    """
    a = get_activation(activation)
    sw = _check_var(sigma_w2_grid, "sigma_w2_grid").ravel()
    sb = _check_var(sigma_b2_grid, "sigma_b2_grid").ravel()
    if sw.size == 0 or sb.size == 0:
        raise ValueError("sigma_w2_grid and sigma_b2_grid must not be empty")
    _check_points_fit(sw.size * sb.size, f"phase_diagram ({sb.size} x {sw.size} grid)", _TABLE_BYTES)
    SW, SB = np.meshgrid(sw, sb)
    if SW.size > 256 and _linear_growth(a) is None and not a.kinks:
        q, mu1 = _q_star_tabulated(a, SW, SB)
    else:
        q = _q_star_array(a, SW, SB, 1.0 if a.homogeneous else None, diverged="inf")
        mu1 = np.full(q.shape, np.nan)
        fin = np.isfinite(q)
        mu1[fin] = mu(a, q[fin], 1)
    return PhaseDiagram(a.name, SW, SB, q, SW * mu1)


# ------------------------------------------------------------------- correlations
def _kernel(a: Activation, q: float, c: np.ndarray) -> np.ndarray:
    """E[phi(u1) phi(u2)], Var u = q, Corr(u1, u2) = c (2-D composite quadrature if not exact)."""
    c = np.asarray(c, dtype=float)
    if a.kernel is not None:
        return np.asarray(a.kernel(q, c), dtype=float)
    return _pair_expectation(a.phi, q, c)


def _pair_expectation(f, q: float, c: np.ndarray) -> np.ndarray:
    """E[f(u1) f(u2)] for (u1, u2) Gaussian with variances q and correlation c (tensor composite rule)."""
    z, w = gauss_nodes(order=8)
    s = np.sqrt(q)
    p1 = f(s * z)
    out = np.empty(c.shape)
    for i, ci in enumerate(c.ravel()):
        u2 = s * (ci * z[:, None] + np.sqrt(max(1.0 - ci * ci, 0.0)) * z[None, :])
        out.ravel()[i] = w @ (p1[:, None] * f(u2)) @ w
    return out


def _c_map_at(a: Activation, c, sw: float, sb: float, q: float) -> np.ndarray:
    return (sw * _kernel(a, q, np.asarray(c, dtype=float)) + sb) / q


def _fixed_point_params(a: Activation, sigma_w2, sigma_b2, q0) -> tuple[float, float, float]:
    sw = check_nonnegative("sigma_w2", sigma_w2)
    sb = check_nonnegative("sigma_b2", sigma_b2)
    q = float(q_star(a, sw, sb, q0))
    if q <= 0:
        raise ValueError("q* = 0 (ordered phase with sigma_b2 = 0): correlations are undefined")
    return sw, sb, q


def c_map(activation, c, sigma_w2, sigma_b2, q0=None) -> np.ndarray:
    """The correlation map c -> (sigma_w2 E[phi(u1) phi(u2)] + sigma_b2) / q* (Schoenholz et al. 2017, eq. 5).

    (u1, u2) are Gaussian with variances q* and correlation c; ``q0`` picks the fixed point
    where every q is one (ReLU at (2, 0)).

    >>> round(float(c_map("relu", 0.0, 2.0, 0.0, q0=1.0)), 12)      # 1/pi
    0.318309886184
    """
    a = get_activation(activation)
    c = real_array("c", c)
    if np.any(np.abs(c) > 1) or not np.all(np.isfinite(c)):
        raise ValueError("c must lie in [-1, 1]")
    sw, sb, q = _fixed_point_params(a, sigma_w2, sigma_b2, q0)
    return _c_map_at(a, c, sw, sb, q)[()]


def c_star(activation, sigma_w2, sigma_b2, q0=None) -> float:
    """The stable fixed point c* of the correlation map: 1 when chi <= 1, in [0, 1) when chi > 1.

    In the chaotic phase c -> f(c) is increasing and convex on [0, 1] (its Hermite expansion
    has non-negative coefficients) with f(1) = 1 and f'(1) = chi > 1, so f(c) - c is
    >= 0 at c = 0, < 0 just below 1, and has exactly one root c* in [0, 1): found by Brent's
    method on a bracket, then checked by its residual |f(c*) - c*|.

    Raises ``ValueError`` when chi - 1 > 0 is so small (below ~1e-8) that f(c) - c is within
    rounding of 0 near c = 1 and c* cannot be resolved in float64.

    >>> round(c_star("tanh", 1.06, 2e-5), 4)
    0.6989
    """
    from scipy.optimize import brentq

    a = get_activation(activation)
    sw, sb, q = _fixed_point_params(a, sigma_w2, sigma_b2, q0)
    chi_v = sw * float(mu(a, q, 1))
    if chi_v <= 1.0 + _CHAOS_EPS:
        return 1.0

    def g(c: float) -> float:
        return float(_c_map_at(a, c, sw, sb, q)) - c

    # f(c) - c < 0 on (c*, 1): walk towards 1 until it is negative beyond its rounding (~1e-16)
    lo, g_lo = 0.0, g(0.0)
    if g_lo < 0:
        raise ValueError(f"c*: the correlation map of {a.name} at sigma_w2={sw:g}, sigma_b2={sb:g} has f(0) < 0")
    if g_lo == 0.0:
        return 0.0
    hi = None
    for k in range(1, 15):
        c = 1.0 - 10.0**-k
        gc = g(c)
        if gc < -32 * np.finfo(float).eps:
            hi = c
            break
        if gc > 0:
            lo = c
    if hi is None:
        raise ValueError(
            f"c* of {a.name} at sigma_w2={sw:g}, sigma_b2={sb:g} cannot be resolved in float64: chi - 1 = "
            f"{chi_v - 1:.3g} is so small that f(c) - c stays within rounding of 0 near c = 1"
        )
    root = brentq(g, lo, hi, xtol=1e-15, rtol=4 * np.finfo(float).eps, maxiter=200)
    res = abs(g(root))
    if not res <= 1e-13:
        raise ValueError(f"c* of {a.name} at sigma_w2={sw:g}, sigma_b2={sb:g} did not converge (residual {res:.3g})")
    return float(root)


def xi_q(activation, sigma_w2, sigma_b2, q0=None) -> float:
    """Depth scale of the length map: xi_q^{-1} = -log Q'(q*) (Schoenholz et al. 2017, eq. 7).

    >>> xi_q("tanh", 2.0, 0.1) > 0
    True
    """
    a = get_activation(activation)
    sw, sb, q = _fixed_point_params(a, sigma_w2, sigma_b2, q0)
    slope = sw * float(_de_phi2_dq(a, np.atleast_1d(q))[0])
    return float(np.inf) if slope >= 1 else float(-1.0 / np.log(slope)) if slope > 0 else 0.0


def xi_c(activation, sigma_w2, sigma_b2, q0=None) -> float:
    """Depth scale of correlations: xi_c^{-1} = -log chi_c, chi_c = sigma_w2 E[phi'(u1) phi'(u2)] at c*
    (Schoenholz et al. 2017, eq. 9); chi_c = chi in the ordered phase (c* = 1).

    >>> bool(abs(xi_c("tanh", 0.8, 0.05) + 1 / np.log(float(chi("tanh", 0.8, 0.05)))) < 1e-9)
    True
    """
    a = get_activation(activation)
    sw, sb, q = _fixed_point_params(a, sigma_w2, sigma_b2, q0)
    cs = c_star(a, sw, sb, q0)
    if cs >= 1.0:
        chi_c = sw * float(mu(a, q, 1))
    else:
        chi_c = sw * float(_pair_expectation(a.dphi, q, np.array([cs]))[0])
    if abs(chi_c - 1.0) < 1e-12:
        return float(np.inf)
    return float(-1.0 / np.log(chi_c))


def network_parameters(activation, *, q_star: float | None = None, sigma_w2: float | None = None,
                       sigma_b2: float | None = None, q0: float | None = None) -> tuple[float, float, float]:
    """Resolve (sigma_w2, sigma_b2, q*) of a network from either ``q_star`` (the critical point with
    that fixed point, :func:`critical_point`) or the variances ``sigma_w2`` and ``sigma_b2`` (q* from
    :func:`q_star`, started at ``q0``). For the positively homogeneous units (``Activation.homogeneous``:
    linear, relu, leaky_relu) nothing but the length depends on q, so at their marginal point (every q
    fixed) q0 defaults to 1.

    >>> network_parameters("relu", sigma_w2=2.0, sigma_b2=0.0)
    (2.0, 0.0, 1.0)
    """
    a = get_activation(activation)
    if q_star is not None:
        if sigma_w2 is not None or sigma_b2 is not None:
            raise ValueError("give either q_star (the critical point) or sigma_w2 and sigma_b2, not both")
        cp = critical_point(a, q_star)
        return cp.sigma_w2, cp.sigma_b2, cp.q_star
    if sigma_w2 is None or sigma_b2 is None:
        raise ValueError("give q_star (the critical point) or both sigma_w2 and sigma_b2")
    sw = check_positive("sigma_w2", sigma_w2)
    sb = check_nonnegative("sigma_b2", sigma_b2)
    if q0 is None and a.homogeneous:
        q0 = 1.0
    elif q0 is not None:
        q0 = check_nonnegative("q0", q0)
    return sw, sb, float(_q_star_solver(a, sw, sb, q0))
