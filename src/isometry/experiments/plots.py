"""Figures of the training experiments (matplotlib, written atomically).

- :func:`plot_learning_curves` (E1, paper Fig. 4): test accuracy against log step, one panel per
  optimiser, one colour per network, solid orthogonal / dashed Gaussian, each at its best
  learning rate, averaged over seeds (a run stopped at the target or diverged holds its last value).
- :func:`plot_e2`: steps to target against q*, measured sigma^2_{JJ^T} and measured s_max.
- :func:`plot_e3` (paper Fig. 6): tau / sqrt(L) against eta L, one line per depth.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Mapping

import numpy as np

from ..plotting import _plt, save_figure
from .analysis import at_best_lr, e2_table, tau

_COLOURS = ["#d62728", "#1f77b4", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#17becf"]
_OPT_NAMES = {"sgd": "SGD", "momentum": "Momentum", "adam": "ADAM", "rmsprop": "RMSProp"}


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


def plot_learning_curves(records: list[Mapping], path: str, title: str | None = None) -> str:
    """E1's learning curves (see module docstring); ``records`` are full run records."""
    from .records import summary_row

    rows = [dict(summary_row(r), _rec=r) for r in records]
    best = at_best_lr(rows)
    opts = [o for o in ("sgd", "momentum", "adam", "rmsprop") if any(r["optimizer"] == o for r in best)]
    plt = _plt()
    fig, axes = plt.subplots(1, max(len(opts), 1), figsize=(3.6 * max(len(opts), 1), 3.3), sharey=True,
                             squeeze=False)
    labels = sorted({r["label"] for r in best})
    colour = {lab: _COLOURS[i % len(_COLOURS)] for i, lab in enumerate(labels)}
    target = best[0]["target_accuracy"] if best else None
    for ax, opt in zip(axes[0], opts):
        groups = defaultdict(list)
        for r in best:
            if r["optimizer"] == opt:
                groups[(r["label"], r["weights"])].append(r["_rec"])
        for (lab, w), recs in sorted(groups.items()):
            x, y = _mean_curve(recs)
            m = x > 0
            ax.plot(x[m], y[m], color=colour[lab], ls="-" if w == "orthogonal" else "--", lw=1.4,
                    label=f"{lab}, {w}")
        if target is not None:
            ax.axhline(target, color="0.6", lw=0.7, ls=":")
        ax.set_xscale("log")
        ax.set_title(_OPT_NAMES.get(opt, opt))
        ax.set_xlabel("training step")
    axes[0][0].set_ylabel("test accuracy")
    if opts:
        axes[0][-1].legend(fontsize=6, loc="lower right")
    if title:
        fig.suptitle(f"{title}; each network at its best learning rate, mean over seeds", fontsize=9)
    return save_figure(fig, path)


def plot_e2(rows: list[Mapping], path: str) -> str:
    """Median steps to target against q*, predicted and measured sigma^2_{JJ^T}, measured s_max (E2)."""
    from matplotlib.ticker import NullFormatter

    table = e2_table(rows)
    plt = _plt()
    fig, axes = plt.subplots(1, 4, figsize=(13, 3.2), sharey=True)
    finite = [r["median_tau"] for r in table if r["median_tau"] is not None]
    ceiling = 2 * max(finite) if finite else 1.0
    panels = (("q_star", "$q^*$"), ("predicted_sigma2", r"predicted $\sigma^2_{JJ^T}$"),
              ("measured_sigma2", r"measured $\sigma^2_{JJ^T}$"), ("measured_s_max", r"measured $s_{max}$"))
    for j, (ax, (key, xl)) in enumerate(zip(axes, panels)):
        for w, mk, ls in (("orthogonal", "o", "-"), ("gaussian", "s", "--")):
            pts = [(r[key], r["median_tau"]) for r in table if r["weights"] == w and r.get(key) is not None]
            pts.sort()
            if not pts:
                continue
            xs = np.array([p[0] for p in pts], dtype=float)
            ys = np.array([p[1] if p[1] is not None else ceiling for p in pts], dtype=float)
            ax.plot(xs, ys, marker=mk, ls=ls if j == 0 else "none", label=w, ms=4)
            never = np.array([p[1] is None for p in pts])
            if never.any():
                ax.plot(xs[never], ys[never], "x", color="k", ms=7)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.yaxis.set_minor_formatter(NullFormatter())
        if key == "measured_s_max":
            ticks = [t for t in (1, 1.5, 2, 3, 4, 6, 8, 12, 16, 24, 32) if ax.get_xlim()[0] <= t <= ax.get_xlim()[1]]
            ax.set_xticks(ticks, [f"{t:g}" for t in ticks])
        ax.set_xlabel(xl)
    axes[0].set_ylabel("median steps to target")
    axes[0].legend(fontsize=7)
    fig.suptitle("E2: learning speed vs isometry (x: target never reached)", fontsize=9)
    return save_figure(fig, path)


def plot_e3(rows: list[Mapping], path: str) -> str:
    """tau / sqrt(L) against eta L, one line per depth (E3, paper Fig. 6)."""
    by = defaultdict(lambda: defaultdict(list))
    for r in rows:
        by[r["depth"]][r["learning_rate"]].append(tau(r))
    plt = _plt()
    fig, ax = plt.subplots(figsize=(4.6, 3.4))
    for i, (depth, lrs) in enumerate(sorted(by.items())):
        pts = [(lr * depth, float(np.median(t)) / math.sqrt(depth)) for lr, t in sorted(lrs.items())]
        pts = [p for p in pts if math.isfinite(p[1])]
        if pts:
            x, y = np.array(pts).T
            ax.plot(x, y, "o-", color=_COLOURS[i % len(_COLOURS)], ms=3, label=f"L = {depth}")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel(r"$\eta L$")
    ax.set_ylabel(r"$\tau / \sqrt{L}$")
    ax.legend(fontsize=7)
    ax.set_title("E3: learning time vs learning rate and depth", fontsize=9)
    return save_figure(fig, path)


def plot_experiment(experiment: str, out_dir: str) -> list[str]:
    """Write the experiment's figures into ``out_dir``; return their paths."""
    import os

    from . import records as rec_mod

    recs = [r for r in rec_mod.load_records(out_dir) if r["config"].get("experiment") == experiment]
    if not recs:
        return []
    rows = [rec_mod.summary_row(r) for r in recs]
    paths = []
    if experiment == "E1":
        paths.append(plot_learning_curves(recs, os.path.join(out_dir, "E1_learning_curves.png"),
                                          title=f"E1 ({rows[0]['data']}, L={rows[0]['depth']}, N={rows[0]['width']})"))
    elif experiment == "E2":
        paths.append(plot_e2(rows, os.path.join(out_dir, "E2_speed_vs_isometry.png")))
    elif experiment == "E3":
        paths.append(plot_e3(rows, os.path.join(out_dir, "E3_tau_vs_eta_L.png")))
    else:
        paths.append(plot_learning_curves(recs, os.path.join(out_dir, "learning_curves.png")))
    return paths
