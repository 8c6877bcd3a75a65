"""Theory vs simulation: Kolmogorov-Smirnov distance, quantiles, moments, overlay plot.

:func:`compare` takes a theoretical law of the eigenvalues of J J^T (duck typed:
anything with ``cdf(lam)`` including the atoms, ``atoms`` ((location, mass)
pairs, optional), ``quantile(p)``, ``atom``,
``mean``, ``variance``, ``density(lam)``, optionally ``singular_value_density(s)``
and ``max_eigenvalue``; attributes may be properties or zero-argument methods),
e.g. :func:`isometry.jacobian_spectrum`, and measured eigenvalues, e.g. from
:func:`isometry.empirical_spectrum`.

The KS distance sup |F_n(x) - F(x)| is computed exactly (both one-sided limits at
every distinct sample value) for a theory CDF that is continuous apart from its
atoms; below ``floor`` samples and theory are both lumped at 0 (samples below it,
and negative round-off, count as zeros; the theory contributes F(floor)), since
such eigenvalues are not resolved by a float64 SVD of the product. Eigenvalues of one matrix are strongly correlated, so
no KS p-value is reported: the distance is a diagnostic, and the bootstrap
intervals resample whole networks when ``samples`` is 2-D (one row per network).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["Comparison", "compare", "ks_distance", "ks_distance_nonzero"]

DEFAULT_QUANTILES = (0.01, 0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99)


def _attr(obj: Any, name: str, default: Any = None) -> Any:
    v = getattr(obj, name, default)
    return v() if callable(v) else v


def _clean(samples, floor: float) -> np.ndarray:
    x = np.asarray(samples, dtype=float)
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
    """
    if not (np.isfinite(floor) and floor >= 0):
        raise ValueError(f"floor must be finite and >= 0, got {floor!r}")
    if not (np.isfinite(atom_rtol) and atom_rtol >= 0):
        raise ValueError(f"atom_rtol must be finite and >= 0, got {atom_rtol!r}")
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
    """The result of :func:`compare` (``as_dict()`` for JSON, ``table()`` for text, ``plot()``)."""

    ks: float
    ks_nonzero: float
    floor: float
    n: int
    n_networks: int
    zero_fraction: float
    atom: float
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
    spectrum: Any = field(repr=False)
    atom_rtol: float = field(default=1e-8, repr=False)

    @property
    def mean_covered(self) -> bool:
        return self.mean_ci[0] <= self.theory_mean <= self.mean_ci[1]

    @property
    def variance_covered(self) -> bool:
        return self.variance_ci[0] <= self.theory_variance <= self.variance_ci[1]

    def as_dict(self) -> dict[str, Any]:
        return {
            "ks": self.ks, "ks_nonzero": self.ks_nonzero, "floor": self.floor, "n": self.n, "n_networks": self.n_networks,
            "zero_fraction": self.zero_fraction, "atom": self.atom,
            "quantiles": [{"p": float(p), "empirical": float(e), "theory": float(t)}
                          for p, e, t in zip(self.quantiles, self.empirical_quantiles, self.theory_quantiles)],
            "mean": self.mean, "mean_ci": list(self.mean_ci), "theory_mean": self.theory_mean,
            "variance": self.variance, "variance_ci": list(self.variance_ci), "theory_variance": self.theory_variance,
            "confidence": self.confidence,
        }

    def table(self) -> str:
        c = int(round(100 * self.confidence))
        lines = [
            f"KS distance      {self.ks:.4f}   ({self.n} eigenvalues from {self.n_networks} network(s); below {self.floor:g} -> 0)",
            f"KS of non-zero   {self.ks_nonzero:.4f}   (laws conditioned on lambda > {self.floor:g})",
            f"mass at 0        empirical {self.zero_fraction:.4f}   theory {self.atom:.4f}",
            f"mean             empirical {self.mean:.5g}  [{self.mean_ci[0]:.5g}, {self.mean_ci[1]:.5g}] ({c}%)   theory {self.theory_mean:.5g}",
            f"variance         empirical {self.variance:.5g}  [{self.variance_ci[0]:.5g}, {self.variance_ci[1]:.5g}] ({c}%)   theory {self.theory_variance:.5g}",
            "quantiles        p        empirical     theory",
        ]
        for p, e, t in zip(self.quantiles, self.empirical_quantiles, self.theory_quantiles):
            lines.append(f"                 {p:<8.3g} {e:<13.6g} {t:.6g}")
        return "\n".join(lines)

    def plot(self, ax=None, *, log: bool = False, singular_values: bool = False, bins: int = 80, path=None):
        """Histogram of the samples with the theory density on top.

        ``singular_values``: plot s = sqrt(lambda) (density ``singular_value_density``,
        else 2 s p(s^2)); ``log``: log-spaced bins on a log x axis, densities per
        unit log10 x (p(x) x ln 10), as in the paper's figures. The mass at 0 is
        not drawn, positive atoms are dashed lines labelled with their empirical and
        theoretical masses, and the histogram is normalised to the remaining fraction. Saved to
        ``path`` when given; returns the axes.
        """
        from ..plotting import _plt, save_figure

        plt = _plt()
        if ax is None:
            fig, ax = plt.subplots(figsize=(5.5, 3.8))
        else:
            fig = ax.figure
        total = self.samples.size
        atoms = [(float(loc), float(m)) for loc, m in (_attr(self.spectrum, "atoms", None) or ()) if loc > 0 and m > 0]
        x = _snap(self.samples.ravel(), [loc for loc, _ in atoms], self.atom_rtol)
        atom_counts = [(loc, m, int(np.sum(x == loc))) for loc, m in atoms]
        for loc, _, _ in atom_counts:
            x = x[x != loc]
        x = x[x > 0]
        if singular_values:
            x = np.sqrt(x)
        nz = x.size / total
        if x.size == 0:
            raise ValueError("no eigenvalues outside the atoms to plot")
        lo, hi = float(x.min()), float(x.max())
        if log:
            edges = np.logspace(np.log10(lo), np.log10(hi), bins + 1)
            widths = np.diff(np.log10(edges))
        else:
            edges = np.linspace(0.0, hi, bins + 1)
            widths = np.diff(edges)
        counts, _ = np.histogram(x, edges)
        heights = counts / x.size / widths * nz
        ax.stairs(heights, edges, fill=True, alpha=0.35, color="C0", label="simulation")
        grid = np.logspace(np.log10(lo), np.log10(hi), 600) if log else np.linspace(hi * 1e-4, hi, 600)
        spec = self.spectrum
        if singular_values:
            svd = getattr(spec, "singular_value_density", None)
            dens = np.asarray(svd(grid) if svd is not None else 2 * grid * spec.density(grid**2), dtype=float)
        else:
            dens = np.asarray(spec.density(grid), dtype=float)
        if log:
            dens = dens * grid * np.log(10.0)
            ax.set_xscale("log")
        ax.plot(grid, dens, color="C3", lw=1.5, label="theory")
        for loc, m, cnt in atom_counts:  # positive atoms: a dashed line with the masses
            xl = np.sqrt(loc) if singular_values else loc
            ax.axvline(xl, color="C3", ls="--", lw=1)
            ax.annotate(f"atom: {cnt / total:.3f} (theory {m:.3f})", (xl, 0.95), xycoords=("data", "axes fraction"),
                        ha="right", va="top", fontsize=8, color="C3")
        var = "s" if singular_values else r"$\lambda$"
        ax.set_xlabel(f"singular value {var}" if singular_values else f"eigenvalue {var} of $JJ^T$")
        ax.set_ylabel("density per log$_{10}$ unit" if log else "density")
        ax.set_title(f"KS = {self.ks:.3f}")
        ax.legend(frameon=False)
        if path is not None:
            save_figure(fig, path)
        return ax


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
    spectrum: Any,
    samples,
    floor: float = 1e-20,
    *,
    quantiles=DEFAULT_QUANTILES,
    n_boot: int = 1000,
    confidence: float = 0.95,
    seed: int | None = 0,
    atom_rtol: float = 1e-8,
) -> Comparison:
    """Compare a theoretical eigenvalue law of J J^T with measured eigenvalues.

    ``samples``: 1-D (pooled eigenvalues) or 2-D (one row per network; the
    bootstrap then resamples networks, the right unit since eigenvalues of one
    matrix are dependent). Returns the KS distance (atoms counted: values below
    ``floor`` as zeros, values within ``atom_rtol`` of a positive atom in
    ``spectrum.atoms`` on it), the quantile table and the sample mean and variance with
    percentile-bootstrap ``confidence`` intervals next to the theory's.

    Example::

        lam = isometry.empirical_spectrum("erf", 8, 400, q_star=0.25, n_samples=4)
        c = isometry.compare(isometry.jacobian_spectrum("erf", 8, q_star=0.25), lam.reshape(4, -1))
        print(c.table()); c.plot(log=True, path="erf.png")
    """
    if not (np.isfinite(floor) and floor >= 0):
        raise ValueError(f"floor must be finite and >= 0, got {floor!r}")
    if not (0 < confidence < 1):
        raise ValueError(f"confidence must be in (0, 1), got {confidence!r}")
    if int(n_boot) != n_boot or n_boot < 10:
        raise ValueError(f"n_boot must be an integer >= 10, got {n_boot!r}")
    p = np.asarray(quantiles, dtype=float).ravel()
    if p.size == 0 or np.any((p <= 0) | (p >= 1)):
        raise ValueError(f"quantiles must be probabilities in (0, 1), got {quantiles!r}")
    x = _clean(samples, floor)
    rows = x if x.ndim == 2 else x[:, None]
    pooled = x.ravel()
    atom0 = float(_attr(spectrum, "atom", 0.0) or 0.0)
    atoms = _attr(spectrum, "atoms", None) or ((0.0, atom0),)
    ks = ks_distance(spectrum.cdf, pooled, floor=floor, atoms=atoms, atom_rtol=atom_rtol)
    ks_nz = ks_distance_nonzero(spectrum.cdf, pooled, floor=floor, atoms=atoms, atom_rtol=atom_rtol)
    rng = np.random.default_rng(seed)
    m1_rows, m2_rows = rows.mean(axis=1), np.mean(rows * rows, axis=1)
    mean_ci, var_ci = _bootstrap(m1_rows, m2_rows, int(n_boot), float(confidence), rng)
    theory_q = np.array([float(np.asarray(spectrum.quantile(pi))) for pi in p])
    return Comparison(
        ks=ks, ks_nonzero=ks_nz, floor=float(floor), n=pooled.size, n_networks=rows.shape[0] if x.ndim == 2 else 1,
        zero_fraction=float(np.mean(pooled == 0)), atom=atom0,
        quantiles=p, empirical_quantiles=np.quantile(pooled, p), theory_quantiles=theory_q,
        mean=float(pooled.mean()), mean_ci=mean_ci, theory_mean=float(_attr(spectrum, "mean")),
        variance=float(pooled.var()), variance_ci=var_ci, theory_variance=float(_attr(spectrum, "variance")),
        confidence=float(confidence), samples=x, spectrum=spectrum, atom_rtol=float(atom_rtol),
    )
