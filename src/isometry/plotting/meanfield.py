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
            from matplotlib.collections import LineCollection
            from matplotlib.colors import Normalize

            w, b, lq = line.sigma_w2[m], line.sigma_b2[m], np.log10(line.q_star[m])
            norm = Normalize(float(lq.min()), float(lq.max()))
            pts = np.c_[w, b].reshape(-1, 1, 2)
            lc = LineCollection(np.concatenate([pts[:-1], pts[1:]], axis=1), array=0.5 * (lq[:-1] + lq[1:]),
                                cmap="viridis", norm=norm, linewidths=3.0, zorder=3, capstyle="round")
            ax.add_collection(lc)
            fig.colorbar(lc, ax=ax, label=r"$\log_{10} q^*$ on the critical line")
            # q* at each decade written along the line, from the top down, skipping labels that would touch
            span_w = max(float(np.ptp(sw)), 1e-300)
            span_b = max(float(np.ptp(sb)), 1e-300)
            placed = []
            for k in range(int(np.floor(lq.max())), int(np.ceil(lq.min())) - 1, -1):
                i = int(np.argmin(np.abs(lq - k)))
                at = ((w[i] - sw.min()) / span_w, (b[i] - sb.min()) / span_b)
                if abs(lq[i] - k) > 0.05 or any(np.hypot(at[0] - p[0], at[1] - p[1]) < 0.08 for p in placed):
                    continue
                placed.append(at)
                ax.plot([w[i]], [b[i]], marker="o", ms=4, color="k", zorder=4)
                ax.annotate(f"$q^*={10.0**k:g}$", (w[i], b[i]), xytext=(-6, 4), textcoords="offset points",
                            fontsize=7.5, ha="right", va="bottom", zorder=4)
            handles.append(ax.plot([], [], lw=3, color="#3b528b", label=r"critical line ($\chi=1$)")[0])
    ax.set_xlabel(r"$\sigma_w^2$ (weight variance)")
    ax.set_ylabel(r"$\sigma_b^2$ (bias variance)")
    ax.set_title(f"{pd.activation}: order/chaos phase diagram\n"
                 r"(mean field: every depth, width $N\to\infty$, orthogonal or Gaussian weights)", fontsize=9.5)
    if sw.max() > sw.min():
        ax.set_xlim(sw.min(), sw.max())
    if sb.max() > sb.min():
        ax.set_ylim(sb.min(), sb.max())
    ax.legend(handles=handles, loc="upper left", fontsize=8, framealpha=0.85)
    return finish(fig, path)
