"""Phase diagrams (the paper's Fig. 1): ordered and chaotic phases, the critical line coloured by q*."""

from __future__ import annotations

import numpy as np

from . import finish, new_axes

__all__ = ["plot_phase_diagram"]


def plot_phase_diagram(pd, ax=None, path=None, critical_q_stars=None):
    """Draw a :class:`isometry.PhaseDiagram`; return the Figure (also written to ``path``).

    The background is log chi (blue: ordered, chi < 1; red: chaotic, chi > 1), the black
    contour is chi = 1 on the grid, the dots are the critical line from
    :func:`isometry.critical_line` coloured by log10 q*, and hatched grey marks where the
    length map has no fixed point (q diverges).
    """
    from matplotlib.colors import ListedColormap, TwoSlopeNorm
    from matplotlib.patches import Patch

    from ..meanfield import critical_line

    fig, ax = new_axes(ax, figsize=(6.0, 4.4))
    sw, sb = pd.sigma_w2, pd.sigma_b2
    finite = np.isfinite(pd.chi)
    with np.errstate(divide="ignore", invalid="ignore"):
        logchi = np.where(finite, np.log(np.clip(pd.chi, 1e-300, None)), np.nan)
    lo = min(float(np.nanmin(logchi)) if np.any(finite) else -1e-3, -1e-3)
    hi = max(float(np.nanmax(logchi)) if np.any(finite) else 1e-3, 1e-3)
    # each phase saturates its own colour: blue for the most ordered point, red for the most chaotic
    ax.pcolormesh(sw, sb, np.ma.masked_invalid(logchi), cmap="RdBu_r", norm=TwoSlopeNorm(0.0, lo, hi),
                  shading="auto", alpha=0.45)
    handles = []
    if np.any(finite & (pd.chi < 1.0)):
        handles.append(Patch(color="#6b9ac4", alpha=0.6, label=r"ordered ($\chi<1$)"))
    if np.any(finite & (pd.chi > 1.0)):
        handles.append(Patch(color="#d6604d", alpha=0.6, label=r"chaotic ($\chi>1$)"))
    if np.any(~finite):
        ax.pcolormesh(sw, sb, np.ma.masked_where(finite, np.ones(sw.shape)), cmap=ListedColormap(["0.8"]),
                      shading="auto")
        if min(sw.shape) > 1:
            mask = (~finite).astype(float)
            ax.contourf(sw, sb, mask, levels=[0.5, 1.5], colors="none", hatches=["//"])
            ax.contour(sw, sb, mask, levels=[0.5], colors="0.3", linewidths=1.0, linestyles="--")
        handles.append(Patch(facecolor="0.8", edgecolor="0.3", hatch="//", label=r"$q$ diverges (from $q^0=1$)"))
    if np.any(finite) and np.nanmin(pd.chi) < 1.0 < np.nanmax(pd.chi) and min(sw.shape) > 1:
        ax.contour(sw, sb, np.where(finite, pd.chi, np.nan), levels=[1.0], colors="k", linewidths=0.8)
    qs = np.geomspace(1e-4, 10, 600) if critical_q_stars is None else np.asarray(critical_q_stars, dtype=float)
    line = critical_line(pd.activation, qs)
    pad_w = 1e-9 * max(1.0, float(np.max(np.abs(sw))))
    m = (line.valid & (line.sigma_w2 >= sw.min() - pad_w) & (line.sigma_w2 <= sw.max() + pad_w)
         & (line.sigma_b2 >= sb.min()) & (line.sigma_b2 <= sb.max()))
    if np.any(m):
        pts = np.unique(np.round(np.c_[line.sigma_w2[m], line.sigma_b2[m]], 12), axis=0)
        if len(pts) == 1:  # every q* has the same critical point (positively homogeneous units)
            w0, b0 = pts[0]
            ax.plot([w0], [b0], marker="*", ms=14, color="k", ls="none", clip_on=False, zorder=4)
            handles.append(ax.plot([], [], marker="*", ms=10, color="k", ls="none",
                                   label=rf"critical point ({w0:g}, {b0:g}), every $q^*$")[0])
        else:
            sc = ax.scatter(line.sigma_w2[m], line.sigma_b2[m], c=np.log10(line.q_star[m]), s=10, cmap="viridis",
                            zorder=3)
            fig.colorbar(sc, ax=ax, label=r"$\log_{10} q^*$ on the critical line")
            handles.append(ax.plot([], [], marker="o", ms=4, color="#3b528b", ls="none",
                                   label=r"critical line ($\chi=1$)")[0])
    ax.set_xlabel(r"$\sigma_w^2$ (weight variance)")
    ax.set_ylabel(r"$\sigma_b^2$ (bias variance)")
    ax.set_title(f"{pd.activation}: order/chaos phase diagram", fontsize=10)
    if sw.max() > sw.min():
        ax.set_xlim(sw.min(), sw.max())
    if sb.max() > sb.min():
        ax.set_ylim(sb.min(), sb.max())
    ax.legend(handles=handles, loc="upper left", fontsize=8, framealpha=0.85)
    return finish(fig, path)
