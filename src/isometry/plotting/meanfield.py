"""Phase diagrams (the paper's Fig. 1)."""

from __future__ import annotations

import numpy as np

from . import pyplot as _plt  # noqa: F401


def plot_phase_diagram(pd, ax=None, critical_q_stars=None):
    """Ordered (chi < 1) and chaotic (chi > 1) phases, critical line coloured by q* (paper Fig. 1)."""
    from ..meanfield import critical_line

    plt = _plt()
    if ax is None:
        fig, ax = plt.subplots(figsize=(5.5, 4.2))
    else:
        fig = ax.figure
    sw, sb = pd.sigma_w2, pd.sigma_b2
    logchi = np.log(np.clip(pd.chi, 1e-300, None))
    lim = max(np.nanmax(np.abs(logchi)), 1e-3)
    ax.pcolormesh(sw, sb, logchi, cmap="RdBu_r", vmin=-lim, vmax=lim, shading="auto", alpha=0.35)
    ax.contour(sw, sb, pd.chi, levels=[1.0], colors="k", linewidths=0.8)
    qs = np.geomspace(1e-4, 10, 600) if critical_q_stars is None else np.asarray(critical_q_stars)
    line = critical_line(pd.activation, qs)
    m = line.valid & (line.sigma_w2 >= sw.min()) & (line.sigma_w2 <= sw.max()) & (line.sigma_b2 <= sb.max())
    sc = ax.scatter(line.sigma_w2[m], line.sigma_b2[m], c=np.log10(line.q_star[m]), s=10, cmap="viridis", zorder=3)
    fig.colorbar(sc, ax=ax, label=r"$\log_{10} q^*$ on the critical line")
    ax.set_xlabel(r"$\sigma_w^2$")
    ax.set_ylabel(r"$\sigma_b^2$")
    ax.set_title(f"{pd.activation}: order ($\\chi<1$, blue) / chaos ($\\chi>1$, red)")
    xm = sw.min() + 0.12 * (sw.max() - sw.min())
    ax.text(xm, sb.max() * 0.85, "ordered", fontsize=10)
    ax.text(sw.max() - 0.25 * (sw.max() - sw.min()), sb.max() * 0.1, "chaotic", fontsize=10)
    ax.set_xlim(sw.min(), sw.max())
    ax.set_ylim(sb.min(), sb.max())
    return fig
