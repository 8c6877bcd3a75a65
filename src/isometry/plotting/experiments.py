"""Figures of the training experiments (:mod:`isometry.experiments`).

- :func:`learning_curves` (E1, paper Fig. 4): test accuracy against log step, one panel per
  optimiser, one colour per network, solid orthogonal / dashed Gaussian, each network at its best
  learning rate, averaged over seeds (a run stopped at the target or diverged holds its last value).
- :func:`speed_vs_isometry` (E2): median steps to target against q*, the predicted and measured
  variance of the eigenvalues of J J^T, and the measured largest singular value of J.
- :func:`tau_vs_eta_depth` (E3, paper Fig. 6): tau / sqrt(L) against eta L, one line per depth.

Each takes ``ax=None`` (an Axes, or a sequence of Axes for the multi-panel figures; a new
constrained-layout figure otherwise) and ``path=None`` (also written there, atomically) and
returns the matplotlib Figure.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Mapping, Sequence

import numpy as np

from . import finish, pyplot

__all__ = ["learning_curves", "speed_vs_isometry", "tau_vs_eta_depth"]

_COLOURS = ["#d62728", "#1f77b4", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#17becf"]
_OPT_NAMES = {"sgd": "SGD", "momentum": "Momentum", "adam": "Adam", "rmsprop": "RMSProp"}


def _axes(ax, n: int, figsize: tuple[float, float], sharey: bool = True):
    """(fig, list of n Axes): the given ones, or a new constrained-layout row of panels."""
    if ax is None:
        fig, axes = pyplot().subplots(1, n, figsize=figsize, sharey=sharey, squeeze=False, layout="constrained")
        return fig, list(axes[0])
    axes = list(np.ravel(ax)) if isinstance(ax, (Sequence, np.ndarray)) else [ax]
    if len(axes) != n:
        raise ValueError(f"ax must be {n} Axes for this figure, got {len(axes)}")
    return axes[0].figure, axes


def _log_scale(ax, which: str = "xy") -> None:
    """Log axes labelled in plain numbers at 1, 2, 5 x 10^k (1 x 10^k when the data span more than
    1.5 decades), minor ticks unlabelled: no overlapping labels. Call after drawing the data."""
    import math

    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    for name in which:
        axis = ax.xaxis if name == "x" else ax.yaxis
        (ax.set_xscale if name == "x" else ax.set_yscale)("log")
        lo, hi = sorted(axis.get_view_interval())
        decades = math.log10(hi / lo) if lo > 0 and hi > 0 else math.inf
        axis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0) if decades <= 1.5 else (1.0,)))
        axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        axis.set_minor_formatter(NullFormatter())


def _mean_curve(records: list[Mapping]) -> tuple[np.ndarray, np.ndarray]:
    steps = sorted({p["step"] for r in records for p in r["curve"]})
    grid = np.array(steps, dtype=float)
    ys = []
    for r in records:
        s = np.array([p["step"] for p in r["curve"]], dtype=float)
        a = np.array([p["test_accuracy"] for p in r["curve"]], dtype=float)
        idx = np.searchsorted(s, grid, side="right") - 1  # hold the last value
        ys.append(a[np.clip(idx, 0, len(a) - 1)])
    return grid, np.mean(ys, axis=0)


def learning_curves(records: Sequence[Mapping], *, ax=None, path=None, title: str | None = None):
    """E1's learning curves from full run records (see the module docstring)."""
    from ..experiments.analysis import at_best_lr
    from ..experiments.summary import summary_row

    rows = [dict(summary_row(r), _rec=r) for r in records]
    best = at_best_lr(rows)
    opts = [o for o in ("sgd", "momentum", "adam", "rmsprop") if any(r["optimizer"] == o for r in best)]
    opts += sorted({r["optimizer"] for r in best} - set(opts))
    n = max(len(opts), 1)
    fig, axes = _axes(ax, n, (3.4 * n + 1.6, 3.4))
    labels = sorted({r["label"] for r in best})
    colour = {lab: _COLOURS[i % len(_COLOURS)] for i, lab in enumerate(labels)}
    target = best[0]["target_accuracy"] if best else None
    for a, opt in zip(axes, opts):
        groups = defaultdict(list)
        for r in best:
            if r["optimizer"] == opt:
                groups[(r["label"], r["weights"])].append(r["_rec"])
        for (lab, w), recs in sorted(groups.items()):
            x, y = _mean_curve(recs)
            m = x > 0
            a.plot(x[m], y[m], color=colour[lab], ls="-" if w == "orthogonal" else "--", lw=1.4, label=f"{lab}, {w}")
        if target is not None:
            a.axhline(target, color="0.6", lw=0.7, ls=":")
        _log_scale(a, "x")
        a.set_title(_OPT_NAMES.get(opt, opt), fontsize=9)
        a.set_xlabel("training step")
        a.set_ylabel("test accuracy")
    if not opts:
        axes[0].set_title("no finished runs", fontsize=9)
        axes[0].set_ylabel("test accuracy")
    handles, names = {}, []
    for a in axes:  # one legend for the figure: the networks are the same in every panel
        for h, n in zip(*a.get_legend_handles_labels()):
            if n not in handles:
                handles[n] = h
                names.append(n)
    if names:
        fig.legend([handles[n] for n in names], names, loc="outside lower center", ncol=min(len(names), 6), fontsize=7)
    if title:
        fig.suptitle(f"{title}; each network at its best learning rate, mean over seeds"
                     + ("" if target is None else f"; dotted: target {target:g}"), fontsize=9)
    return finish(fig, path)


def speed_vs_isometry(rows: Sequence[Mapping], *, ax=None, path=None):
    """E2: median steps to target against q*, predicted and measured variance of the eigenvalues of
    J J^T, and measured largest singular value (x: target never reached, drawn at twice the slowest)."""
    from ..experiments.analysis import e2_table

    table = e2_table(list(rows))
    fig, axes = _axes(ax, 4, (13, 3.4))
    finite = [r["median_tau"] for r in table if r["median_tau"] is not None]
    ceiling = 2 * max(finite) if finite else 1.0
    panels = (("q_star", "$q^*$"), ("predicted_variance", r"predicted $\sigma^2_{JJ^T}$"),
              ("measured_variance", r"measured $\sigma^2_{JJ^T}$"),
              ("measured_max_singular_value", r"measured $s_{max}$"))
    for j, (a, (key, xl)) in enumerate(zip(axes, panels)):
        for w, mk, ls in (("orthogonal", "o", "-"), ("gaussian", "s", "--")):
            pts = sorted((r[key], r["median_tau"]) for r in table if r["weights"] == w and r.get(key) is not None
                         and r[key] > 0)
            if not pts:
                continue
            xs = np.array([p[0] for p in pts], dtype=float)
            ys = np.array([p[1] if p[1] is not None else ceiling for p in pts], dtype=float)
            a.plot(xs, ys, marker=mk, ls=ls if j == 0 else "none", label=w, ms=4)
            never = np.array([p[1] is None for p in pts])
            if never.any():
                a.plot(xs[never], ys[never], "x", color="k", ms=7)
        _log_scale(a)
        a.set_xlabel(xl)
        a.set_ylabel("median steps to target")
    if any(a.get_legend_handles_labels()[0] for a in axes[:1]):
        axes[0].legend(fontsize=7)
    first = rows[0] if rows else {}
    fig.suptitle(f"E2: learning speed vs isometry ({first.get('activation', 'tanh')}, L={first.get('depth')}, "
                 f"N={first.get('width')}; x: target never reached)", fontsize=9)
    return finish(fig, path)


def tau_vs_eta_depth(rows: Sequence[Mapping], *, ax=None, path=None):
    """E3 (paper Fig. 6): tau / sqrt(L) against eta L at the median over seeds, one line per depth L."""
    from ..experiments.analysis import tau

    by = defaultdict(lambda: defaultdict(list))
    for r in rows:
        by[r["depth"]][r["learning_rate"]].append(tau(r))
    fig, (a,) = _axes(ax, 1, (4.8, 3.6))
    for i, (depth, lrs) in enumerate(sorted(by.items())):
        pts = [(lr * depth, float(np.median(t)) / math.sqrt(depth)) for lr, t in sorted(lrs.items())]
        pts = [p for p in pts if math.isfinite(p[1])]
        if pts:
            x, y = np.array(pts).T
            a.plot(x, y, "o-", color=_COLOURS[i % len(_COLOURS)], ms=3, label=f"L = {depth}")
    _log_scale(a)
    a.set_xlabel(r"$\eta L$")
    a.set_ylabel(r"$\tau / \sqrt{L}$")
    if a.get_legend_handles_labels()[0]:
        a.legend(fontsize=7)
    first = rows[0] if rows else {}
    a.set_title(f"E3: time to target vs learning rate and depth\n({first.get('activation', 'tanh')} "
                f"{first.get('weights', '')}, N={first.get('width')})", fontsize=9)
    return finish(fig, path)
