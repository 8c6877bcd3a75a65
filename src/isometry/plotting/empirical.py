"""Measured spectra of random networks, alone or against a theory (``Comparison.plot``).

The continuous part of the samples is a histogram normalised to the fraction of samples it
holds, so that it sits on the theory's density (the continuous part of the law). Atoms (the
mass at 0, and positive atoms of the law) are markers on the x axis with their measured and
predicted masses in the legend, never density spikes. On a log axis the bins are log-spaced
and densities are per unit log10 x (p(x) x ln 10), as in the papers' figures; the first and
last edges are the smallest and largest sample exactly, so every sample is binned.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from . import finish, new_axes

__all__ = ["plot_comparison", "plot_eigenvalues", "log_edges"]

_THEORY, _SIM, _ATOM = "C3", "C0", "k"


def log_edges(lo: float, hi: float, bins: int) -> np.ndarray:
    """``bins + 1`` log-spaced edges from ``lo`` to ``hi`` whose ends are ``lo`` and ``hi`` exactly.

    ``np.logspace(log10(lo), log10(hi))`` rounds its ends (10**log10(x) != x for many x) and
    can then drop the extreme samples from a histogram. A single value (lo == hi) gets one bin
    of relative width 1e-3 around it.

    Example:
        >>> e = log_edges(0.3, 7.0, 4)
        >>> bool(e[0] == 0.3 and e[-1] == 7.0)
        True
    """
    lo, hi = float(lo), float(hi)
    if not (0 < lo <= hi < math.inf):
        raise ValueError(f"log_edges needs 0 < lo <= hi < inf, got lo={lo!r}, hi={hi!r}")
    if lo == hi:
        lo, hi = lo * (1 - 5e-4), hi * (1 + 5e-4)
    edges = np.exp(np.linspace(math.log(lo), math.log(hi), int(bins) + 1))
    edges[0], edges[-1] = lo, hi
    return edges


def _linear_edges(hi: float, bins: int) -> np.ndarray:
    edges = np.linspace(0.0, hi, int(bins) + 1)
    edges[-1] = hi
    return edges


def _log_axis(ax, lo: float, hi: float) -> None:
    """A log x axis from ``lo`` to ``hi`` whose labels never overlap: within a decade 1, 2, 3, 5 x 10^k
    (or a few round numbers when fewer than three of those fit), 1, 2, 5 x 10^k over a few decades,
    powers of ten (at most 7) beyond; minor ticks unlabelled."""
    from matplotlib.ticker import FixedLocator, FuncFormatter, LogLocator, MaxNLocator, NullFormatter

    ax.set_xscale("log")
    ax.set_xlim(lo, hi)
    decades = math.log10(hi / lo)
    round_ticks = [m * 10.0**k for k in range(math.floor(math.log10(lo)), math.ceil(math.log10(hi)) + 1)
                   for m in (1, 2, 3, 5) if lo <= m * 10.0**k <= hi]
    if decades < 1.0 and len(round_ticks) >= 3:  # less than a decade: 1, 2, 3, 5 x 10^k when three fit
        ax.xaxis.set_major_locator(FixedLocator(round_ticks))
    elif decades < 1.0:  # a narrow range: a few round numbers
        ax.xaxis.set_major_locator(MaxNLocator(nbins=4, steps=[1, 2, 2.5, 5, 10]))
    else:
        ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0) if decades < 2.5 else (1.0,), numticks=7))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: _tick_label(v, powers=decades >= 4.0)))
    ax.xaxis.set_minor_formatter(NullFormatter())


def _tick_label(v: float, powers: bool = False) -> str:
    """Plain numbers from 0.001 to 10^4 (unless ``powers``), powers of ten as 10^k, others in e-notation."""
    if v <= 0:
        return ""
    if 1e-3 <= v < 1e4 and not powers:
        return f"{v:.4g}"
    k = round(math.log10(v))
    return f"$10^{{{k}}}$" if math.isclose(v, 10.0**k, rel_tol=1e-9) else f"{v:.1e}"


def _theory_density(theory: Any, grid: np.ndarray, log: bool, singular_values: bool) -> np.ndarray | None:
    """The law's continuous density on ``grid`` (eigenvalues or singular values), per unit log10 on a
    log axis; None when the law has no ``pdf``."""
    log_law = getattr(theory, "log_eigenvalues", None)
    if log and log_law is not None and callable(getattr(log_law, "pdf", None)):
        if singular_values:  # t = log lambda = 2 log s: per unit log10 s, p_t(t) dt / dlog10(s) = 2 ln 10 p_t(t)
            return np.asarray(log_law.pdf(2.0 * np.log(grid)), dtype=float) * 2.0 * math.log(10.0)
        return np.asarray(log_law.pdf(np.log(grid)), dtype=float) * math.log(10.0)
    sv_law = getattr(theory, "singular_values", None)
    if singular_values and sv_law is not None and callable(getattr(sv_law, "pdf", None)):
        dens = np.asarray(sv_law.pdf(grid), dtype=float)
    elif callable(getattr(theory, "pdf", None)):
        dens = np.asarray(theory.pdf(grid**2 if singular_values else grid), dtype=float)
        if singular_values:
            dens = 2.0 * grid * dens
    else:
        return None
    return dens * grid * math.log(10.0) if log else dens


def _bins(bins, n: int) -> int:
    """``bins``, or for None the Rice rule 2 n^(1/3) clipped to [10, 80] (few samples, few bins)."""
    if bins is None:
        return int(min(80, max(10, round(2.0 * n ** (1.0 / 3.0)))))
    if isinstance(bins, bool) or int(bins) != bins or bins < 1:
        raise ValueError(f"bins must be an integer >= 1 or None, got {bins!r}")
    return int(bins)


def _draw(ax, samples: np.ndarray, *, theory=None, atoms=(), theory_zero_mass=None, atom_rtol=1e-8,
          log=False, singular_values=False, bins=None, legend=True, floor=None) -> None:
    """Histogram of ``samples`` (zeros already at 0), the theory's density and the atoms' markers, whose
    measured (and predicted) masses the legend gives, or, with ``legend=False``, a label beside each."""
    from matplotlib.transforms import ScaledTranslation, blended_transform_factory

    from ..empirical.compare import _snap

    x = np.asarray(samples, dtype=float).ravel()
    total = x.size
    locs = [loc for loc, _ in atoms if loc > 0]
    x = _snap(x, locs, atom_rtol)
    markers = []  # (location in plotted units or 0, measured mass, theory mass or None)
    n_zero = int(np.sum(x <= 0))
    if n_zero or (theory_zero_mass or 0) > 0:
        markers.append((0.0, n_zero / total, theory_zero_mass))
    for loc, mass in atoms:
        if loc > 0:
            cnt = int(np.sum(x == loc))
            markers.append((math.sqrt(loc) if singular_values else loc, cnt / total, mass))
            x = x[x != loc]
    x = x[x > 0]
    if singular_values:
        x = np.sqrt(x)
    var = "s" if singular_values else r"\lambda"
    positive = [m[0] for m in markers if m[0] > 0]
    top = None  # a y limit below a boundary singularity of the theory's density
    if x.size:
        lo, hi = float(x.min()), float(x.max())
        nb = _bins(bins, x.size)
        edges = log_edges(lo, hi, nb) if log else _linear_edges(hi, nb)
        widths = np.diff(np.log10(edges)) if log else np.diff(edges)
        counts, _ = np.histogram(x, edges)
        heights = counts / total / widths
        ax.stairs(heights, edges, fill=True, alpha=0.35, color=_SIM, label="simulation")
        xlo, xhi = min([edges[0], *positive]), max([edges[-1], *positive])
        if theory is not None:  # over the whole axis: the law may reach beyond the samples
            grid = np.geomspace(xlo, xhi, 600) if log else np.linspace(xhi * 1e-4, xhi, 600)
            dens = _theory_density(theory, grid, log, singular_values)
            if dens is not None:
                ax.plot(grid, dens, color=_THEORY, lw=1.5, label="theory")
                peak = int(np.nanargmax(dens)) if np.any(np.isfinite(dens)) else 0
                if peak in (0, grid.size - 1):  # an integrable singularity at an end: keep the histogram readable
                    top = 1.3 * max(float(heights.max()), float(np.nanquantile(dens, 0.98)))
    else:  # everything sits on atoms
        xlo, xhi = (min(positive), max(positive)) if positive else (1.0, 1.0)
    if log:
        pad = 2.0 if xhi == xlo else max(1.02, (xhi / xlo) ** 0.02)
        _log_axis(ax, xlo / pad, xhi * pad)
    else:
        ax.set_xlim(0.0, (xhi if xhi > 0 else 1.0) * 1.05)
    ax.set_ylim(bottom=0.0)
    if top is not None and top < ax.get_ylim()[1]:
        ax.set_ylim(0.0, top)
    up = ScaledTranslation(0.0, 5.0 / 72.0, ax.figure.dpi_scale_trans)  # markers just above the x axis
    x0, x1 = ax.get_xlim()
    for loc, measured, predicted in markers:
        where = "atom " + (f"${var} = 0$" if loc == 0 else f"${var} = {loc:.4g}$")
        if loc == 0 and floor is not None:  # the marker holds the atom at 0 and the law's mass below the floor
            below = math.sqrt(floor) if singular_values else floor
            where = f"${var} < {_tick_label(below, powers=True).strip('$')}$ (counted as 0)"
        label = f"{where}: mass {measured:.3f}" + ("" if predicted is None else f" (theory {predicted:.3f})")
        if loc == 0 and log:  # 0 is not on a log axis: a marker pointing left, just inside the left spine
            right = ScaledTranslation(6.0 / 72.0, 0.0, ax.figure.dpi_scale_trans)
            ax.plot([0.0], [0.0], ls="none", marker="<", ms=9, color=_ATOM, mfc="white", mew=1.5,
                    transform=ax.transAxes + up + right, clip_on=False, zorder=5, label=label)
            frac = 0.0
        else:
            ax.plot([loc], [0.0], ls="none", marker="D" if loc > 0 else "o", ms=8, color=_ATOM, mfc="white",
                    mew=1.5, transform=blended_transform_factory(ax.transData, ax.transAxes) + up, clip_on=False,
                    zorder=5, label=label)
            frac = ((math.log(loc / x0) / math.log(x1 / x0)) if log else (loc - x0) / (x1 - x0)) if loc > 0 else 0.0
        if legend:  # the legend entry gives the masses
            continue
        # without a legend, the mass beside the marker: right of it, or left of it near the right edge
        text = f"{measured:.3g}" + ("" if predicted is None else f" (theory {predicted:.3g})")
        right_side = frac < 0.6
        ax.annotate(text, xy=(frac, 0.0), xycoords="axes fraction", xytext=(9 if right_side else -9, 13),
                    textcoords="offset points", ha="left" if right_side else "right", va="bottom", fontsize=7,
                    color=_ATOM, zorder=6, bbox={"boxstyle": "round,pad=0.15", "fc": "white", "ec": "none", "alpha": 0.8})
    ax.set_xlabel("singular value $s$ of $J$" if singular_values else r"eigenvalue $\lambda$ of $JJ^T$")
    ax.set_ylabel(f"density per unit $\\log_{{10}} {var}$" if log else "density")
    if legend:
        ax.legend(loc="best", frameon=False, fontsize=7)


def plot_comparison(comparison, ax=None, path=None, *, log: bool = False, singular_values: bool = False,
                    bins: int | None = None, title: str | None = None, legend: bool = True):
    """Measured eigenvalues (or singular values) against the theory of a :class:`isometry.Comparison`.

    Histogram of the samples outside the atoms, normalised to the fraction they hold; the
    theory's density (``pdf``, ``singular_values.pdf``, ``log_eigenvalues.pdf`` when present)
    on top; every atom (the mass at 0 included) a marker on the x axis whose legend entry gives
    the measured and predicted masses. Eigenvalues below the comparison's ``floor`` count as 0:
    when the law has continuous mass below the floor (a tail too deep for float64), the marker
    at 0 says so (``lambda < floor``) and its predicted mass is the law's F(floor). ``log``:
    log-spaced bins on a log axis, densities per unit log10. The title names the law's configuration (activation, depth, weight law, q*),
    the width and the number of networks (for 2-D samples, one network per row; the number
    of samples otherwise), and the KS distance. ``legend=False`` leaves the legend out (for panels
    of a figure with one figure-level legend); the atoms' masses stay written beside their markers.

    Returns the Figure (also written to ``path`` when given).

    Example:
        >>> import isometry
        >>> law = isometry.jacobian_spectrum("erf", 8, q_star=0.25)
        >>> lam = isometry.empirical_eigenvalues("erf", 8, 200, q_star=0.25, n_samples=2, seed=0)
        >>> fig = plot_comparison(isometry.compare(law, lam.reshape(2, -1)), log=True, singular_values=True)
        >>> fig.axes[0].get_title().splitlines()[0]
        'erf, L = 8, orthogonal weights, q* = 0.25, N = 200, 2 networks'
    """
    from ..empirical.compare import describe_law, law_atoms

    fig, ax = new_axes(ax)
    zero, floor = comparison.theory_zero_mass, None
    cdf = getattr(comparison.theory, "cdf", None)
    if callable(cdf) and comparison.floor > 0:
        # eigenvalues below the floor count as 0: the theory's share of them is F(floor), the atom at 0
        # and the continuous mass under the floor (a tail too deep for float64, e.g. deep linear networks)
        below = float(np.clip(np.asarray(cdf(np.array([comparison.floor])), dtype=float)[0], 0.0, 1.0))
        if below > zero + 5e-4:
            zero, floor = below, comparison.floor
    _draw(ax, comparison.samples, theory=comparison.theory, atoms=law_atoms(comparison.theory),
          theory_zero_mass=zero, atom_rtol=comparison.atom_rtol, log=log,
          singular_values=singular_values, bins=bins, legend=legend, floor=floor)
    if title is None:
        parts = [describe_law(comparison.theory)]
        if comparison.width is not None:  # one network per row
            k = comparison.n_networks
            parts += [f"N = {comparison.width}", f"{k} network{'s' if k != 1 else ''}"]
        else:
            parts.append(f"{comparison.n} samples")
        title = ", ".join(parts) + f"\nKS = {comparison.ks:.3f}"
    ax.set_title(title, fontsize=9)
    return finish(fig, path)


def plot_eigenvalues(eigenvalues, ax=None, path=None, *, log: bool = False, singular_values: bool = False,
                     bins: int | None = None, floor: float = 1e-20, title: str | None = None):
    """Histogram of measured eigenvalues of J J^T (or singular values of J), no theory.

    Eigenvalues below ``floor`` count as 0 and are one marker (with their mass in the legend);
    the rest is a density histogram normalised to the fraction it holds (per unit log10 with
    ``log``). ``title``: the configuration the samples come from. Returns the Figure (also
    written to ``path`` when given).

    Example:
        >>> import isometry
        >>> lam = isometry.empirical_eigenvalues("relu", 4, 200, q_star=1.0, seed=0)
        >>> fig = plot_eigenvalues(lam, log=True, title="relu, L = 4, N = 200")
        >>> fig.axes[0].get_legend_handles_labels()[1][-1].startswith("atom")  # the mass at 0
        True
    """
    x = np.asarray(eigenvalues, dtype=float)
    if x.size == 0 or not np.all(np.isfinite(x)):
        raise ValueError("eigenvalues must be a non-empty array of finite numbers")
    fig, ax = new_axes(ax)
    _draw(ax, np.where(x < floor, 0.0, x), log=log, singular_values=singular_values, bins=bins)
    if title is not None:
        ax.set_title(title, fontsize=9)
    return finish(fig, path)
