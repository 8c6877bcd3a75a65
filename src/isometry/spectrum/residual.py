"""The law of the eigenvalues of J J^T for residual networks: :class:`ResidualSpectrum`.

The network is x^{l+1} = x^l + a phi(W^l x^l + b^l) (Tarnowski et al. 2019; mean field in
:mod:`isometry.residual`), J = prod_l F_l with F_l = I + X_l, X_l = a D^l W^l.

**One block.** X = a D W is R-diagonal (W Haar orthogonal, and asymptotically for Gaussian
W), so T = X + 1 has the singular values of X + u for a Haar unitary u free from X, and by
Haagerup & Larsen (2000, Prop. 3.5) the symmetrised law of the singular values of I + X is

    sigma = nu (+) beta,     nu = sym. law of |X|,     beta = (delta_{-1} + delta_{+1}) / 2

(free additive convolution). |X|^2 has the law of x = c x^ with c = a^2 sigma_w2 mu_1 and
x^ = D^2 / mu_1 (the :func:`~isometry.spectrum.d2.d2_law`) for orthogonal W, and
x^ (x) W^T W / sigma_w2 (free product) for other weight laws. For a symmetric law mu with
mu~ = law of s^2, write g = G_mu(z), m = M_{mu~}(z^2); then z g = 1 + m and
g^2 = m (1 + m) S_{mu~}(m), R_mu(g) = m / g. Applied to sigma, nu and beta (R-transforms add)
this gives, with omega the subordination variable of nu (G_nu(omega) = g) and
p = M_x(omega^2):

    g = (1 + p) / omega,     b (1 + b) = g^2  (beta's part),     m = p + b,

and the block's law of lambda = s^2 has M-inverse zeta = (1 + m)^2 / g^2, i.e.
S_block(m) = g^2 / (m (1 + m)). Everything is explicit in omega except the root b of the
quadratic: b = (s - 1)/2 with s = sqrt(1 + 4 g^2) on the principal branch for Re omega > 0
(the upper edge, g -> 0+, s -> 1) and the other branch for Re omega < 0 (the lower edge of
the law sits at negative real omega, where m < -1 needs s < 0). Along the physical curve
omega runs through the upper half plane from the positive to the negative real axis and
crosses the imaginary axis exactly where the principal branch would jump.

**The product.** The blocks are asymptotically free, so S_J(m) = prod_l S_l(m), and with
w_l = M_l^{-1}(m) = zeta_l the point of the spectrum with M_J = m is

    z = (m / (1 + m))^{L-1} prod_l w_l = m^{L-1} (1 + m)^{L+1} / prod_l g_l^2.

One block (the reference) carries the curve's variable y = omega_r / sqrt(c_r); every other
block solves b_l (1 + b_l) = g_l^2 with b_l = m - p_l(omega_l) for its omega_l by Newton's
method, started from its neighbour's root (blocks ordered by q_h, so neighbours are close),
with a homotopy through mixtures of the two laws as a fallback. The bands of t = log lambda
are traced by :mod:`isometry.spectrum.solver` exactly as for plain networks.

**Depth.** Blocks are grouped: positively homogeneous units have one law for every block;
otherwise a depth of at most ``_EXACT_BLOCKS`` keeps one group per block, and deeper
networks use Gauss quadrature over the block index (the discrete uniform measure on
0 .. L-1, exact for polynomials of degree 2G - 1 in l) with q_h interpolated between blocks,
so the cost does not grow with L. E[lambda] and Var[lambda] are always the exact sums over
blocks; higher moments come from exact S-transform series (per block up to
``_EXACT_SERIES_BLOCKS`` blocks, by the same quadrature beyond).

**Large depth.** For small a, log S_l(m) = -c_l (1 + 2 m) + O(a^4) (the block's free
cumulants are kappa_1 = c_l, kappa_2 = 2 c_l + O(a^4), the rest O(a^4)), so at fixed
a^2 L the normalised law has S(m) -> exp(-sigma0^2 m) with sigma0^2 = 2 sum_l c_l: the
smooth universal law of :func:`isometry.universal_spectrum` (``kind="smooth"``), for every
activation and both weight laws (Tarnowski et al. 2019). :attr:`ResidualSpectrum.limit`
is that law at this network's variance.

References:
    U. Haagerup, F. Larsen, "Brown's spectral distribution measure for R-diagonal elements in
    finite von Neumann algebras", J. Funct. Anal. 176 (2000) 331-367.
    W. Tarnowski, P. Warchol, S. Jastrzebski, J. Tabor, M. A. Nowak, "Dynamical isometry is
    achieved in residual networks in a universal way for any activation function", AISTATS 2019.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from ..activations import Activation, get_activation
from ..meanfield import mu as _mu
from ..residual import (
    ResidualMeanField,
    _block_variances,
    _branch_scale,
    _depth,
    _variances,
    residual_mean_field,
)
from . import series
from .core import BandSpectrum, UniversalSpectrum, _Engine, universal_spectrum
from .d2 import D2Law, d2_law
from .s_transforms import WeightLaw, weight_law

__all__ = ["ResidualSpectrum", "residual_spectrum"]

_EXACT_BLOCKS = 8  # up to this depth every block is its own group
_GROUPS = 8  # quadrature nodes over depth beyond
_EXACT_SERIES_BLOCKS = 2048  # exact per-block S-series up to this depth (quadrature with 64 nodes beyond)
_SERIES_GROUPS = 64


# ------------------------------------------------------------------------ numerics helpers
def _lower_log(v: np.ndarray) -> np.ndarray:
    """log v with arg v in [-3 pi/2, pi/2]: continuous on the closed lower half plane, -i pi on the
    negative real axis (the boundary values of M, 1 + M and G from below)."""
    ang = np.angle(v)
    ang = np.where(ang > 0.5 * np.pi, ang - 2.0 * np.pi, ang)
    with np.errstate(divide="ignore"):
        return np.log(np.abs(v)) + 1j * ang


def _m_conj(law: D2Law, u: np.ndarray):
    """(M, M', 1 + M) of the normalised D^2 law at any complex u (conjugate symmetry below the axis)."""
    u = np.asarray(u, dtype=complex)
    flip = u.imag < 0
    uu = np.where(flip, np.conj(u), u)
    m, dm, opm = law.m_and_dm(uu)
    return (np.where(flip, np.conj(m), m), np.where(flip, np.conj(dm), dm), np.where(flip, np.conj(opm), opm))


# ------------------------------------------------------------------------ one group of blocks
class _Group:
    """Blocks with one law of x = |X|^2 = c x^: its M-transform as a function of omega.

    ``p(omega)`` returns (p, dp/domega, 1 + p) with p = M_x(omega^2). Orthogonal weights:
    x^ is the D^2 law. Other weight laws: x^ is D^2 (x) W^T W, whose M at U solves
    U = w / S_W(M_{D^2}(w)) for w (Newton, then a radial continuation in U when needed).
    """

    def __init__(self, law: D2Law, c: float, n: float, wl: WeightLaw, q: float):
        self.law, self.c, self.n, self.wl, self.q = law, float(c), float(n), wl, float(q)
        self.orthogonal = wl.name == "orthogonal"
        self.u_edge = float(law.x_max) if self.orthogonal else self._product_edge()

    # -- the free product with the weight law
    def _u_of_w(self, w):
        m, dm, opm = _m_conj(self.law, w)
        ls = self.wl.log_s(m, opm)
        e = np.exp(-ls)
        u = w * e
        du = e * (1.0 - w * self.wl.dlog_s(m, opm) * dm)
        return u, du, m, dm, opm

    def _product_edge(self) -> float:
        """Top of the support of x^ (x) W^T W: the minimum of U(w) over real w above the D^2 law."""
        from scipy.optimize import minimize_scalar

        x0 = float(self.law.x_max)
        grid = x0 + x0 * np.exp(np.linspace(-20, 8, 200))
        u = self._u_of_w(grid + 0j)[0].real
        i = int(np.argmin(u))
        lo, hi = grid[max(i - 1, 0)], grid[min(i + 1, grid.size - 1)]
        res = minimize_scalar(lambda w: float(self._u_of_w(np.array([w + 0j]))[0].real[0]), bounds=(lo, hi),
                              method="bounded", options={"xatol": 1e-12 * hi})
        self.w_edge = float(res.x)
        return float(min(res.fun, u[i]))

    def _solve_w(self, U: np.ndarray, w0: np.ndarray | None = None) -> np.ndarray:
        U = np.asarray(U, complex)
        w = (U - 1.0) if w0 is None else np.asarray(w0, complex).copy()
        ok = self._newton_w(U, w)
        bad = np.flatnonzero(~ok & np.isfinite(U))
        if bad.size:  # radial continuation from far out, where w ~ U - 1
            Ub = U[bad]
            wb = 64.0 * Ub - 1.0
            for rho in np.geomspace(64.0, 1.0, 25):
                self._newton_w(rho * Ub, wb)
            okb = self._newton_w(Ub, wb)
            w[bad] = np.where(okb, wb, np.nan)
        w[~np.isfinite(U)] = np.nan
        return w

    def _newton_w(self, U, w) -> np.ndarray:
        """Newton for U(w) = U in place; returns convergence flags."""
        done = ~np.isfinite(U)
        with np.errstate(all="ignore"):
            for _ in range(30):
                act = ~done
                if not np.any(act):
                    break
                u, du, *_ = self._u_of_w(w[act])
                r = u - U[act]
                step = r / du
                step = np.where(np.isfinite(step), step, 0.0)
                w[act] = w[act] - step
                done[act] = np.abs(step) <= 1e-14 * (1.0 + np.abs(w[act]))
        # the physical root lies on the side of U (w and U in the same half plane)
        return done & np.isfinite(w) & ((w.imag * np.sign(U.imag)) >= -1e-10 * (1.0 + np.abs(w)))

    def p(self, om: np.ndarray, w0: np.ndarray | None = None):
        """(p, dp/domega, 1 + p, w) at omega (w: the D^2-law variable, for the next solve's start)."""
        om = np.asarray(om, complex)
        U = om * om / self.c
        if self.orthogonal:
            p, dp, opp = _m_conj(self.law, U)
            return p, dp * 2.0 * om / self.c, opp, U
        w = self._solve_w(U, w0)
        u, du, p, dm, opp = self._u_of_w(w)
        return p, dm / du * 2.0 * om / self.c, opp, w


# ------------------------------------------------------------------------ the curve's parametrisation
class _ResidualCurve:
    """Solver parametrisation (see :mod:`isometry.spectrum.solver`) of the residual law.

    y = omega_r / sqrt(c_r); eval(y) -> (log z - log E[lambda], d/dy, M).
    """

    def __init__(self, groups: list[_Group], ref: int, depth: float):
        self.groups, self.ref, self.L = groups, int(ref), float(depth)
        self.scale = math.sqrt(groups[ref].c)
        self.log_mean = float(sum(g.n * math.log1p(g.c) for g in groups))
        self.direction = 1j

    # -- the reference block: explicit in omega
    def _ref(self, om):
        g_r = self.groups[self.ref]
        p, dp, opp, w = g_r.p(om)
        g = opp / om
        dg = dp / om - opp / (om * om)
        s = np.sqrt(1.0 + 4.0 * g * g)
        s = np.where(om.real < 0, -s, s)
        b = 0.5 * (s - 1.0)
        return p + b, opp + b, dp + 2.0 * g / s * dg, g, dg, w

    @staticmethod
    def _resid(m, opm, p, dp, opp, om):
        """R = (m - p)(1 + m - p) omega^2 - (1 + p)^2 and dR/domega."""
        b, opb = m - p, opm - p
        r = b * opb * om * om - opp * opp
        dr = -dp * (opb + b) * om * om + 2.0 * om * b * opb - 2.0 * opp * dp
        return r, dr

    def _solve(self, grp: _Group, m, opm, om0, w0, mix: tuple[_Group, float] | None = None):
        """Newton for block ``grp``'s omega at the common m (optionally for the mixture (1-t) other + t grp).

        Without a mixture, omega and the D^2-law variable w are solved together (2 x 2 Newton on
        U(w) = omega^2 / c and R = 0); with one, each law's p comes from its own inner solve.
        """
        om = om0.copy()
        w = (om * om / grp.c) if (w0 is None or grp.orthogonal) else np.asarray(w0, complex).copy()
        done = np.zeros(om.shape, bool)
        with np.errstate(all="ignore"):
            for it in range(40):
                act = np.flatnonzero(~done)
                if not act.size:
                    break
                oa, wa, ma, opma = om[act], w[act], m[act], opm[act]
                if mix is None:
                    if grp.orthogonal:
                        u, du = wa, np.ones(wa.shape)
                        p, dpw, opp = _m_conj(grp.law, wa)
                    else:
                        u, du, p, dpw, opp = grp._u_of_w(wa)
                    e1 = u - oa * oa / grp.c
                    b, opb = ma - p, opma - p
                    e2 = b * opb * oa * oa - opp * opp
                    j11, j12 = du, -2.0 * oa / grp.c  # d e1 / dw, d e1 / d omega
                    j21 = (-(1.0 + 2.0 * b) * oa * oa - 2.0 * opp) * dpw
                    j22 = 2.0 * oa * b * opb
                    det = j11 * j22 - j12 * j21
                    dw = (e1 * j22 - j12 * e2) / det
                    dom = (j11 * e2 - j21 * e1) / det
                else:
                    other, t = mix
                    p, dp, opp, wn = grp.p(oa, wa)
                    p2, dp2, opp2, _ = other.p(oa)
                    p, dp, opp = t * p + (1 - t) * p2, t * dp + (1 - t) * dp2, t * opp + (1 - t) * opp2
                    r, dr = self._resid(ma, opma, p, dp, opp, oa)
                    dom = r / dr
                    dw = wa - wn
                dom = np.where(np.isfinite(dom), dom, 0.0)
                dw = np.where(np.isfinite(dw), dw, 0.0)
                lim = 0.5 * np.abs(oa)  # damping: never move omega by more than half its size
                big = np.abs(dom) > lim
                scale = np.where(big, lim / np.where(big, np.abs(dom), 1.0), 1.0)
                om[act] = oa - dom * scale
                w[act] = wa - dw * scale
                # quadratic convergence: a step of 1e-9 leaves an error of order 1e-18 after it
                conv = (np.abs(dom) <= 1e-9 * (1.0 + np.abs(oa))) & (np.abs(dw) <= 1e-9 * (1.0 + np.abs(wa)))
                done[act] = conv
                if it >= 12:  # give up on points that are not converging (no root near this start)
                    stuck = ~conv & (np.abs(dom) > 1e-3 * (1.0 + np.abs(oa)))
                    done[act[stuck]] = True
                    om[act[stuck]] = np.nan
        if not grp.orthogonal:
            w = np.where(np.isfinite(om), w, np.nan)
        # converged roots below the axis are kept: they belong to points off the physical curve,
        # which the solver rejects through Im M > 0
        return om, w, np.isfinite(om)

    def _block(self, grp: _Group, m, opm, om0, w0, prev: _Group, om_prev):
        om, w, ok = self._solve(grp, m, opm, om0, w0)
        bad = np.flatnonzero(~ok & np.isfinite(m) & np.isfinite(om_prev))
        if bad.size:  # homotopy from the neighbour's law (whose root is om_prev) through mixtures
            ob = om_prev[bad].copy()
            wb = None if w0 is None else w0[bad]
            good = np.ones(bad.size, bool)
            for t in np.linspace(0.0, 1.0, 17)[1:]:
                ob, wb, okt = self._solve(grp, m[bad], opm[bad], ob, wb, mix=(prev, t))
                good &= okt
            ob, wb, okf = self._solve(grp, m[bad], opm[bad], ob, wb)
            om[bad] = np.where(good & okf, ob, np.nan)
        p, dp, opp, w = grp.p(om, w)
        return om, p, dp, opp, w

    def eval(self, y):
        y = np.asarray(y, dtype=complex)
        shape = y.shape
        y = y.ravel()
        L = self.L
        with np.errstate(all="ignore"):
            om_r = y * self.scale
            m, opm, dm_dom, g_r, dg_r, w_r = self._ref(om_r)
            dm = dm_dom * self.scale  # dm/dy
            gr = self.groups[self.ref]
            lz = (L + 1) * _lower_log(opm) + (L - 1) * _lower_log(m) - 2.0 * gr.n * _lower_log(g_r)
            dlz = ((L + 1) / opm + (L - 1) / m) * dm - 2.0 * gr.n * dg_r / g_r * self.scale
            for direction in (1, -1):  # walk outwards from the reference, each block from its neighbour
                om_prev, w_prev, prev = om_r, w_r, gr
                om_pp, pp = None, None
                k = self.ref + direction
                while 0 <= k < len(self.groups):
                    grp = self.groups[k]
                    if om_pp is None:
                        om0 = om_prev * math.sqrt((1.0 + grp.c) / (1.0 + prev.c))
                    else:  # the roots move smoothly with q: extrapolate from the last two blocks
                        om0 = om_prev + (om_prev - om_pp) * ((grp.q - prev.q) / (prev.q - pp.q))
                        om0 = np.where(np.isfinite(om0), om0, om_prev)
                    w0 = None if grp.orthogonal else w_prev
                    om, p, dp, opp, w = self._block(grp, m, opm, om0, w0, prev, om_prev)
                    g = opp / om
                    dg = dp / om - opp / (om * om)
                    b = m - p
                    dm_dom_k = dp + 2.0 * g / (1.0 + 2.0 * b) * dg  # d m / d omega along block k
                    dom = dm / dm_dom_k
                    lz = lz - 2.0 * grp.n * _lower_log(g)
                    dlz = dlz - 2.0 * grp.n * dg / g * dom
                    om_pp, pp = om_prev, prev
                    om_prev, w_prev, prev = om, w, grp
                    k += direction
            lz = lz - self.log_mean
        return lz.reshape(shape), dlz.reshape(shape), m.reshape(shape)

    def physical(self, y, m) -> np.ndarray:
        # real omega is outside the support (above it, in a gap, or below it for omega < 0) except at the band
        # edges. The edges are saddle points of log z, where the real axis (also a curve of real log z) crosses
        # the band's curve: a trace that comes within 1e-7 of the axis has met a lower edge (to ~1e-14 in
        # log lambda: Im omega grows like the square root of the distance) and must not turn onto the axis
        y = np.asarray(y)
        m = np.asarray(m)
        on_axis = np.abs(y.imag) <= 1e-7 * (1.0 + np.abs(y))
        return (y.imag > 0) & ~on_axis & (m.imag <= 1e-9 * (1.0 + np.abs(m))) & np.isfinite(m)

    def real_intervals(self):
        g = self.groups[self.ref]
        top = math.sqrt(g.c * g.u_edge) / self.scale
        out = [(top, np.inf)]
        if g.orthogonal and not g.law.has_continuous:  # gaps between atoms of |X|: bands of the block
            a = np.sqrt(np.unique(g.law.atoms_x[g.law.atoms_x >= 0]))
            for lo, hi in zip(a[:-1], a[1:]):
                out.append((float(lo), float(hi)))
        return out

    def grid(self, lo, hi, n=250):
        if np.isinf(hi):
            return (lo + max(lo, 1e-300) * np.exp(np.linspace(-28, 14, n))) + 0j
        u = np.linspace(-28, 28, n)
        x = lo + (hi - lo) / (1.0 + np.exp(-u))
        return x[(x > lo) & (x < hi)] + 0j

    def yscale(self, y) -> float:
        return 1.0 + abs(y)


# ------------------------------------------------------------------------ exact series
def _tmat(b: np.ndarray) -> np.ndarray:
    """(B, K, K) with T[:, j, k] = b[:, k - j] for k >= j (so a @ T is the truncated product a b)."""
    B, K = b.shape
    j = np.arange(K)[:, None]
    k = np.arange(K)[None, :]
    idx = np.clip(k - j, 0, K - 1)
    return np.where((k >= j)[None], b[:, idx], 0.0)


def _vmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.einsum("bj,bjk->bk", a, _tmat(b))


def _vrecip(a: np.ndarray) -> np.ndarray:
    """1 / a(z) for a_0 != 0, rows of (B, K)."""
    B, K = a.shape
    out = np.zeros((B, K))
    out[:, 0] = 1.0 / a[:, 0]
    for k in range(1, K):
        out[:, k] = -np.einsum("bj,bj->b", a[:, 1:k + 1], out[:, k - 1::-1][:, :k]) / a[:, 0]
    return out


def _vinverse(a: np.ndarray) -> np.ndarray:
    """Compositional inverse of rows a = a_1 z + a_2 z^2 + ... by Lagrange inversion:
    [z^n] b = (1/n) [w^{n-1}] (w / a(w))^n."""
    B, K = a.shape
    h = _vrecip(a[:, 1:])  # w / a(w), K - 1 terms
    h = np.concatenate([h, np.zeros((B, 1))], axis=1)
    out = np.zeros((B, K))
    pw = np.zeros((B, K))
    pw[:, 0] = 1.0
    T = _tmat(h)
    for n in range(1, K):
        pw = np.einsum("bj,bjk->bk", pw, T)
        out[:, n] = pw[:, n - 1] / n
    return out


def _vlog(a: np.ndarray) -> np.ndarray:
    """log of rows with a_0 > 0 (b' = a'/a)."""
    B, K = a.shape
    b = np.zeros((B, K))
    b[:, 0] = np.log(a[:, 0])
    for k in range(1, K):
        s = k * a[:, k] - sum(j * b[:, j] * a[:, k - j] for j in range(1, k))
        b[:, k] = s / (k * a[:, 0])
    return b


def _log_s_blocks(xhat_moments: np.ndarray, c: np.ndarray, wl: WeightLaw, K: int) -> np.ndarray:
    """Taylor series (K terms) of log S of each block's law of |I + X|^2, rows over blocks.

    From the moments of x^ (rows, E[x^^k], k = 0..K+1): S_x(p) = S_x^(p) S_W(p) / c,
    r(p) = p (1 + p) S_x(p) = g^2, p(r) its inverse, m(r) = p(r) + (sqrt(1 + 4 r) - 1)/2,
    r(m) the inverse, S(m) = r(m) / (m (1 + m)).
    """
    B = xhat_moments.shape[0]
    n = K + 2
    psi = xhat_moments[:, :n].copy()
    psi[:, 0] = 0.0
    chi = _vinverse(psi)  # chi(z) = z S(z) / (1 + z)
    s_x = chi[:, 1:n].copy()
    s_x[:, 1:] += chi[:, 1:n - 1]  # S = chi (1 + z) / z
    s_w = np.asarray(wl.series(n - 1), float)
    s_x = _vmul(s_x, np.broadcast_to(s_w, s_x.shape).copy()) / c[:, None]
    # r(p) = p (1 + p) S_x(p)
    one_p = np.zeros((B, n - 1))
    one_p[:, 0] = 1.0
    one_p[:, 1] = 1.0
    t = _vmul(s_x, one_p)
    r = np.zeros((B, n))
    r[:, 1:] = t
    p_of_r = _vinverse(r)
    cat = np.zeros(n)  # (sqrt(1 + 4r) - 1)/2 = sum_k (-1)^(k-1) C_{k-1} r^k
    for k in range(1, n):
        cat[k] = (-1) ** (k - 1) * math.comb(2 * (k - 1), k - 1) / k
    m_of_r = p_of_r + cat
    r_of_m = _vinverse(m_of_r)
    # S = (r/m) / (1 + m)
    r_over_m = r_of_m[:, 1:n]
    geo = np.broadcast_to((-1.0) ** np.arange(n - 1), r_over_m.shape).copy()
    s = _vmul(r_over_m, geo)[:, :K]
    return _vlog(s)


# ------------------------------------------------------------------------ the spectrum object
@dataclass(frozen=True, eq=False)
class ResidualSpectrum(BandSpectrum):
    """Law of the eigenvalues lambda of J J^T of a residual network x^{l+1} = x^l + a phi(W^l x^l + b^l).

    Made by :func:`residual_spectrum`. Fields: the network (``activation``, ``depth`` L,
    ``branch_scale`` a, ``weights``, ``sigma_w2``, ``sigma_b2``, ``q0``) and its
    ``mean_field`` (:class:`isometry.residual.ResidualMeanField`). E[lambda] =
    prod_l (1 + c_l), Var[lambda] = E[lambda]^2 sum_l v_l (exact sums over blocks;
    module :mod:`isometry.residual`). The scipy.stats verbs are those of
    :class:`~isometry.spectrum.base.Spectrum`.

    The law is that of the bulk. Units with E[phi(h)] != 0 (ReLU, GELU, ...) give the signal
    a common component that grows along the depth, and J J^T then has one eigenvalue above
    the bulk (measured: ReLU, a = 0.5, L = 8: about 21-26 against a bulk edge at 16.7);
    one eigenvalue in N does not change the law, but it does change sample means and
    variances at finite width by O(lambda_out / N) and O(lambda_out^2 / N).
    :attr:`signal_gain` is |J x^0|^2 / |x^0|^2 for positively homogeneous units without
    biases (x^L = J x^0 there), a lower bound of that eigenvalue.
    """

    activation: str
    depth: int
    branch_scale: float
    weights: str
    sigma_w2: float
    sigma_b2: float
    q0: float
    mean_field: ResidualMeanField = field(repr=False)
    _engine: _Engine = field(repr=False, compare=False, kw_only=True)

    @property
    def _bands(self):
        try:
            return BandSpectrum._bands.fget(self)
        except ValueError as exc:  # the base class's hint speaks of q*; here the knobs are a, L and q0
            raise ValueError(str(exc).replace("try a smaller q_star", "try a smaller branch_scale or q0")) from None

    @property
    def signal_gain(self) -> float | None:
        """|J x^0|^2 / |x^0|^2 = Q^L / q0 for positively homogeneous units with sigma_b2 = 0 (else None)."""
        if self.mean_field.homogeneous and self.sigma_b2 == 0.0:
            return self.mean_field.signal_gain
        return None

    @property
    def limit(self) -> UniversalSpectrum:
        """The large-depth (a^2 L fixed) limit of the normalised law at this variance: the smooth
        universal law S(m) = exp(-sigma0^2 m), sigma0^2 = Var[lambda] / E[lambda]^2 (module docstring)."""
        return universal_spectrum("smooth", max(self._engine.var_normalised, 1e-300))

    def _describe(self) -> dict[str, Any]:
        return {"activation": self.activation, "depth": self.depth, "branch_scale": self.branch_scale,
                "weights": self.weights, "sigma_w2": self.sigma_w2, "sigma_b2": self.sigma_b2, "q0": self.q0,
                "variance_normalised": self._engine.var_normalised}

    def _title(self) -> str:
        return (f"residual {self.activation}, L={self.depth:g}, a={self.branch_scale:.3g}, {self.weights} weights"
                + (f", q0={self.q0:.3g}" if self.q0 != 1.0 else ""))


def _discrete_gauss(L: int, G: int) -> tuple[np.ndarray, np.ndarray]:
    """Nodes and weights of the G-point Gauss rule for the uniform measure on {0, ..., L-1}
    (discrete Chebyshev polynomials; Golub-Welsch)."""
    n = np.arange(1, G)
    beta = n * n * (L * L - n * n) / (4.0 * (4.0 * n * n - 1.0))
    J = np.diag(np.full(G, 0.5 * (L - 1))) + np.diag(np.sqrt(beta), 1) + np.diag(np.sqrt(beta), -1)
    x, v = np.linalg.eigh(J)
    return x, L * v[0] ** 2


def _blocks(mf: ResidualMeanField, act: Activation, G: int, L_exact: int) -> tuple[np.ndarray, np.ndarray]:
    """(q_h, multiplicity) of the groups: one per block up to ``L_exact`` blocks, one for homogeneous
    units, else a G-node quadrature over the block index with log q_h interpolated."""
    L = mf.depth
    if act.homogeneous:
        return np.array([mf.q_h[0]]), np.array([float(L)])
    if L <= L_exact:
        return mf.q_h.copy(), np.ones(L)
    from scipy.interpolate import PchipInterpolator

    x, w = _discrete_gauss(L, G)
    interp = PchipInterpolator(np.arange(L), np.log(mf.q_h))
    return np.exp(interp(x)), w


def residual_spectrum(activation, depth: int, *, branch_scale: float, sigma_w2: float = 1.0, sigma_b2: float = 0.0,
                      q0: float = 1.0, weights: "str | WeightLaw | Callable" = "orthogonal") -> ResidualSpectrum:
    """The law of the eigenvalues of J J^T for the residual network x^{l+1} = x^l + a phi(W^l x^l + b^l).

    J = prod_l (I + a D^l W^l) with D^l = diag(phi'(h^l)), h^l ~ N(0, q_h^l) from the mean
    field (:func:`isometry.residual_mean_field`); x^0 ~ N(0, q0). The blocks are
    asymptotically free and each is a shifted R-diagonal element, whose singular values
    follow from a free additive convolution with the symmetric Bernoulli law
    (Haagerup & Larsen 2000); the method is in :mod:`isometry.spectrum.residual`. The law
    describes the bulk (see :class:`ResidualSpectrum` for the outlier of units with
    E[phi(h)] != 0).

    Only this form of block is covered: for h^{l+1} = h^l + a (W^l phi(h^l) + b^l) the
    factors are not free (D^l changes slowly along the depth) and the free product of
    per-block laws underestimates the variance (measured at a^2 L = 2, width 500: by 14%-19% for
    tanh and 14%-22% for ReLU; :mod:`isometry.residual`).

    Args:
        activation: a registry name, an :class:`isometry.Activation` or a callable phi.
        depth: L in [1, 1e5], the number of residual blocks.
        branch_scale: a >= 0 (a = 0: J = I, a point mass at 1).
        sigma_w2, sigma_b2: weight and bias variances (W_ij has variance sigma_w2 / N).
        q0: the variance of the input's coordinates.
        weights: "orthogonal", "gaussian", a :class:`WeightLaw` or an S-transform callable.

    Returns:
        a :class:`ResidualSpectrum` (scipy.stats verbs, atoms, log-scale variants).

    Raises:
        ValueError: for depth 1 with a block law at the boundary of having an atom
            (linear units, or P(phi'(h) = 0) >= 1/2 as for ReLU), whose density is singular
            inside the support; use depth >= 2.

    Example:
        >>> sp = residual_spectrum("tanh", 16, branch_scale=0.25)
        >>> round(sp.mean(), 6) == round(float(np.exp(sp.mean_field.log_mean())), 6)
        True
    """
    act = get_activation(activation)
    L = _depth(depth)
    a = _branch_scale(branch_scale)
    sw, sb, q_in = _variances(sigma_w2, sigma_b2, q0)
    wl = weight_law(weights)
    mf = residual_mean_field(act, L, branch_scale=a, sigma_w2=sw, sigma_b2=sb, q0=q_in)
    c_all = mf.branch_gain
    log_mean = mf.log_mean()
    var_n = float(np.sum(_block_variances(c_all, mf.mu1, mf.mu2, wl.s1)))

    def s_series(K: int) -> np.ndarray:
        if a == 0.0:
            out = np.zeros(K)
            out[0] = 1.0
            return out
        if act.homogeneous:
            qs, ws = mf.q_h[:1], np.array([float(L)])
        elif L <= _EXACT_SERIES_BLOCKS:
            qs, ws = mf.q_h, np.ones(L)
        else:
            qs, ws = _blocks(mf, act, _SERIES_GROUPS, 0)
        mu1 = np.asarray(_mu(act, qs, 1), float).reshape(-1)
        mom = np.stack([np.ones(qs.size)] + [np.asarray(_mu(act, qs, k), float).reshape(-1) / mu1**k
                                             for k in range(1, K + 3)], axis=1)
        c = a * a * sw * mu1
        logs = _log_s_blocks(mom, c, wl, K)
        total = ws @ logs
        total[0] = 0.0  # normalised to mean 1: sum_l (log S_l(0) + log(1 + c_l)) = 0
        return series.exp(total)

    if a == 0.0:
        engine = _Engine(None, 0.0, ((0.0, 1.0),), 0.0, s_series)
        return ResidualSpectrum(activation=act.name, depth=L, branch_scale=a, weights=wl.name, sigma_w2=sw,
                                sigma_b2=sb, q0=q_in, mean_field=mf, _engine=engine)

    qs, ns = _blocks(mf, act, _GROUPS, _EXACT_BLOCKS)
    groups = []
    for q, n in zip(qs, ns):
        law = d2_law(act, float(q))
        groups.append(_Group(law, a * a * sw * law.mu1, float(n), wl, float(q)))
    if L == 1:
        law = groups[0].law
        if law.zero_mass >= 0.5 - 1e-12 or (not law.has_continuous and law.atoms_x.size == 1):
            raise ValueError(
                f"depth=1 is not supported for {act.name} at q_h={qs[0]:.4g}: the law of |I + a D W|^2 has a "
                "singular density inside its support (P(phi'(h) = 0) >= 1/2, or phi'^2 constant); use depth >= 2")
    order = np.argsort(qs, kind="stable")
    groups = [groups[i] for i in order]
    if any(g.law.zero_mass > 0.5 for g in groups):
        # a block with P(phi'(h) = 0) = p0 > 1/2 has an atom of mass 2 p0 - 1 at lambda = 1 (beta's atoms +-1 meet
        # nu's atom at 0); free products keep an atom at 1 of mass sum_l (2 p0_l - 1) - (L - 1) when positive, with
        # bands on both sides of it, which the tracer does not resolve
        mass = float(sum(g.n * max(2.0 * g.law.zero_mass - 1.0, 0.0) for g in groups)) - (L - 1)
        if mass > -1e-9:
            raise ValueError(
                f"{act.name} at q_h in [{float(np.min(qs)):.4g}, {float(np.max(qs)):.4g}] has P(phi'(h) = 0) > 1/2 in "
                f"its blocks and J J^T an atom of mass {max(mass, 0.0):.3g} at lambda = 1 (or is at its boundary), "
                "which is not supported; use a smaller q0 or a deeper network")
    ref = len(groups) // 2
    curve = _ResidualCurve(groups, ref, float(L))
    engine = _Engine(curve, log_mean, (), var_n, s_series)
    return ResidualSpectrum(activation=act.name, depth=L, branch_scale=a, weights=wl.name, sigma_w2=sw, sigma_b2=sb,
                            q0=q_in, mean_field=mf, _engine=engine)
