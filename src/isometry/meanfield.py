"""Mean-field signal propagation (Poole et al. 2016; Schoenholz et al. 2017;
Pennington, Schoenholz & Ganguli 2017, eqs. 3-5).

For a network h^l = W^l phi(h^{l-1}) + b^l with W_ij ~ N(0, sigma_w2 / N) (or
scaled orthogonal) and b_i ~ N(0, sigma_b2), the pre-activation length obeys

    q^l = sigma_w2 E_z[phi(sqrt(q^{l-1}) z)^2] + sigma_b2            (eq. 3)

with stable fixed point q*; perturbations grow by chi = sigma_w2 mu_1 per layer,
mu_k = E[phi'(h)^(2k)], h ~ N(0, q*) (eq. 5). chi = 1 is the critical line.
Variances (``sigma_w2``, ``sigma_b2``) not standard deviations.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .activations import Activation, get_activation
from .gaussian import expect, gauss_nodes

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


def _act(act) -> Activation:
    return get_activation(act)


def _check_q(q, name: str = "q") -> np.ndarray:
    q = np.asarray(q, dtype=float)
    if not np.all(np.isfinite(q)) or np.any(q < 0):
        raise ValueError(f"{name} must be finite and >= 0, got {q if q.size < 8 else '<array>'}")
    return q


def _check_var(v, name: str, positive: bool = False) -> np.ndarray:
    v = np.asarray(v, dtype=float)
    bad = ~np.isfinite(v) | ((v <= 0) if positive else (v < 0))
    if np.any(bad):
        rng = "> 0" if positive else ">= 0"
        shown = v if v.size < 8 else v[bad].ravel()[0]
        raise ValueError(f"{name} must be finite and {rng}, got {shown}")
    return v


def e_phi2(act, q) -> np.ndarray:
    """E[phi(h)^2], h ~ N(0, q): exact where known, composite quadrature otherwise."""
    a = _act(act)
    q = _check_q(q)
    if a.e_phi2 is not None:
        return np.asarray(a.e_phi2(q), dtype=float)[()]
    return expect(lambda h: np.square(a.phi(h)), q, a.kinks)


def _de_phi2_dq(a: Activation, q: np.ndarray) -> np.ndarray:
    """d/dq E[phi(sqrt(q) z)^2] = E[phi^2 (z^2 - 1)] / (2q) (derivative-free)."""
    qs = np.where(q > 0, q, 1.0)
    if a.e_phi2 is not None:
        eps = 1e-6 * qs
        d = (a.e_phi2(qs + eps) - a.e_phi2(np.maximum(qs - eps, 0.0))) / (qs + eps - np.maximum(qs - eps, 0.0))
    else:
        z, w = gauss_nodes()
        h = np.sqrt(qs)[..., None] * z
        d = (np.square(a.phi(h)) * (z * z - 1.0)) @ w / (2.0 * qs)
    # at q = 0 use phi'(0)^2 + phi(0) phi''(0) ~ phi'(0)^2 for phi(0) = 0
    d0 = np.square(a.dphi(np.array(0.0)))
    return np.where(q > 0, d, d0)


def q_map(act, q, sigma_w2, sigma_b2) -> np.ndarray:
    """The length map q -> sigma_w2 E[phi(sqrt(q) z)^2] + sigma_b2 (eq. 3)."""
    sw = _check_var(sigma_w2, "sigma_w2")
    sb = _check_var(sigma_b2, "sigma_b2")
    return sw * e_phi2(act, q) + sb


def _linear_growth(a: Activation) -> float | None:
    """lim E[phi^2]/q as q -> inf for the exact (piecewise-linear) unbounded activations."""
    if a.e_phi2 is None or a.bounded:
        return None
    if a.name in ("linear", "relu", "leaky_relu"):
        return float(a.e_phi2(np.array(1.0)))
    return None


def q_star(act, sigma_w2, sigma_b2, q0=None) -> np.ndarray:
    """The stable fixed point q* of the length map (vectorised over sigma_w2, sigma_b2).

    Raises ``ValueError`` where q diverges (e.g. ReLU with sigma_w2 > 2) or every
    q is a fixed point and ``q0`` is not given (ReLU at (2, 0), linear at (1, 0)).
    Solved by safeguarded Newton iteration on Q(q) - q from ``q0`` (default 1).
    """
    a = _act(act)
    sw = _check_var(sigma_w2, "sigma_w2")
    sb = _check_var(sigma_b2, "sigma_b2")
    sw, sb = np.broadcast_arrays(sw, sb)
    if q0 is not None:
        q0 = _check_q(q0, "q0")
    c = _linear_growth(a)
    if c is not None:  # Q(q) = sw c q + sb exactly
        slope = sw * c
        with np.errstate(divide="ignore", invalid="ignore"):
            out = np.where(slope < 1, sb / (1.0 - slope), np.nan)
        marginal = np.isclose(slope, 1.0, rtol=1e-12, atol=0) & (sb == 0)
        if np.any(marginal):
            if q0 is None:
                raise ValueError(
                    f"every q is a fixed point of the {a.name} length map at sigma_w2={1 / c:g}, sigma_b2=0; pass q0= "
                    "(the input length) to choose one"
                )
            out = np.where(marginal, np.broadcast_to(q0, out.shape), out)
        if np.any(np.isnan(out)):
            raise ValueError(
                f"no fixed point: the {a.name} length map diverges for sigma_w2 >= {1 / c:g} "
                f"(with sigma_b2 > 0 at equality); valid range is sigma_w2 < {1 / c:g}"
            )
        return out[()]

    shape = sw.shape
    sw, sb = np.atleast_1d(sw).ravel(), np.atleast_1d(sb).ravel()
    q = np.broadcast_to(np.asarray(1.0 if q0 is None else q0, dtype=float), shape).ravel().copy()
    active = np.ones(sw.shape, dtype=bool)
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
        if np.any(qn > _Q_MAX) or not np.all(np.isfinite(qn)):
            bad = np.flatnonzero((qn > _Q_MAX) | ~np.isfinite(qn))[0]
            raise ValueError(
                f"no fixed point: q diverges for the {a.name} length map at sigma_w2={swa[bad]:g}, "
                f"sigma_b2={sba[bad]:g}; lower sigma_w2"
            )
        # Q - q carries rounding ~eps q, so Newton steps are only resolved to ~eps q / |g'|
        tol = (1e-14 + 8 * np.finfo(float).eps / np.maximum(np.abs(dg), 1e-6)) * np.maximum(qn, 1e-16)
        done = np.abs(qn - qa) <= tol + 1e-300
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
    slope = sw * _de_phi2_dq(a, q)
    if np.any(slope > 1.0 + 1e-6):
        bad = np.flatnonzero(slope > 1.0 + 1e-6)[0]
        raise ValueError(
            f"the fixed point q*={q.ravel()[bad]:g} of {a.name} at sigma_w2={sw.ravel()[bad]:g} is unstable; "
            "pass a different q0"
        )
    return q.reshape(shape)[()]


_q_star_solver = q_star  # for callers whose keyword argument ``q_star`` shadows the solver


def mu(act, q, k: int = 1) -> np.ndarray:
    """mu_k = E[phi'(h)^(2k)], h ~ N(0, q)."""
    a = _act(act)
    q = _check_q(q)
    if int(k) != k or k < 0:
        raise ValueError(f"k must be a non-negative integer, got {k!r}")
    k = int(k)
    if k == 0:
        return np.ones_like(q)[()]
    if a.mu_exact is not None:
        return np.asarray(a.mu_exact(q, k), dtype=float)[()]
    return expect(lambda h: np.abs(a.dphi(h)) ** (2 * k), q, a.kinks)


def chi(act, sigma_w2, sigma_b2, q0=None) -> np.ndarray:
    """chi = sigma_w2 mu_1(q*), the mean squared singular value per layer (eq. 5)."""
    q = q_star(act, sigma_w2, sigma_b2, q0)
    return np.asarray(sigma_w2, dtype=float) * mu(act, q, 1)


@dataclass(frozen=True)
class CriticalPoint:
    """A point on the critical line chi = 1 with fixed point ``q_star``."""

    sigma_w2: float
    sigma_b2: float
    q_star: float
    mu1: float
    mu2: float

    @property
    def chi(self) -> float:
        return self.sigma_w2 * self.mu1

    def as_dict(self) -> dict[str, float]:
        return {"sigma_w2": self.sigma_w2, "sigma_b2": self.sigma_b2, "q_star": self.q_star,
                "mu1": self.mu1, "mu2": self.mu2, "chi": self.chi}


def _critical_arrays(a: Activation, qs: np.ndarray):
    m1 = np.asarray(mu(a, qs, 1), dtype=float)
    m2 = np.asarray(mu(a, qs, 2), dtype=float)
    with np.errstate(divide="ignore"):
        sw = 1.0 / m1
    sb = qs - sw * e_phi2(a, qs)
    # sigma_b2 is a difference of two O(q*) numbers: values within rounding of 0 are 0
    tol = 64 * np.finfo(float).eps * np.maximum(qs, 1e-300)
    sb = np.where(np.abs(sb) <= tol, 0.0, sb)
    return sw, sb, m1, m2


def critical_point(act, q_star: float) -> CriticalPoint:
    """The critical point (chi = 1) whose fixed point is ``q_star``.

    sigma_w2 = 1 / mu_1(q*), sigma_b2 = q* - sigma_w2 E[phi(h)^2].
    Examples: hard tanh sigma_w2 = 1/erf(1/sqrt(2 q*)); erf sigma_w2 = sqrt(1 + pi q*);
    ReLU (2, 0) and linear (1, 0) for every q*.
    """
    a = _act(act)
    try:
        qv = float(q_star)
    except (TypeError, ValueError):
        raise ValueError(f"q_star must be a number > 0, got {q_star!r}") from None
    if not np.isfinite(qv) or qv <= 0:
        raise ValueError(f"q_star must be finite and > 0, got {q_star!r}")
    sw, sb, m1, m2 = (float(x) for x in _critical_arrays(a, np.array(qv)))
    if not (np.isfinite(sw) and m1 > 0):
        raise ValueError(f"{a.name}: mu_1(q*={qv:g}) = {m1:g}; no finite sigma_w2 makes chi = 1 (try a smaller q_star)")
    if sb < 0:
        raise ValueError(
            f"{a.name} has no critical point with q_star={qv:g}: it would need sigma_b2={sb:.3g} < 0 "
            "(choose a q_star where sigma_b2 >= 0)"
        )
    return CriticalPoint(sw, sb, qv, m1, m2)


@dataclass(frozen=True)
class CriticalLine:
    """Arrays along the critical line; NaN where no critical point has that q*."""

    q_star: np.ndarray
    sigma_w2: np.ndarray
    sigma_b2: np.ndarray
    mu1: np.ndarray
    mu2: np.ndarray

    @property
    def valid(self) -> np.ndarray:
        return np.isfinite(self.sigma_b2)


def critical_line(act, q_stars) -> CriticalLine:
    """Vectorised :func:`critical_point` over an array of q*."""
    a = _act(act)
    qs = np.asarray(q_stars, dtype=float)
    if not np.all(np.isfinite(qs)) or np.any(qs <= 0):
        raise ValueError("q_stars must be finite and > 0")
    sw, sb, m1, m2 = _critical_arrays(a, qs)
    bad = (sb < 0) | ~np.isfinite(sw)
    nan = np.where(bad, np.nan, 1.0)
    return CriticalLine(qs, sw * nan, sb * nan, m1 * nan, m2 * nan)


@dataclass(frozen=True)
class PhaseDiagram:
    """chi and q* on a (sigma_w2, sigma_b2) grid; arrays shaped (len(sb2), len(sw2))."""

    activation: str
    sigma_w2: np.ndarray
    sigma_b2: np.ndarray
    q_star: np.ndarray
    chi: np.ndarray

    def plot(self, ax=None, critical_q_stars=None):
        """The paper's Fig. 1: ordered/chaotic phases and the critical line coloured by q*."""
        from .plotting.meanfield import plot_phase_diagram

        return plot_phase_diagram(self, ax=ax, critical_q_stars=critical_q_stars)


def _q_star_tabulated(a: Activation, sw: np.ndarray, sb: np.ndarray) -> np.ndarray:
    """q* on many (sigma_w2, sigma_b2) pairs for one activation.

    E[phi^2](q) is tabulated once on a log-q grid (exact values and derivatives,
    cubic Hermite interpolation, relative error ~1e-12), Newton runs on the
    interpolant, and points that leave the table are solved exactly.
    """
    qmax_guess = float(np.max(sw)) * (1.0 if a.bounded else 10.0) + float(np.max(sb)) + 1.0
    s_grid = np.linspace(np.log(1e-10), np.log(qmax_guess * 4), 8000)
    qg = np.exp(s_grid)
    spline = _log_q_spline(lambda h: np.square(a.phi(h)), a, s_grid)
    dspline = spline.derivative()
    sw, sb = np.broadcast_arrays(sw, sb)
    q = np.ones(sw.shape)
    for _ in range(100):
        qc = np.clip(q, qg[0], qg[-1])
        s = np.log(qc)
        Fq, dFq = spline(s) * (q / qc), dspline(s) / qc  # F ~ F(q0) q / q0 below the table
        g = sw * Fq + sb - q
        dg = sw * dFq - 1.0
        with np.errstate(divide="ignore", invalid="ignore"):
            newton = q - g / dg
        qn = np.where((dg < 0) & np.isfinite(newton) & (newton >= 0), newton, sw * Fq + sb)
        if np.allclose(qn, q, rtol=1e-15, atol=0):
            q = qn
            break
        q = np.minimum(qn, 10 * qg[-1])
    outside = (q <= 100 * qg[0]) | (q >= qg[-2])
    mu1 = np.empty_like(q)
    mu1[~outside] = _log_q_spline(lambda h: np.square(a.dphi(h)), a, s_grid)(np.log(q[~outside]))
    if np.any(outside):
        q[outside] = q_star(a, sw[outside], sb[outside])
        mu1[outside] = mu(a, q[outside], 1)
    return q, mu1


def _log_q_spline(f, a: Activation, s_grid: np.ndarray):
    """Cubic Hermite interpolant of s -> E[f(sqrt(e^s) z)] from exact values and slopes."""
    from scipy.interpolate import CubicHermiteSpline

    qg = np.exp(s_grid)
    z, w = gauss_nodes()
    vals = f(np.sqrt(qg)[:, None] * z)
    F = vals @ w
    dF = 0.5 * (vals * (z * z - 1.0)) @ w  # dE/dlog q = q dE/dq = E[f (z^2 - 1)] / 2
    return CubicHermiteSpline(s_grid, F, dF)


def phase_diagram(act, sigma_w2_grid, sigma_b2_grid) -> PhaseDiagram:
    """q* and chi on the grid sigma_w2_grid x sigma_b2_grid (vectorised)."""
    a = _act(act)
    sw = _check_var(np.asarray(sigma_w2_grid, float).ravel(), "sigma_w2_grid")
    sb = _check_var(np.asarray(sigma_b2_grid, float).ravel(), "sigma_b2_grid")
    SW, SB = np.meshgrid(sw, sb)
    if SW.size > 256 and _linear_growth(a) is None and not a.kinks:
        q, mu1 = _q_star_tabulated(a, SW, SB)
    else:
        q = np.asarray(q_star(a, SW, SB))
        mu1 = mu(a, q, 1)
    return PhaseDiagram(a.name, SW, SB, q, SW * mu1)


# ------------------------------------------------------------------- correlations
def _kernel(a: Activation, q: float, c: np.ndarray) -> np.ndarray:
    """E[phi(u1) phi(u2)], Var u = q, Corr(u1, u2) = c (2-D composite quadrature if not exact)."""
    if a.kernel is not None:
        return np.asarray(a.kernel(q, c), dtype=float)
    z, w = gauss_nodes(order=8)
    s = np.sqrt(q)
    p1 = a.phi(s * z)
    out = np.empty(c.shape)
    for i, ci in enumerate(c.ravel()):
        u2 = s * (ci * z[:, None] + np.sqrt(max(1.0 - ci * ci, 0.0)) * z[None, :])
        out.ravel()[i] = w @ (p1[:, None] * a.phi(u2)) @ w
    return out


def c_map(act, c, sigma_w2, sigma_b2, q_star_value=None) -> np.ndarray:
    """The correlation map c -> (sigma_w2 E[phi(u1) phi(u2)] + sigma_b2) / q* (Schoenholz et al. eq. 5)."""
    a = _act(act)
    c = np.asarray(c, dtype=float)
    if np.any(np.abs(c) > 1) or not np.all(np.isfinite(c)):
        raise ValueError("c must lie in [-1, 1]")
    q = float(q_star(a, sigma_w2, sigma_b2)) if q_star_value is None else float(q_star_value)
    if q <= 0:
        raise ValueError("q* = 0 (ordered phase with sigma_b2 = 0): correlations are undefined")
    return ((float(sigma_w2) * _kernel(a, q, c) + float(sigma_b2)) / q)[()]


def c_star(act, sigma_w2, sigma_b2) -> float:
    """Stable fixed point of the correlation map: 1 in the ordered phase, < 1 when chi > 1."""
    a = _act(act)
    q = float(q_star(a, sigma_w2, sigma_b2))
    if float(sigma_w2) * float(mu(a, q, 1)) <= 1.0 + 1e-12:
        return 1.0
    c = 0.0
    for _ in range(2000):
        cn = float(c_map(a, c, sigma_w2, sigma_b2, q))
        if abs(cn - c) < 1e-13:
            return cn
        c = cn
    return c


def xi_q(act, sigma_w2, sigma_b2) -> float:
    """Depth scale of the length map: xi_q^{-1} = -log Q'(q*) (Schoenholz et al. eq. 7)."""
    a = _act(act)
    q = np.asarray(q_star(a, sigma_w2, sigma_b2))
    slope = float(sigma_w2) * float(_de_phi2_dq(a, np.atleast_1d(q))[0])
    return float(np.inf) if slope >= 1 else float(-1.0 / np.log(slope)) if slope > 0 else 0.0


def xi_c(act, sigma_w2, sigma_b2) -> float:
    """Depth scale of correlations: xi_c^{-1} = -log chi_c, chi_c = sigma_w2 E[phi'(u1) phi'(u2)] at c*."""
    a = _act(act)
    q = float(q_star(a, sigma_w2, sigma_b2))
    cs = c_star(a, sigma_w2, sigma_b2)
    if cs >= 1.0:
        chi_c = float(sigma_w2) * float(mu(a, q, 1))
    else:
        z, w = gauss_nodes(order=8)
        s = np.sqrt(q)
        u2 = s * (cs * z[:, None] + np.sqrt(1 - cs * cs) * z[None, :])
        chi_c = float(sigma_w2) * float(w @ (a.dphi(s * z)[:, None] * a.dphi(u2)) @ w)
    if abs(chi_c - 1.0) < 1e-12:
        return float(np.inf)
    return float(-1.0 / np.log(chi_c))


def network_parameters(act, *, q_star: float | None = None, sigma_w2: float | None = None,
                       sigma_b2: float | None = None, q0: float | None = None) -> tuple[float, float, float]:
    """Resolve (sigma_w2, sigma_b2, q*) of a network from either ``q_star`` (the critical point with
    that fixed point, :func:`critical_point`) or the variances ``sigma_w2`` and ``sigma_b2`` (q* from
    :func:`q_star`, started at ``q0``). For the positively homogeneous units (linear, relu,
    leaky_relu) nothing but the length depends on q, so at their marginal point (every q fixed) q0
    defaults to 1.
    """
    a = _act(act)
    if q_star is not None:
        if sigma_w2 is not None or sigma_b2 is not None:
            raise ValueError("give either q_star (the critical point) or sigma_w2 and sigma_b2, not both")
        cp = critical_point(a, q_star)
        return cp.sigma_w2, cp.sigma_b2, cp.q_star
    if sigma_w2 is None or sigma_b2 is None:
        raise ValueError("give q_star (the critical point) or both sigma_w2 and sigma_b2")
    try:
        sw, sb = float(sigma_w2), float(sigma_b2)
    except (TypeError, ValueError):
        raise ValueError(f"sigma_w2 and sigma_b2 must be numbers, got {sigma_w2!r}, {sigma_b2!r}") from None
    if not (np.isfinite(sw) and sw > 0):
        raise ValueError(f"sigma_w2 must be finite and > 0, got {sigma_w2!r}")
    if not (np.isfinite(sb) and sb >= 0):
        raise ValueError(f"sigma_b2 must be finite and >= 0, got {sigma_b2!r}")
    if q0 is None and a.name in ("linear", "relu", "leaky_relu"):
        q0 = 1.0
    return sw, sb, float(_q_star_solver(a, sw, sb, q0))
