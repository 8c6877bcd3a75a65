"""``Spectrum``: the law of the eigenvalues lambda >= 0 of J J^T, with the verbs of ``scipy.stats``.

A spectrum may have atoms (a mass at lambda = 0 for ReLU-like units, a top atom for
hard tanh with orthogonal weights) beside a continuous part, and at large depth its
values span far more than a double's range (chi^L, or a law whose mass sits below
1e-308). A law is therefore described to this class through a few private hooks on
the scale t = log lambda, where nothing overflows:

=========================  ===========================================================
hook                       returns
=========================  ===========================================================
``_atoms_log()``           the atoms as ``(t, mass)``; the atom at lambda = 0 is ``t = -inf``
``_support_log()``         ``(t_lo, t_hi)``: the log of the continuous part's support (``t_lo`` may be -inf)
``_pdf_log(t)``            the density of t = log lambda, continuous part (t finite)
``_cdf_log(t)``            P(log lambda <= t), atoms included (t finite)
=========================  ===========================================================

and, optionally (generic versions are provided):

* ``_log_moment(order)``: log E[lambda^order] (default: quadrature of the quantile function);
* ``_log_mean()``, ``_log_var()``: log E[lambda], log Var[lambda] (default: from the moments);
* ``_sf_log(t)``: P(log lambda > t) (default 1 - cdf);
* ``_ppf_log(p)``: the log-quantile (default: safeguarded Newton on the cdf, started from
  ``_quantile_table()``, a bracketing table of (t, cdf) that a subclass may supply);
* ``_continuous_mass()``: mass of the continuous part (default 1 - atoms);
* ``_describe()``: the law's parameters (a dict, for ``to_dict`` and plot titles).

The public methods (``pdf``, ``logpdf``, ``cdf``, ``sf``, ``ppf``, ``moment``, ``mean``,
``var``, ``std``, ``median``, ``interval``, ``support``, ``rvs``) validate their input,
call the hooks, and raise ``ValueError`` naming the log variant where a value does not
fit in a double. The views :attr:`Spectrum.log_eigenvalues` (the law of t = log lambda)
and :attr:`Spectrum.singular_values` (the law of s = sqrt(lambda)) speak the same verbs.
"""

from __future__ import annotations

import math
from functools import cached_property
from numbers import Integral
from typing import Any

import numpy as np
from numpy.polynomial.legendre import leggauss

from .._checks import check_fits, check_int, check_probability, real_array

__all__ = ["Spectrum", "LogEigenvalues", "SingularValues"]

_LOG_MAX = math.log(np.finfo(float).max)  # 709.78
_LOG_TINY = math.log(np.nextafter(0.0, 1.0))  # -744.44: log of the smallest positive double
_DEFAULT_QUANTILES = (0.01, 0.1, 0.5, 0.9, 0.99)


# ------------------------------------------------------------------------ input checks
def _real_array(x, name: str) -> np.ndarray:
    """``x`` as a float64 array; booleans, complex numbers and non-numbers raise ``TypeError``, NaN ``ValueError``."""
    arr = real_array(name, x)
    if np.any(np.isnan(arr)):
        raise ValueError(f"{name} must not be NaN")
    return arr


def _probabilities(q, name: str = "q") -> np.ndarray:
    q = _real_array(q, name)
    if np.any((q < 0) | (q > 1)):
        bad = q[(q < 0) | (q > 1)].ravel()[0]
        raise ValueError(f"{name} must lie in [0, 1], got {bad!r}")
    return q


def _order(order) -> int:
    return check_int("order", order, 1, hi=20, integral_float=True)


def _confidence(confidence) -> float:
    return check_probability("confidence", confidence)


def _generator(random_state):
    """A NumPy source of uniforms from ``random_state`` (None, an int, a Generator or a RandomState)."""
    if isinstance(random_state, np.random.RandomState):
        return random_state
    if isinstance(random_state, (bool, np.bool_)):
        raise TypeError("random_state must be None, an int, a numpy Generator or RandomState, got a bool")
    try:
        return np.random.default_rng(random_state)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"random_state must be None, an int, a numpy Generator or RandomState ({exc})") from None


# Peak bytes per value of an evaluation of the hooks: the solver's grids for one point of the law
# (measured with tracemalloc: ~250 doubles per point); values are evaluated in chunks of _CHUNK.
_CHUNK = 4096
_BYTES_PER_SAMPLE = 3 * 8  # the uniforms, their log-quantiles and the samples


def _shape(size) -> tuple[int, ...]:
    """``size`` of ``rvs`` (None, a non-negative integer or a tuple of them) as a shape."""
    bad = f"size must be None, a non-negative integer or a tuple of them, got {size!r}"
    if isinstance(size, (bool, np.bool_)):
        raise TypeError(bad)
    if isinstance(size, (Integral, np.integer)):
        size = (size,)
    try:
        shape = tuple(size)
    except TypeError:
        raise TypeError(bad) from None
    if any(isinstance(n, (bool, np.bool_)) or not isinstance(n, (Integral, np.integer)) for n in shape):
        raise TypeError(bad)
    if any(n < 0 for n in shape) or len(shape) > 32:
        raise ValueError(bad)
    return tuple(int(n) for n in shape)


def _uniforms(size, random_state) -> np.ndarray:
    gen = _generator(random_state)
    if size is not None:
        size = _shape(size)
        n = math.prod(size)
        check_fits(n * _BYTES_PER_SAMPLE + _CHUNK * 2048, f"rvs(size={size if len(size) > 1 else n})",
                   "draw fewer samples (or draw them in batches)")
    return gen.random_sample(size) if isinstance(gen, np.random.RandomState) else gen.random(size)


def _chunked(hook, x: np.ndarray) -> np.ndarray:
    """``hook(x)`` for a 1-D array ``x``, evaluated in chunks of ``_CHUNK`` values (the hooks' temporary
    memory is a few hundred doubles per value)."""
    x = np.asarray(x, dtype=float)
    if x.size <= _CHUNK:
        return np.asarray(hook(x), dtype=float)
    flat = x.ravel()
    out = np.empty(flat.shape)
    for i in range(0, flat.size, _CHUNK):
        out[i:i + _CHUNK] = np.asarray(hook(flat[i:i + _CHUNK]), dtype=float)
    return out.reshape(x.shape)


def _scalar_or_array(out: np.ndarray):
    return out[()] if out.ndim == 0 else out


def _exp_checked(t, what: str, log_variant: str) -> np.ndarray:
    """exp(t) elementwise, raising ``ValueError`` when a finite t overflows or underflows a double."""
    t = np.asarray(t, dtype=float)
    over = np.isfinite(t) & (t > _LOG_MAX)
    under = np.isfinite(t) & (t < _LOG_TINY)
    if np.any(over) or np.any(under):
        bad = float(t[over | under].ravel()[0])
        kind = "overflows" if bad > 0 else "underflows"
        raise ValueError(f"{what} = exp({bad:.6g}) {kind} a double; use {log_variant}")
    with np.errstate(under="ignore"):
        return np.exp(t)


# ------------------------------------------------------------------------ the base class
class _QuantileVerbs:
    """median and interval, from the law's ``ppf`` (the spectrum and its views)."""

    def median(self) -> float:
        """ppf(0.5)."""
        return float(self.ppf(0.5))

    def interval(self, confidence):
        """(lo, hi): the equal-tailed interval holding probability ``confidence``."""
        c = _confidence(confidence)
        lo, hi = self.ppf(np.array([0.5 - 0.5 * c, 0.5 + 0.5 * c]))
        return float(lo), float(hi)


class Spectrum(_QuantileVerbs):
    """Law of the eigenvalues lambda >= 0 of J J^T, possibly with atoms.

    Subclasses implement the private hooks described in :mod:`isometry.spectrum.base`;
    everything below is written once on top of them.

    Example:
        >>> import isometry
        >>> sp = isometry.jacobian_spectrum("erf", 10, q_star=0.5)
        >>> sp.mean(), sp.cdf(sp.ppf(0.3))                           # doctest: +SKIP
        (1.0, 0.3)
        >>> sp.rvs(5, random_state=0).shape
        (5,)
    """

    # ---------------------------------------------------------------- hooks
    def _atoms_log(self) -> tuple[tuple[float, float], ...]:
        """Atoms as (log location, mass); the atom at lambda = 0 has log location -inf."""
        return ()

    def _support_log(self) -> tuple[float, float]:
        raise NotImplementedError

    def _pdf_log(self, t: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def _cdf_log(self, t: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def _sf_log(self, t: np.ndarray) -> np.ndarray:
        return 1.0 - self._cdf_log(t)

    def _continuous_mass(self) -> float:
        return 1.0 - sum(m for _, m in self._atoms_log())

    def _describe(self) -> dict[str, Any]:
        return {}

    def _quantile_table(self) -> tuple[np.ndarray, np.ndarray]:
        """Increasing finite t and the cdf there: brackets for the quantile search."""
        lo, hi = self._support_log()
        start = lo if np.isfinite(lo) else hi - 64.0
        t = np.linspace(start, hi, 129)
        return t, np.maximum.accumulate(self._cdf_log(t))

    def _ppf_log(self, p: np.ndarray) -> np.ndarray:
        return _ppf_by_newton(self, p)

    def _log_moment(self, order: int) -> float:
        return _log_moment_by_quadrature(self, order)

    def _log_mean(self) -> float:
        return self._log_moment(1)

    def _log_var(self) -> float:
        m1, m2 = self._log_mean(), self._log_moment(2)
        d = 2.0 * m1 - m2
        if d >= 0.0:
            return -math.inf
        return m2 + math.log(-math.expm1(d))

    # ---------------------------------------------------------------- cached derived data
    @cached_property
    def _atoms_sorted(self) -> tuple[tuple[float, float], ...]:
        return tuple(sorted((float(t), float(m)) for t, m in self._atoms_log() if m > 0))

    @cached_property
    def _atom_table(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Finite atoms: log locations, masses and the cdf just below each."""
        fin = [(t, m) for t, m in self._atoms_sorted if np.isfinite(t)]
        if not fin:
            e = np.empty(0)
            return e, e, e
        t = np.array([a for a, _ in fin])
        m = np.array([b for _, b in fin])
        return t, m, self._cdf_log(t) - m

    @cached_property
    def _full_support_log(self) -> tuple[float, float]:
        """(t_lo, t_hi) of the whole law: the hook's support widened to every atom (-inf with an atom at 0)."""
        lo, hi = (float(v) for v in self._support_log())
        for t, _ in self._atoms_sorted:
            lo, hi = min(lo, t), max(hi, t)
        return lo, hi

    @cached_property
    def _table(self) -> tuple[np.ndarray, np.ndarray]:
        t, F = self._quantile_table()
        t = np.asarray(t, float)
        F = np.asarray(F, float)
        keep = np.isfinite(t) & np.isfinite(F)
        t, F = t[keep], F[keep]
        order = np.argsort(t)
        return t[order], np.maximum.accumulate(F[order])

    # ---------------------------------------------------------------- atoms and masses
    @property
    def atoms(self) -> tuple[tuple[float, float], ...]:
        """The atoms as (lambda, mass), the atom at 0 included (lambda = 0.0)."""
        out = []
        for t, m in self._atoms_sorted:
            loc = 0.0 if t == -math.inf else float(_exp_checked(t, "an atom's location", "log_eigenvalues.atoms"))
            out.append((loc, m))
        return tuple(out)

    @property
    def zero_mass(self) -> float:
        """P(lambda = 0)."""
        return float(sum(m for t, m in self._atoms_sorted if t == -math.inf))

    @property
    def continuous_mass(self) -> float:
        """Mass of the continuous part (for numerically traced laws: as integrated, a check on 1 - atoms)."""
        return float(self._continuous_mass())

    @property
    def log_max_eigenvalue(self) -> float:
        """log of the top of the support (never overflows)."""
        return float(self._full_support_log[1])

    @property
    def max_eigenvalue(self) -> float:
        """The top of the support, ``support()[1]`` (raises only when the top itself is not a double)."""
        return float(_exp_checked(self._full_support_log[1], "the top of the support", "log_max_eigenvalue"))

    # ---------------------------------------------------------------- scipy.stats verbs
    def pdf(self, x):
        """Density of the continuous part at lambda = x (0 for x <= 0; atoms are not densities)."""
        x = _real_array(x, "x")
        out = np.zeros(x.shape)
        pos = (x > 0) & np.isfinite(x)
        if np.any(pos):
            t = np.log(x[pos])
            g = np.asarray(_chunked(self._pdf_log, t), dtype=float)
            with np.errstate(divide="ignore", over="ignore"):
                out[pos] = np.where(g > 0, np.exp(np.log(np.where(g > 0, g, 1.0)) - t), 0.0)
        return _scalar_or_array(out)

    def logpdf(self, x):
        """log pdf(x) (-inf where the density is 0); computed in logs, so it never overflows."""
        x = _real_array(x, "x")
        out = np.full(x.shape, -np.inf)
        pos = (x > 0) & np.isfinite(x)
        if np.any(pos):
            t = np.log(x[pos])
            g = np.asarray(_chunked(self._pdf_log, t), dtype=float)
            with np.errstate(divide="ignore"):
                out[pos] = np.where(g > 0, np.log(np.where(g > 0, g, 1.0)) - t, -np.inf)
        return _scalar_or_array(out)

    def cdf(self, x):
        """P(lambda <= x), atoms included (the atom at 0 counts for x >= 0)."""
        x = _real_array(x, "x")
        out = np.zeros(x.shape)
        out[x == 0] = self.zero_mass
        out[x == np.inf] = 1.0
        pos = (x > 0) & np.isfinite(x)
        if np.any(pos):
            out[pos] = _chunked(self._cdf_log, np.log(x[pos]))
        return _scalar_or_array(np.clip(out, 0.0, 1.0))

    def sf(self, x):
        """P(lambda > x) = 1 - cdf(x)."""
        x = _real_array(x, "x")
        out = np.ones(x.shape)
        out[x == 0] = 1.0 - self.zero_mass
        out[x == np.inf] = 0.0
        pos = (x > 0) & np.isfinite(x)
        if np.any(pos):
            out[pos] = _chunked(self._sf_log, np.log(x[pos]))
        return _scalar_or_array(np.clip(out, 0.0, 1.0))

    def ppf(self, q):
        """The q-quantile: the smallest lambda with cdf(lambda) >= q (0 inside the atom at 0)."""
        q = _probabilities(q)
        t = np.asarray(_chunked(self._ppf_log, q.ravel()), dtype=float).reshape(q.shape)
        return _scalar_or_array(_lambda_from_log(t, "the quantile", "log_eigenvalues.ppf"))

    def support(self) -> tuple[float, float]:
        """(lo, hi): the smallest closed interval holding the law (lo = 0 with an atom at 0)."""
        lo, hi = self._full_support_log
        lo_v = 0.0 if lo == -math.inf else float(_exp_checked(lo, "the bottom of the support", "log_eigenvalues.support"))
        hi_v = float(_exp_checked(hi, "the top of the support", "log_eigenvalues.support"))
        return lo_v, hi_v

    def moment(self, order) -> float:
        """E[lambda^order] for an integer order in [1, 20]."""
        k = _order(order)
        return float(_exp_checked(self._log_moment(k), f"E[lambda^{k}]", "log_moment"))

    def log_moment(self, order) -> float:
        """log E[lambda^order] for an integer order in [1, 20] (never overflows)."""
        return float(self._log_moment(_order(order)))

    def mean(self) -> float:
        """E[lambda]."""
        return float(_exp_checked(self._log_mean(), "the mean", "log_mean()"))

    def log_mean(self) -> float:
        """log E[lambda] (never overflows)."""
        return float(self._log_mean())

    def var(self) -> float:
        """Var[lambda]."""
        lv = self._log_var()
        return 0.0 if lv == -math.inf else float(_exp_checked(lv, "the variance", "log_var()"))

    def log_var(self) -> float:
        """log Var[lambda] (-inf for a point mass; never overflows)."""
        return float(self._log_var())

    def std(self) -> float:
        """sqrt(Var[lambda])."""
        lv = self._log_var()
        return 0.0 if lv == -math.inf else float(_exp_checked(0.5 * lv, "the standard deviation", "log_var()"))

    def rvs(self, size=None, random_state=None):
        """Random eigenvalues drawn exactly from the law (inverse cdf of uniforms, atoms included).

        ``random_state``: None, an int seed, a ``numpy.random.Generator`` or ``RandomState``.
        """
        u = np.asarray(_uniforms(size, random_state), dtype=float)
        t = np.asarray(_chunked(self._ppf_log, u.ravel()), dtype=float).reshape(u.shape)
        return _scalar_or_array(_lambda_from_log(t, "a sample", "log_eigenvalues.rvs"))

    # ---------------------------------------------------------------- views
    @cached_property
    def log_eigenvalues(self) -> "LogEigenvalues":
        """The law of t = log lambda (the atom at 0 sits at t = -inf)."""
        return LogEigenvalues(self)

    @cached_property
    def singular_values(self) -> "SingularValues":
        """The law of the singular values s = sqrt(lambda) of J."""
        return SingularValues(self)

    # ---------------------------------------------------------------- records and figures
    def to_dict(self, quantiles=_DEFAULT_QUANTILES) -> dict[str, Any]:
        """Parameters and summary numbers; values that do not fit in a double are None (see the log_ keys)."""
        p = _probabilities(quantiles, "quantiles").ravel()
        d: dict[str, Any] = dict(self._describe())
        d["zero_mass"] = self.zero_mass
        d["log_atoms"] = [[t, m] for t, m in self._atoms_sorted if t > -math.inf]
        d["atoms"] = [[_or_none(lambda t=t: float(_exp_checked(t, "", ""))), m]
                      for t, m in self._atoms_sorted if t > -math.inf]
        d["log_mean"] = self.log_mean()
        d["log_var"] = self.log_var()
        d["log_max_eigenvalue"] = self.log_max_eigenvalue
        d["mean"] = _or_none(self.mean)
        d["var"] = _or_none(self.var)
        d["std"] = _or_none(self.std)
        d["max_eigenvalue"] = _or_none(lambda: self.max_eigenvalue)
        lq = np.atleast_1d(self._ppf_log(p))
        d["log_quantiles"] = {str(float(q)): float(v) for q, v in zip(p, lq)}
        d["quantiles"] = {str(float(q)): (0.0 if v == -math.inf else _or_none(lambda v=v: float(_exp_checked(v, "", ""))))
                          for q, v in zip(p, lq)}
        return d

    def plot(self, ax=None, path=None, *, log: bool | None = None, singular_values: bool = True):
        """Draw the law (density of the continuous part, atoms as markers labelled with their mass).

        Args:
            ax: a matplotlib Axes to draw into (a new Figure otherwise).
            path: also write the figure there (PNG, PDF or SVG by suffix).
            log: log-scaled value axis; None picks it for heavy-tailed or very wide laws.
            singular_values: draw the law of s = sqrt(lambda) (True) or of lambda (False).

        Returns:
            the matplotlib Figure.
        """
        from ..plotting.spectrum import plot_spectrum

        return plot_spectrum(self, ax=ax, path=path, log=log, singular_values=singular_values)

    def _title(self) -> str:
        d = self._describe()
        return ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in d.items())


def _or_none(fn):
    try:
        return fn()
    except ValueError:
        return None


def _lambda_from_log(t: np.ndarray, what: str, log_variant: str) -> np.ndarray:
    out = np.zeros(t.shape)
    fin = np.isfinite(t)
    out[fin] = _exp_checked(t[fin], what, log_variant)
    out[t == np.inf] = np.inf
    return out


# ------------------------------------------------------------------------ generic numerics
def _ppf_by_newton(law: Spectrum, p: np.ndarray) -> np.ndarray:
    """Smallest t with P(log lambda <= t) >= p: atoms first, then safeguarded Newton on the cdf
    (the density of t as slope) inside brackets taken from the law's quantile table."""
    p = np.asarray(p, dtype=float).ravel()
    out = np.full(p.shape, np.nan)
    lo_s, hi_s = law._full_support_log
    z = law.zero_mass
    out[p <= z] = -np.inf if z > 0 else lo_s
    out[p >= 1] = hi_s
    at, am, aleft = law._atom_table
    todo = np.isnan(out)
    for ti, mi, fl in zip(at, am, aleft):  # inside an atom's jump
        inside = todo & (p > fl) & (p <= fl + mi)
        out[inside] = ti
        todo &= ~inside
    idx = np.flatnonzero(todo)
    if not idx.size:
        return out
    T, F = law._table
    if T.size == 0:
        T = np.array([hi_s - 1.0, hi_s])
        F = law._cdf_log(T)
    pi = p[idx]
    j = np.searchsorted(F, pi, side="left")  # F[j-1] < p <= F[j]
    hi = np.where(j < T.size, T[np.minimum(j, T.size - 1)], hi_s)
    lo = np.where(j > 0, T[np.maximum(j - 1, 0)], np.nan)
    flo = np.where(j > 0, F[np.maximum(j - 1, 0)], np.nan)
    fhi = np.where(j < T.size, F[np.minimum(j, T.size - 1)], 1.0)
    need = np.isnan(lo)
    if np.any(need):  # below the table: step down until the cdf is below p
        k = np.flatnonzero(need)
        step = max(1.0, abs(float(T[0])))
        cur = np.full(k.size, float(T[0]))
        fc = np.full(k.size, float(F[0]))
        for _ in range(2100):
            act = fc >= pi[k]
            if not np.any(act):
                break
            hi[k[act]] = cur[act]
            fhi[k[act]] = fc[act]
            cur[act] = cur[act] - step
            fc[act] = law._cdf_log(cur[act])
            step *= 2.0
            if step > 1e300:
                break
        lo[k] = cur
        flo[k] = fc
        lo[k[fc >= pi[k]]] = -np.inf
    t = np.where(np.isfinite(lo) & (fhi > flo), lo + (hi - lo) * (pi - flo) / np.where(fhi > flo, fhi - flo, 1.0),
                 hi)
    t = np.where(np.isfinite(t), t, hi)
    done = ~np.isfinite(lo)  # the cdf stays >= p down to -inf: the bottom of the support
    res = np.where(done, lo_s, np.nan)
    act = np.flatnonzero(~done)
    for _ in range(200):
        if not act.size:
            break
        ta = t[act]
        Fa = law._cdf_log(ta)
        ga = np.asarray(law._pdf_log(ta), dtype=float)
        up = Fa >= pi[act]
        hi[act] = np.where(up, ta, hi[act])
        lo[act] = np.where(up, lo[act], ta)
        with np.errstate(divide="ignore", invalid="ignore"):
            newton = ta - (Fa - pi[act]) / ga
        inside = np.isfinite(newton) & (newton > lo[act]) & (newton < hi[act])
        tn = np.where(inside, newton, 0.5 * (lo[act] + hi[act]))
        scale = 1.0 + np.abs(tn)
        hit = np.abs(Fa - pi[act]) <= 1e-15
        narrow = hi[act] - lo[act] <= 2e-13 * scale
        step = inside & (np.abs(tn - ta) <= 1e-13 * scale)
        res[act] = np.where(hit, ta, np.where(narrow, hi[act], np.where(step, tn, np.nan)))
        t[act] = tn
        act = act[~(hit | narrow | step)]
    if act.size:
        res[act] = hi[act]
    out[idx] = res
    return out


_QX, _QW = leggauss(24)


def _log_moment_by_quadrature(law: Spectrum, order: int) -> float:
    """log E[lambda^k] = log int_0^1 exp(k t(p)) dp on panels split at the atoms' jumps."""
    from scipy.special import logsumexp

    z = law.zero_mass
    at, am, aleft = law._atom_table
    logs, weights = [], []
    for ti, mi in zip(at, am):
        logs.append(order * ti)
        weights.append(mi)
    cuts = sorted({z, 1.0, *aleft.tolist(), *(aleft + am).tolist()})
    cuts = [c for c in cuts if z <= c <= 1.0]
    atom_spans = list(zip(aleft.tolist(), (aleft + am).tolist()))
    for a, b in zip(cuts[:-1], cuts[1:]):
        if b - a <= 1e-15 or any(abs(a - l) < 1e-15 and abs(b - r) < 1e-15 for l, r in atom_spans):
            continue
        br = np.linspace(a, b, 17)
        x = (0.5 * (br[:-1, None] + br[1:, None]) + 0.5 * (br[1:, None] - br[:-1, None]) * _QX).ravel()
        w = (0.5 * (br[1:, None] - br[:-1, None]) * _QW).ravel()
        t = law._ppf_log(x)
        fin = np.isfinite(t)
        logs.extend((order * t[fin]).tolist())
        weights.extend(w[fin].tolist())
    if not logs:
        return -math.inf
    return float(logsumexp(np.asarray(logs), b=np.asarray(weights)))


# ------------------------------------------------------------------------ views
class _View(_QuantileVerbs):
    """Shared verbs of the views: quantiles, intervals and samples from their ppf."""

    def __init__(self, spectrum: Spectrum):
        self.spectrum = spectrum

    def rvs(self, size=None, random_state=None):
        return self.ppf(_uniforms(size, random_state))


class LogEigenvalues(_View):
    """The law of t = log lambda; the atom at lambda = 0 sits at t = -inf. Never overflows.

    >>> import isometry
    >>> sp = isometry.jacobian_spectrum("erf", 10**5, q_star=1.0, weights="gaussian")
    >>> bool(sp.log_eigenvalues.ppf(0.5) < -700)      # the median is below the smallest double
    True
    """

    def pdf(self, t):
        """Density of t = log lambda (continuous part; lambda rho(lambda))."""
        t = _real_array(t, "t")
        out = np.zeros(t.shape)
        fin = np.isfinite(t)
        if np.any(fin):
            out[fin] = np.maximum(np.asarray(_chunked(self.spectrum._pdf_log, t[fin]), dtype=float), 0.0)
        return _scalar_or_array(out)

    def cdf(self, t):
        """P(log lambda <= t), atoms included (the atom at 0 counts for every t)."""
        t = _real_array(t, "t")
        out = np.full(t.shape, self.spectrum.zero_mass)
        out[t == np.inf] = 1.0
        fin = np.isfinite(t)
        if np.any(fin):
            out[fin] = _chunked(self.spectrum._cdf_log, t[fin])
        return _scalar_or_array(np.clip(out, 0.0, 1.0))

    def sf(self, t):
        """P(log lambda > t)."""
        t = _real_array(t, "t")
        out = np.full(t.shape, 1.0 - self.spectrum.zero_mass)
        out[t == np.inf] = 0.0
        fin = np.isfinite(t)
        if np.any(fin):
            out[fin] = _chunked(self.spectrum._sf_log, t[fin])
        return _scalar_or_array(np.clip(out, 0.0, 1.0))

    def ppf(self, q):
        """The q-quantile of log lambda (-inf inside the atom at 0)."""
        q = _probabilities(q)
        return _scalar_or_array(np.asarray(_chunked(self.spectrum._ppf_log, q.ravel()), dtype=float).reshape(q.shape))

    def support(self) -> tuple[float, float]:
        """(t_lo, t_hi) (t_lo = -inf when the law reaches lambda = 0)."""
        lo, hi = self.spectrum._full_support_log
        return float(lo), float(hi)

    @property
    def atoms(self) -> tuple[tuple[float, float], ...]:
        """The atoms as (log lambda, mass), the atom at 0 as (-inf, mass)."""
        return self.spectrum._atoms_sorted


class SingularValues(_View):
    """The law of the singular values s = sqrt(lambda) of J: p(s) = 2 s rho(s^2)."""

    def pdf(self, s):
        """Density of s (continuous part); 0 for s <= 0, never negative."""
        s = _real_array(s, "s")
        out = np.zeros(s.shape)
        pos = (s > 0) & np.isfinite(s)
        if np.any(pos):
            ls = np.log(s[pos])
            g = np.maximum(np.asarray(_chunked(self.spectrum._pdf_log, 2.0 * ls), dtype=float), 0.0)
            with np.errstate(divide="ignore", over="ignore"):
                out[pos] = np.where(g > 0, 2.0 * np.exp(np.log(np.where(g > 0, g, 1.0)) - ls), 0.0)
        return _scalar_or_array(out)

    def cdf(self, s):
        """P(s' <= s), atoms included."""
        s = _real_array(s, "s")
        out = np.zeros(s.shape)
        out[s == 0] = self.spectrum.zero_mass
        out[s == np.inf] = 1.0
        pos = (s > 0) & np.isfinite(s)
        if np.any(pos):
            out[pos] = _chunked(self.spectrum._cdf_log, 2.0 * np.log(s[pos]))
        return _scalar_or_array(np.clip(out, 0.0, 1.0))

    def sf(self, s):
        """P(s' > s)."""
        s = _real_array(s, "s")
        out = np.ones(s.shape)
        out[s == 0] = 1.0 - self.spectrum.zero_mass
        out[s == np.inf] = 0.0
        pos = (s > 0) & np.isfinite(s)
        if np.any(pos):
            out[pos] = _chunked(self.spectrum._sf_log, 2.0 * np.log(s[pos]))
        return _scalar_or_array(np.clip(out, 0.0, 1.0))

    def ppf(self, q):
        """The q-quantile of s (0 inside the atom at 0)."""
        q = _probabilities(q)
        t = np.asarray(_chunked(self.spectrum._ppf_log, q.ravel()), dtype=float).reshape(q.shape)
        return _scalar_or_array(_lambda_from_log(0.5 * t, "the singular-value quantile", "log_eigenvalues.ppf"))

    def support(self) -> tuple[float, float]:
        """(lo, hi) of s."""
        lo, hi = self.spectrum._full_support_log
        lo_v = 0.0 if lo == -math.inf else float(_exp_checked(0.5 * lo, "the bottom of the support", "log_eigenvalues.support"))
        return lo_v, float(_exp_checked(0.5 * hi, "the top of the support", "log_eigenvalues.support"))

    @property
    def atoms(self) -> tuple[tuple[float, float], ...]:
        """The atoms as (s, mass)."""
        return tuple((math.sqrt(loc), m) for loc, m in self.spectrum.atoms)
