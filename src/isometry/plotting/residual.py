"""Figures of residual-network spectra (:mod:`isometry.spectrum.residual`): residual against plain
networks along the depth, and the universality of the large-depth law.

Both draw laws normalised to mean 1 (lambda / E[lambda], singular values s / sqrt(E[lambda])), so
that networks whose scales differ are compared by their shapes.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from . import finish, new_axes, pyplot

__all__ = ["plot_residual_vs_plain", "plot_universality", "draw_log_singular_density"]

_LN10 = math.log(10.0)


def draw_log_singular_density(ax, law, u: np.ndarray, **style):
    """Draw the density of u = log10(s / sqrt(E[lambda])) of ``law`` (continuous part) at the points ``u``."""
    t = 2.0 * _LN10 * np.asarray(u, float) + law.log_mean()
    dens = 2.0 * _LN10 * np.asarray(law.log_eigenvalues.pdf(t), float)
    return ax.plot(u, dens, **style)[0]


def plot_residual_vs_plain(rows: Sequence[dict], *, width: int | None = None, path=None):
    """A grid: one row per activation, one column per depth; each panel the normalised singular-value
    density of the residual network (theory line, simulation histogram) and of the plain network at
    the same depth (theory, dashed).

    ``rows``: dicts with ``activation``, ``weights``, ``sigma0_2`` (the residual networks' normalised
    variance) and ``panels``: a list of dicts with ``depth``, ``residual`` (a
    :class:`~isometry.spectrum.residual.ResidualSpectrum`), ``plain`` (a law, or None) and ``samples``
    (eigenvalues of simulated residual networks, or None). Returns the Figure.
    """
    plt = pyplot()
    ncol = max(len(r["panels"]) for r in rows)
    fig, axes = plt.subplots(len(rows), ncol, figsize=(3.3 * ncol, 2.7 * len(rows) + 0.6), squeeze=False,
                             layout="constrained")
    handles = []
    for i, row in enumerate(rows):
        for j, panel in enumerate(row["panels"]):
            ax = axes[i][j]
            res = panel["residual"]
            lo, hi = res.log_eigenvalues.support()
            u_res = np.linspace((lo - res.log_mean()) / (2 * _LN10), (hi - res.log_mean()) / (2 * _LN10), 400)
            u = np.linspace(min(-1.5, u_res[0] - 0.1), max(1.0, u_res[-1] + 0.1), 500)
            if panel.get("samples") is not None:
                s = np.asarray(panel["samples"], float)
                s = s[s > 0]
                h = ax.hist(0.5 * np.log10(s / res.mean()), bins=int(np.clip(s.size // 8, 15, 50)), density=True,
                            color="C0", alpha=0.3,
                            label="residual, simulation")
                if i == 0 and j == 0:
                    handles.append(h[2][0])
            line = draw_log_singular_density(ax, res, u_res, color="C0", lw=1.6, label="residual, theory")
            plain = panel.get("plain")
            if plain is not None:
                pl = draw_log_singular_density(ax, plain, u, color="C3", ls="--", lw=1.3, label="plain, theory")
                z = plain.zero_mass
                if z > 0:  # the atom at s = 0 of plain ReLU networks: a marker at the axis' left end with its mass
                    ax.plot([u[0]], [0.0], marker="<", color="C3", ms=6, clip_on=False)
                    ax.annotate(f"mass {z:.2f} at s=0", (u[0], 0.0), xytext=(3, 10), textcoords="offset points",
                                fontsize=7, color="C3")
            else:
                pl = None
            if i == 0 and j == 0:
                handles += [line] + ([pl] if pl is not None else [])
            ax.set_xlim(u[0], u[-1])
            ax.set_title(f"{row['activation']}, L={panel['depth']}, a={res.branch_scale:.3g}", fontsize=9)
            ax.set_xlabel(r"$\log_{10}(s/\sqrt{E[\lambda]})$", fontsize=8)
            ax.set_ylabel("density", fontsize=8)
            ax.tick_params(labelsize=7)
    extra = f", width {width}" if width else ""
    fig.suptitle(f"Residual networks at normalised variance {rows[0]['sigma0_2']:g} ({rows[0]['weights']} weights"
                 f"{extra}) against plain critical networks", fontsize=10)
    fig.legend(handles=handles, loc="outside lower center", ncol=len(handles), fontsize=8, frameon=False)
    return finish(fig, path)


def plot_universality(laws: dict, limit, *, ax=None, path=None):
    """Normalised singular-value densities of residual networks with different activations at equal
    normalised variance, and their large-depth limit (the smooth universal law). ``laws`` maps a label
    to a :class:`~isometry.spectrum.residual.ResidualSpectrum`. Returns the Figure."""
    fig, ax = new_axes(ax, figsize=(5.8, 4.0))
    hi = max(math.sqrt(law.max_eigenvalue / law.mean()) for law in laws.values())
    s = np.linspace(1e-3, 1.05 * max(hi, math.sqrt(limit.max_eigenvalue)), 600)
    ax.plot(s, limit.singular_values.pdf(s), color="k", lw=3.0, alpha=0.35,
            label=rf"$L\to\infty$ (smooth universal law, $\sigma_0^2$={limit.sigma0_2:.3g})")
    depth = None
    for k, (name, law) in enumerate(laws.items()):
        r = math.sqrt(law.mean())
        ax.plot(s, r * law.singular_values.pdf(s * r), color=f"C{k}", lw=1.2, ls=("-", "--", ":", "-.")[k % 4],
                label=f"{name} (a={law.branch_scale:.3g})")
        depth = law.depth
    w = next(iter(laws.values())).weights
    ax.set(xlabel=r"$s/\sqrt{E[\lambda]}$", ylabel="density of s",
           title=f"Universality: residual networks, L={depth}, {w} weights")
    ax.legend(fontsize=8)
    return finish(fig, path)
