"""Theory vs simulation: Kolmogorov-Smirnov distance, quantiles, moments, overlay plot.

:func:`compare` takes a law of the eigenvalues of J J^T and measured eigenvalues. The law is any
object with a ``cdf`` (atoms included): a :class:`isometry.spectrum.Spectrum` such as
:func:`isometry.jacobian_spectrum`, or a ``scipy.stats`` frozen distribution. Its other
``scipy.stats`` verbs are used when present: ``ppf`` (quantiles), ``mean()`` and ``var()``
(moments), ``pdf`` (the continuous part, for the plot) and ``singular_values.pdf`` /
``log_eigenvalues.pdf`` (for the singular-value and log-axis plots), and the extras ``atoms``
((location, mass) pairs) and ``zero_mass``; what the law lacks is reported as NaN.

The KS distance sup |F_n(x) - F(x)| is computed exactly (both one-sided limits at every distinct
sample value) for a theory CDF that is continuous apart from its atoms; below ``floor`` samples
and theory are both lumped at 0 (samples below it, and negative round-off, count as zeros; the
theory contributes F(floor)), since such eigenvalues are not resolved by a float64 SVD of the
product. Eigenvalues of one matrix are strongly correlated, so no KS p-value is reported: the
distance is a diagnostic, and the bootstrap intervals resample whole networks when ``samples``
is 2-D (one row per network).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .._checks import check_fits, check_int, check_nonnegative, check_probability, real_array

__all__ = ["Comparison", "compare", "ks_distance", "ks_distance_nonzero"]

DEFAULT_QUANTILES = (0.01, 0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99)


def _value(obj: Any, name: str, default: Any = None) -> Any:
    """``obj.name``, called when it is a method (``mean()``, ``var()``), else the attribute (``atoms``)."""
    v = getattr(obj, name, None)
    if v is None:
        return default
    return v() if callable(v) else v


def _cdf(theory: Any):
    cdf = getattr(theory, "cdf", None)
    if not callable(cdf):
        raise TypeError(f"theory must have a cdf method (a Spectrum or a scipy.stats frozen distribution), "
                        f"got {type(theory).__name__}")
    return cdf


def law_atoms(theory: Any) -> tuple[tuple[float, float], ...]:
    """The law's atoms as (location, mass) pairs with mass > 0 (its ``atoms``; none when it has none)."""
    return tuple((float(loc), float(m)) for loc, m in (_value(theory, "atoms", None) or ()) if m > 0)


def law_zero_mass(theory: Any) -> float:
    """The law's mass at 0: ``zero_mass``, else its atom at 0, else F(0) (an eigenvalue law lives on [0, inf))."""
    z = _value(theory, "zero_mass", None)
    if z is not None:
        return float(z)
    atoms = _value(theory, "atoms", None)
    if atoms is not None:
        return float(sum(m for loc, m in atoms if loc == 0))
    return float(np.clip(np.asarray(_cdf(theory)(0.0), dtype=float), 0.0, 1.0))


def describe_law(theory: Any) -> str:
    """A short name of the law: its configuration (activation, depth, weight law, q*) for a Jacobian
    spectrum, the kind for a universal law, the scipy distribution's name, else the type's name."""
    f = {k: getattr(theory, k, None) for k in ("activation", "depth", "weights", "q_star", "kind", "sigma0_2")}
    if f["activation"] is not None and f["depth"] is not None:
        text = f"{f['activation']}, L = {f['depth']:g}"
        if f["weights"] is not None:
            text += f", {f['weights']} weights"
        if f["q_star"] is not None:
            text += f", q* = {f['q_star']:.3g}"
        return text
    if f["kind"] is not None:
        return f"{f['kind']} limit" + (f", sigma0_2 = {f['sigma0_2']:g}" if f["sigma0_2"] is not None else "")
    dist = getattr(theory, "dist", None)
    if dist is not None and hasattr(dist, "name"):
        fmt = lambda v: f"{v:g}" if isinstance(v, (int, float)) else str(v)  # noqa: E731
        args = [fmt(a) for a in getattr(theory, "args", ())]
        args += [f"{k}={fmt(v)}" for k, v in (getattr(theory, "kwds", None) or {}).items()]
        return f"scipy.stats.{dist.name}({', '.join(args)})"
    return type(theory).__name__


def _clean(samples, floor: float) -> np.ndarray:
    x = real_array("samples", samples)
    if x.ndim not in (1, 2) or x.size == 0:
        raise ValueError(f"samples must be a non-empty 1-D or 2-D array of eigenvalues, got shape {x.shape}")
    if not np.all(np.isfinite(x)):
        raise ValueError("samples must be finite")
    return np.where(x < floor, 0.0, x)


def _snap(x: np.ndarray, locs, atom_rtol: float) -> np.ndarray:
    """Move samples within ``atom_rtol`` (relative) of a positive atom location onto it."""
    for loc in locs:
        x = np.where(np.abs(x - loc) <= atom_rtol * loc, loc, x)
    return x


def ks_distance(cdf, samples, floor: float = 1e-20, atoms=(), atom_rtol: float = 1e-8) -> float:
    """sup_{x >= floor} |F_n(x) - F(x)| for a theory CDF ``cdf`` (atoms included).

    Below ``floor`` both sides are lumped at 0: samples below it (and negative
    round-off) count as zeros and the theory's mass in [0, floor] is F(floor), so
    eigenvalues too small to be resolved (or to be computed in float64) are compared
    only through their total mass. F is treated as continuous on (floor, inf) except
    at the positive ``atoms`` ((location, mass) pairs): samples within ``atom_rtol``
    (relative) of a location are moved onto it, and the theory's one-sided limits there
    are F(loc (1 -+ atom_rtol)), robust to round-off in where the theory puts the atom.
    Both one-sided limits are compared at every distinct sample value, which is exact
    for a step function F_n.

    Example:
        >>> ks_distance(lambda x: np.clip(x, 0, 1), [0.5])   # F_n jumps from 0 to 1 where F = 1/2
        0.5
    """
    floor, atom_rtol = check_nonnegative("floor", floor), check_nonnegative("atom_rtol", atom_rtol)
    locs = [float(loc) for loc, m in atoms if loc > 0 and m > 0]
    x = np.sort(_snap(_clean(samples, floor).ravel(), locs, atom_rtol))
    n = x.size
    u, counts = np.unique(x, return_counts=True)
    upper = np.cumsum(counts) / n  # F_n(u)
    lower = upper - counts / n  # F_n(u-)
    at_right = np.where(u == 0, floor, u)
    at_left = u.copy()
    for loc in locs:
        hit = u == loc
        at_right[hit] = loc * (1 + atom_rtol)
        at_left[hit] = loc * (1 - atom_rtol)
    f = np.clip(np.asarray(cdf(at_right), dtype=float), 0.0, 1.0)
    f_left = np.clip(np.asarray(cdf(at_left), dtype=float), 0.0, 1.0)
    f_left = np.where(u > 0, f_left, 0.0)  # nothing below 0 (F_n(0-) = 0 too)
    return float(max(np.max(np.abs(upper - f)), np.max(np.abs(lower - f_left))))


def ks_distance_nonzero(cdf, samples, floor: float = 1e-20, atoms=(), atom_rtol: float = 1e-8) -> float:
    """KS distance between the laws conditioned on lambda > floor: the shape of the
    non-zero part, free of the O(N^-1/2) finite-width error in the mass at 0 (the rank
    of a finite ReLU network is the smallest number of active units in any layer)."""
    x = _clean(samples, floor).ravel()
    x = x[x > 0]
    if x.size == 0:
        return float("nan")
    f0 = float(np.clip(np.asarray(cdf(np.array([floor])), dtype=float)[0], 0.0, 1.0))
    if f0 >= 1.0:
        return float("nan")

    def cond(v):
        v = np.asarray(v, dtype=float)
        return np.where(v > 0, (np.asarray(cdf(np.maximum(v, floor)), dtype=float) - f0) / (1.0 - f0), 0.0)

    return ks_distance(cond, x, floor=floor, atoms=atoms, atom_rtol=atom_rtol)


@dataclass(frozen=True, eq=False)
class Comparison:
    """The result of :func:`compare`: ``to_dict()`` for JSON, ``table()`` for text, ``plot()`` for a figure.

    Measured values sit beside the theory's: ``zero_mass`` / ``theory_zero_mass`` (mass at 0),
    ``empirical_quantiles`` / ``theory_quantiles`` at the probabilities ``quantiles``, ``mean`` /
    ``theory_mean`` and ``variance`` / ``theory_variance`` with percentile-bootstrap ``confidence``
    intervals ``mean_ci`` and ``variance_ci``. Values the law does not provide are NaN.
    """

    ks: float
    ks_nonzero: float
    floor: float
    n: int
    n_networks: int
    zero_mass: float
    theory_zero_mass: float
    quantiles: np.ndarray  # probabilities p
    empirical_quantiles: np.ndarray
    theory_quantiles: np.ndarray
    mean: float
    mean_ci: tuple[float, float]
    theory_mean: float
    variance: float
    variance_ci: tuple[float, float]
    theory_variance: float
    confidence: float
    samples: np.ndarray = field(repr=False)
    theory: Any = field(repr=False)
    atom_rtol: float = field(default=1e-8, repr=False)

    @property
    def width(self) -> int | None:
        """N, the length of a row of 2-D ``samples`` (one network per row); None for pooled samples."""
        return int(self.samples.shape[1]) if self.samples.ndim == 2 else None

    @property
    def mean_covered(self) -> bool:
        """Whether the theory's mean lies in the bootstrap interval (False when the law has no mean)."""
        return bool(self.mean_ci[0] <= self.theory_mean <= self.mean_ci[1])

    @property
    def variance_covered(self) -> bool:
        """Whether the theory's variance lies in the bootstrap interval (False when the law has none)."""
        return bool(self.variance_ci[0] <= self.theory_variance <= self.variance_ci[1])

    def to_dict(self) -> dict[str, Any]:
        """The numbers as plain Python values (NaN where the law provides nothing)."""
        return {
            "theory": describe_law(self.theory), "width": self.width,
            "ks": self.ks, "ks_nonzero": self.ks_nonzero, "floor": self.floor, "n": self.n, "n_networks": self.n_networks,
            "zero_mass": self.zero_mass, "theory_zero_mass": self.theory_zero_mass,
            "quantiles": [{"p": float(p), "empirical": float(e), "theory": float(t)}
                          for p, e, t in zip(self.quantiles, self.empirical_quantiles, self.theory_quantiles)],
            "mean": self.mean, "mean_ci": list(self.mean_ci), "theory_mean": self.theory_mean,
            "variance": self.variance, "variance_ci": list(self.variance_ci), "theory_variance": self.theory_variance,
            "confidence": self.confidence,
        }

    def table(self) -> str:
        """A text table of the numbers."""
        c = int(round(100 * self.confidence))
        lines = [
            f"theory           {describe_law(self.theory)}",
            f"KS distance      {self.ks:.4f}   ({self.n} eigenvalues from {self.n_networks} network(s); below {self.floor:g} -> 0)",
            f"KS of non-zero   {self.ks_nonzero:.4f}   (laws conditioned on lambda > {self.floor:g})",
            f"mass at 0        empirical {self.zero_mass:.4f}   theory {self.theory_zero_mass:.4f}",
            f"mean             empirical {self.mean:.5g}  [{self.mean_ci[0]:.5g}, {self.mean_ci[1]:.5g}] ({c}%)   theory {self.theory_mean:.5g}",
            f"variance         empirical {self.variance:.5g}  [{self.variance_ci[0]:.5g}, {self.variance_ci[1]:.5g}] ({c}%)   theory {self.theory_variance:.5g}",
            "quantiles        p        empirical     theory",
        ]
        for p, e, t in zip(self.quantiles, self.empirical_quantiles, self.theory_quantiles):
            lines.append(f"                 {p:<8.3g} {e:<13.6g} {t:.6g}")
        return "\n".join(lines)

    def plot(self, ax=None, path=None, *, log: bool = False, singular_values: bool = False, bins: int | None = None,
             title: str | None = None):
        """Histogram of the samples with the theory's density on top; returns the matplotlib Figure.

        See :func:`isometry.plotting.empirical.plot_comparison` (atoms are markers with their
        masses; ``log``: log-spaced bins on a log axis, densities per unit log10; ``bins``: None
        picks 2 n^(1/3) in [10, 80]; ``path``: also write the figure there).
        """
        from ..plotting.empirical import plot_comparison

        return plot_comparison(self, ax=ax, path=path, log=log, singular_values=singular_values, bins=bins, title=title)


def _bootstrap(row_m1: np.ndarray, row_m2: np.ndarray, n_boot: int, confidence: float, rng: np.random.Generator):
    k = row_m1.size
    means = np.empty(n_boot)
    variances = np.empty(n_boot)
    chunk = max(1, 2_000_000 // k)
    for start in range(0, n_boot, chunk):
        b = min(chunk, n_boot - start)
        idx = rng.integers(0, k, size=(b, k))
        m1 = row_m1[idx].mean(axis=1)
        m2 = row_m2[idx].mean(axis=1)
        means[start:start + b] = m1
        variances[start:start + b] = m2 - m1 * m1
    a = (1.0 - confidence) / 2.0
    ci = lambda v: (float(np.quantile(v, a)), float(np.quantile(v, 1.0 - a)))  # noqa: E731
    return ci(means), ci(variances)


def compare(
    theory: Any,
    samples,
    *,
    floor: float = 1e-20,
    quantiles=DEFAULT_QUANTILES,
    n_boot: int = 1000,
    confidence: float = 0.95,
    seed: int | np.random.Generator | None = 0,
    atom_rtol: float = 1e-8,
) -> Comparison:
    """Compare a law of the eigenvalues of J J^T with measured eigenvalues.

    Args:
        theory: any object with ``cdf(lam)`` (atoms included): a
            :class:`isometry.spectrum.Spectrum` or a ``scipy.stats`` frozen distribution.
            ``ppf``, ``mean()``, ``var()``, ``atoms`` and ``zero_mass`` are used when present
            (without ``zero_mass`` or ``atoms`` the mass at 0 is F(0)).
        samples: 1-D (pooled eigenvalues) or 2-D (one row per network; the bootstrap then
            resamples networks, the right unit since eigenvalues of one matrix are dependent).
        floor: eigenvalues below it count as 0 (on both sides of the KS distance).
        quantiles: probabilities in (0, 1) of the quantile table.
        n_boot: bootstrap resamples (>= 10); confidence: level of the intervals, in (0, 1).
        seed: random state of the bootstrap (int, ``numpy.random.Generator`` or None).
        atom_rtol: samples within this relative distance of a positive atom count as on it.

    Returns:
        A :class:`Comparison`: the KS distance (atoms counted), the KS distance of the
        non-zero parts, masses at 0, the quantile table, the sample mean and variance with
        percentile-bootstrap intervals next to the theory's.

    Example:
        >>> from scipy import stats
        >>> c = compare(stats.expon(), stats.expon().rvs(size=2000, random_state=1))
        >>> c.ks < 0.05, round(c.theory_mean, 6)
        (True, 1.0)

        With the theory of a random network::

            lam = isometry.empirical_eigenvalues("erf", 8, 400, q_star=0.25, n_samples=4, seed=0)
            c = isometry.compare(isometry.jacobian_spectrum("erf", 8, q_star=0.25), lam.reshape(4, -1))
            print(c.table()); c.plot(log=True, path="erf.png")
    """
    from .sampling import _generator

    cdf = _cdf(theory)
    floor = check_nonnegative("floor", floor)
    confidence = check_probability("confidence", confidence, open=True)
    atom_rtol = check_nonnegative("atom_rtol", atom_rtol)
    n_boot = check_int("n_boot", n_boot, 10)
    # the bootstrap keeps n_boot means and variances and draws in chunks of ~2e6 indices
    check_fits(16 * n_boot + 3 * 8 * 2_000_000, f"compare with n_boot={n_boot}", "use fewer bootstrap resamples")
    p = real_array("quantiles", quantiles).ravel()
    if p.size == 0 or np.any(~((p > 0) & (p < 1))):
        raise ValueError(f"quantiles must be probabilities in (0, 1), got {quantiles!r}")
    x = _clean(samples, floor)
    rows = x if x.ndim == 2 else x[:, None]
    pooled = x.ravel()
    atoms = law_atoms(theory)
    ks = ks_distance(cdf, pooled, floor=floor, atoms=atoms, atom_rtol=atom_rtol)
    ks_nz = ks_distance_nonzero(cdf, pooled, floor=floor, atoms=atoms, atom_rtol=atom_rtol)
    m1_rows, m2_rows = rows.mean(axis=1), np.mean(rows * rows, axis=1)
    mean_ci, var_ci = _bootstrap(m1_rows, m2_rows, n_boot, confidence, _generator(seed))
    ppf = getattr(theory, "ppf", None)
    theory_q = np.asarray(ppf(p), dtype=float).reshape(p.shape) if callable(ppf) else np.full(p.shape, np.nan)
    return Comparison(
        ks=ks, ks_nonzero=ks_nz, floor=floor, n=pooled.size, n_networks=rows.shape[0] if x.ndim == 2 else 1,
        zero_mass=float(np.mean(pooled == 0)), theory_zero_mass=law_zero_mass(theory),
        quantiles=p, empirical_quantiles=np.quantile(pooled, p), theory_quantiles=theory_q,
        mean=float(pooled.mean()), mean_ci=mean_ci, theory_mean=float(_value(theory, "mean", math.nan)),
        variance=float(pooled.var()), variance_ci=var_ci, theory_variance=float(_value(theory, "var", math.nan)),
        confidence=confidence, samples=x, theory=theory, atom_rtol=atom_rtol,
    )
