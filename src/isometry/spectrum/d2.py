"""The law of D^2 = phi'(h)^2, h ~ N(0, q*), normalised to mean 1, and its M-transform.

x = phi'(h)^2 / mu_1 has E[x] = 1.  Its law is a set of atoms (exact for
piecewise-linear units: ``Activation.d2_atoms``; also the flat pieces of e.g. ELU)
plus a continuous part.  The engine needs

    M_{D^2}(w) = E[x / (w - x)]                 (moment generating function)

for complex w in the closed upper half plane, including w on (or very near) the
support of x, where a plain quadrature sum over real nodes x_i = f(h_i) is a sum
of poles and is wrong.  We therefore integrate over h along a *deformed contour*
h = sqrt(q) (u - i kappa s(u)), s(u) ~ sign(d x/d h): every pole of
1/(w - x(h)) with Im w > 0 lies on the side of the real h-axis where x increases
(h_j ~ h_0 + i Im w / x'(h_0)), and the contour bends away from it (Cauchy: the
value is unchanged for Im w > 0, and equals the boundary value M(x_0 + i0) on
the support).  This needs phi' analytic in a strip, which the activation record
provides (``Activation.dphi_complex`` and ``dphi_strip``: tanh, erf, sigmoid,
softplus, silu, gelu, elu, selu, and user callables that set ``dphi_complex``
through :func:`isometry.get_activation`); others use the real axis (kappa = 0,
accurate only away from the support of x).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import special

from ..activations import Activation
from ..gaussian import Z_MAX, _BASE_BREAKS, legendre_panels as _panels
from ..meanfield import mu as _mu

__all__ = ["D2Law", "d2_law"]

_SQRT2PI = np.sqrt(2.0 * np.pi)


# ------------------------------------------------------------------ the law
@dataclass(frozen=True, eq=False)
class D2Law:
    """x = phi'(h)^2 / mu_1 (mean 1): atoms plus a contour-quadrature continuous part.

    ``nodes_x``, ``nodes_p`` are complex when the contour is deformed; then
    M(w) = sum_i p_i x_i / (w - x_i) + sum_atoms p a / (w - a) holds for Im w >= 0.
    """

    mu1: float
    atoms_x: np.ndarray
    atoms_p: np.ndarray
    nodes_x: np.ndarray
    nodes_p: np.ndarray
    x_max: float
    x_max_cont: float
    exact_moments: np.ndarray  # E[x^k], k = 0..K
    deformed: bool
    n_extrema: int = 0  # interior extrema of x(h) on the real line (1 for tanh, 3 for silu)

    @property
    def zero_mass(self) -> float:
        return float(self.atoms_p[self.atoms_x == 0].sum())

    @property
    def has_continuous(self) -> bool:
        return self.nodes_x.size > 0

    def _all(self):
        """(x, p) of every atom and node with x != 0, and the mass at x == 0 (atoms at 0 and the
        quadrature nodes where phi'(h)^2 underflows to 0, e.g. erf at q >~ 20)."""
        x = np.concatenate([self.atoms_x.astype(complex), self.nodes_x.astype(complex)])
        p = np.concatenate([self.atoms_p.astype(complex), self.nodes_p.astype(complex)])
        keep = x != 0
        return x[keep], p[keep], complex(p[~keep].sum())

    def m_and_dm(self, w: np.ndarray, chunk: int = 512) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """M(w) = E[x/(w-x)], M'(w) = -E[x/(w-x)^2] and 1 + M(w) = P(x=0) + w E'[1/(w-x)].

        1 + M is summed directly (no cancellation as w -> 0, where M -> -1); P(x=0) counts the atoms at
        0 and the quadrature nodes where phi'(h)^2 underflows to 0.
        """
        w = np.asarray(w, dtype=complex)
        flat = w.ravel()
        x, p, z0 = self._xp
        px = p * x
        m = np.empty(flat.shape, complex)
        dm = np.empty(flat.shape, complex)
        opm = np.empty(flat.shape, complex)
        cols = np.stack([px, p], axis=1)
        for s in range(0, flat.size, chunk):
            r = flat[s : s + chunk, None] - x[None, :]
            np.reciprocal(r, out=r)
            mp = r @ cols  # BLAS: sum_i p_i x_i r_i and sum_i p_i r_i
            m[s : s + chunk] = mp[:, 0]
            np.multiply(r, r, out=r)
            dm[s : s + chunk] = -(r @ px)
            opm[s : s + chunk] = z0 + flat[s : s + chunk] * mp[:, 1]
        return m.reshape(w.shape), dm.reshape(w.shape), opm.reshape(w.shape)

    def __post_init__(self):
        object.__setattr__(self, "_xp", self._all())

    def moments(self, K: int) -> np.ndarray:
        """E[x^k], k = 0..K (exact where the activation has closed forms)."""
        if K < len(self.exact_moments):
            return self.exact_moments[: K + 1].copy()
        raise ValueError(f"moments up to order {len(self.exact_moments) - 1} are available, asked for {K}")


_K_MOM = 24
_W_END = 0.5


def _atoms_only(values, probs, mu1, nk):
    v = np.asarray(values, float) / mu1
    p = np.asarray(probs, float)
    keep = p > 0
    v, p = v[keep], p[keep]
    order = np.argsort(v)
    v, p = v[order], p[order]
    mom = np.array([np.sum(p * v**k) for k in range(nk + 1)])
    e = np.empty(0, complex)
    return D2Law(mu1, v, p, e, e, float(v.max()), 0.0, mom, False)


def d2_law(activation: Activation, q: float, kappa: float | None = None, order: int = 12) -> D2Law:
    """The normalised law of D^2 = phi'(h)^2 / mu_1, h ~ N(0, q), for ``activation`` (an :class:`Activation`)."""
    q = float(q)
    nk = _K_MOM
    if q == 0.0 and activation.d2_atoms is None:
        d0 = float(activation.dphi(np.array(0.0))) ** 2
        if not d0 > 0:
            raise ValueError(f"{activation.name}: phi'(0) = 0 at q* = 0, so the Jacobian vanishes (chi = 0)")
        return _atoms_only([d0], [1.0], d0, nk)
    mu1 = float(_mu(activation, q, 1))
    if not (np.isfinite(mu1) and mu1 > 0):
        raise ValueError(f"{activation.name}: mu_1(q*={q:g}) = {mu1:g}; the Jacobian vanishes")
    if activation.d2_atoms is not None:
        v, p = activation.d2_atoms(q)
        return _atoms_only(v, p, mu1, nk)

    sq = np.sqrt(q)
    half = np.array(_BASE_BREAKS)
    kz = [k / sq for k in activation.kinks if abs(k / sq) < Z_MAX]
    br = np.unique(np.concatenate([-half[::-1], half, kz]))
    # pieces between kinks
    edges = np.unique(np.concatenate([[-Z_MAX, Z_MAX], kz]))
    analytic = activation.dphi_complex is not None
    if kappa is None:
        kappa = min(0.25, 0.3 * activation.dphi_strip / sq, 0.3 / sq) if analytic else 0.0
    dphi_c = activation.dphi_complex if analytic else (lambda h: np.asarray(activation.dphi(h.real), dtype=complex))

    # exact moments of x (real axis)
    mom = np.array([float(_mu(activation, q, k)) / mu1**k if k else 1.0 for k in range(nk + 1)])

    atoms_x, atoms_p, nx, npw = [], [], [], []
    xmax_c = 0.0
    n_ext = 0
    for a, b in zip(edges[:-1], edges[1:]):
        pb = br[(br >= a) & (br <= b)]
        pb = np.unique(np.concatenate([[a, b], pb]))
        u, wu = _panels(pb, order)
        fr = np.asarray(activation.dphi(sq * u), dtype=float) ** 2 / mu1
        if np.ptp(fr) == 0.0:  # a flat piece: an atom
            mass = special.ndtr(b) - special.ndtr(a)
            atoms_x.append(float(fr[0]))
            atoms_p.append(float(mass))
            continue
        xmax_c = max(xmax_c, _refined_max(activation, sq, mu1, u, fr))
        if kappa > 0:
            def f(zz):
                return dphi_c(sq * zz) ** 2 / mu1

            def g(uu):
                return f(uu + 1e-30j).imag / 1e-30

            roots, s_left, wid = _sign_changes(g, u, a, b)
            n_ext += len(roots)
            extra = [r + k * wid for r in roots for k in (-4, -2, -1, 0, 1, 2, 4)]
            extra += [e + sg * 2.0**-k for e, sg in ((a, 1), (b, -1)) if abs(e) < Z_MAX for k in range(-1, 22)]
            extra += _log_breaks(activation, sq, a, b)
            fmax = float(np.max(fr))
            for r in roots:  # a zero of phi': x ~ c (z - r)^2, graded panels resolve x -> 0
                if abs(complex(f(np.array(r + 0j)))) < 1e-8 * fmax:
                    extra += [r + sgn * 0.5 * 2.0**-k for k in range(0, 26) for sgn in (-1, 1)]
            pb = np.unique(np.concatenate([pb, [x for x in extra if a < x < b]]))
            u, wu = _panels(pb, order)
            s0, ds = _bend(u, roots, s_left, wid, a, b)
            amp, damp = _amplitude(activation, sq, u, kappa)
            z = u - 1j * amp * s0
            dz = 1.0 - 1j * (damp * s0 + amp * ds)
            x = f(z)
            pw = wu * np.exp(-0.5 * z * z) / _SQRT2PI * dz
        else:
            x = fr.astype(complex)
            pw = (wu * np.exp(-0.5 * u * u) / _SQRT2PI).astype(complex)
        nx.append(x)
        npw.append(pw)
    atoms_x = np.asarray(atoms_x, float)
    atoms_p = np.asarray(atoms_p, float)
    nodes_x = np.concatenate(nx) if nx else np.empty(0, complex)
    nodes_p = np.concatenate(npw) if npw else np.empty(0, complex)
    xmax = max(xmax_c, float(atoms_x.max()) if atoms_x.size else 0.0)
    return D2Law(mu1, atoms_x, atoms_p, nodes_x, nodes_p, xmax, xmax_c, mom, kappa > 0, n_ext)


def _refined_max(activation, sq, mu1, u, fr) -> float:
    """sup of x(u) on a piece: the best node, refined by a bounded scalar search."""
    from scipy.optimize import minimize_scalar

    i = int(np.argmax(fr))
    lo = u[max(i - 1, 0)]
    hi = u[min(i + 1, u.size - 1)]
    if hi <= lo:
        return float(fr[i])
    res = minimize_scalar(lambda t: -float(activation.dphi(np.array(sq * t))) ** 2 / mu1, bounds=(lo, hi),
                          method="bounded", options={"xatol": 1e-13})
    return float(max(fr[i], -res.fun))


def _sign_changes(g, u: np.ndarray, a: float, b: float):
    """Sign changes r_k of g on the nodes u (refined), the sign far left, and a bend width."""
    from scipy.optimize import brentq

    gv = g(u)
    big = np.abs(gv) > 1e-8 * np.max(np.abs(gv))
    uu, sg = u[big], np.sign(gv[big])
    roots = []
    for i in np.flatnonzero(sg[1:] != sg[:-1]):
        lo, hi = uu[i], uu[i + 1]
        try:
            roots.append(brentq(g, lo, hi, xtol=1e-10))
        except ValueError:
            roots.append(0.5 * (lo + hi))
    s_left = float(sg[0]) if sg.size else 0.0
    gaps = np.diff(np.concatenate([[a], roots, [b]]))
    w = max(min(0.5, 0.3 * float(np.min(gaps))), 1e-3) if roots else 0.5
    return roots, s_left, w


def _bend(u: np.ndarray, roots, s_left: float, w: float, a: float, b: float) -> tuple[np.ndarray, np.ndarray]:
    """A smooth sign of dx/du in closed form (so its derivative is exact).

    s(u) = s_left (-1)^K prod_k tanh((u - r_k)/w) over the K sign changes r_k,
    times tanh(|u - e|/0.5) at finite piece ends e (the contour returns to the
    real axis at kinks).  Returns s and ds/du at the nodes u.
    """
    s0 = s_left * (-1.0) ** len(roots)
    factors = [((u - r) / w, 1.0 / w, 1) for r in roots]
    # vanish linearly at finite piece ends (kinks): there the nodes x(z) leave the end point along a ray
    if abs(a) < Z_MAX:
        factors.append(((u - a) / _W_END, 1.0 / _W_END, 1))
    if abs(b) < Z_MAX:
        factors.append(((b - u) / _W_END, -1.0 / _W_END, 1))
    th = [np.tanh(x) for x, _, _ in factors]
    vals = [t**p for t, (_, _, p) in zip(th, factors)]
    ders = [p * t ** (p - 1) * (1 - t * t) * c for t, (_, c, p) in zip(th, factors)]
    s = np.full(u.shape, s0)
    ds = np.zeros(u.shape)
    for i in range(len(factors)):
        term = np.full(u.shape, s0) * ders[i]
        for j in range(len(factors)):
            if j != i:
                term = term * vals[j]
        ds = ds + term
        s = s * vals[i]
    return s, ds


def _dlogx(activation, sq, u):
    """d log x / du on the real axis (finite where phi' != 0)."""
    eps = 1e-6
    with np.errstate(all="ignore"):
        lf = np.log(np.abs(np.asarray(activation.dphi(sq * np.concatenate([u - eps, u + eps])), dtype=float)))
        n = u.size
        return 2.0 * (lf[n:] - lf[:n]) / (2 * eps)


def _log_breaks(activation, sq, a, b, step: float = 3.0, max_panels: int = 240) -> list[float]:
    """Extra panel breaks so that log x changes by at most ``step`` per panel where the
    Gaussian weight is above 1e-17 (the law of x = phi'^2 near 0 lives on many scales of log x)."""
    zmax = 8.8  # Phi(-8.8) ~ 7e-19
    lo, hi = max(a, -zmax), min(b, zmax)
    if hi <= lo:
        return []
    u = np.linspace(lo, hi, 4001)
    d = np.abs(_dlogx(activation, sq, u))
    d = np.where(np.isfinite(d), d, 0.0)
    cum = np.concatenate([[0.0], np.cumsum(0.5 * (d[1:] + d[:-1]) * np.diff(u))])
    total = cum[-1]
    if total <= step:
        return []
    n = min(int(total / step), max_panels)
    targets = np.linspace(0, total, n + 1)[1:-1]
    return list(np.interp(targets, cum, u))


def _amplitude(activation, sq, u, kappa):
    """Deformation amplitude A(u) = kappa / sqrt(1 + (u/u_s)^2) (and A'), with u_s chosen so that
    A |d log x/du| <= 1: the contour stays well inside the ladder of poles of 1/(w - x(z))
    (spacing 2 pi / |d log x/dz|) that fast-decaying tails (erf, gelu) bring close to the axis."""
    d = np.abs(_dlogx(activation, sq, u))
    d = np.where(np.isfinite(d), d, 0.0)
    need = kappa * d > 1.0
    if np.any(need):
        us = float(np.min(np.abs(u[need]) / np.sqrt((kappa * d[need]) ** 2 - 1.0)))
        us = max(us, 1e-3)
    else:
        return np.full(u.shape, kappa), np.zeros(u.shape)
    r = u / us
    amp = kappa / np.sqrt(1.0 + r * r)
    damp = -kappa * r / us / (1.0 + r * r) ** 1.5
    return amp, damp
