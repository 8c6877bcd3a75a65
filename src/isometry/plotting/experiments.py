"""Figures of the training experiments (:mod:`isometry.experiments`).

- :func:`learning_curves` (E1, paper Fig. 4): test accuracy against log step, one panel per
  optimiser, one colour per network, solid orthogonal / dashed Gaussian, each network at its best
  learning rate, averaged over seeds (a run stopped at the target or diverged holds its last value).
- :func:`speed_vs_isometry` (E2): median steps to target against q*, the predicted and measured
  variance of the eigenvalues of J J^T, and the measured largest singular value of J.
- :func:`tau_vs_eta_depth` (E3, paper Fig. 6): tau / sqrt(L) against eta L, one line per depth,
  each depth's best rate marked.

Titles name the experiment, the activation, the data, the depth L, the width N and the seeds;
panels that share a legend get one legend for the figure, below the panels; every panel has its
y-label; log axes are labelled at 1, 2, 3, 5 x 10^k (or 1, 2, 5 x 10^k, or 10^k, as the range
allows) with unlabelled minor ticks. Each takes ``ax=None`` (an Axes, or a sequence of Axes for
the multi-panel figures; a new constrained-layout figure otherwise) and ``path=None`` (also
written there, atomically) and returns the matplotlib Figure.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Mapping, Sequence

import numpy as np

from . import finish, pyplot

__all__ = ["learning_curves", "speed_vs_isometry", "tau_vs_eta_depth", "steps_vs_depth"]

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
    """Log axes labelled in plain numbers at 1, 2, 3, 5 x 10^k (data within a decade), 1, 2, 5 x 10^k
    (within two) or 10^k, minor ticks unlabelled: no overlapping labels. Call after drawing the data."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    for name in which:
        axis = ax.xaxis if name == "x" else ax.yaxis
        (ax.set_xscale if name == "x" else ax.set_yscale)("log")
        lo, hi = sorted(axis.get_view_interval())
        decades = math.log10(hi / lo) if lo > 0 and hi > 0 else math.inf
        subs = (1.0, 2.0, 3.0, 5.0) if decades <= 1.0 else (1.0, 2.0, 5.0) if decades <= 2.0 else (1.0,)
        axis.set_major_locator(LogLocator(base=10, subs=subs))
        axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        axis.set_minor_formatter(NullFormatter())


def _describe(items: Sequence[Mapping], *, depth: bool = True) -> str:
    """"digits, L=32, N=64, batch 64, 3 seeds" from summary rows or run records."""
    cfgs = [r["config"] if isinstance(r.get("config"), Mapping) else r for r in items]
    if not cfgs:
        return "no runs"

    def one(key):
        vals = sorted({c.get(key) for c in cfgs if c.get(key) is not None}, key=str)
        return vals[0] if len(vals) == 1 else ("-".join(str(v) for v in (vals[0], vals[-1])) if vals else "?")

    seeds = len({c.get("seed") for c in cfgs})
    parts = [str(one("data"))]
    if depth:
        parts.append(f"L={one('depth')}")
    parts += [f"N={one('width')}", f"batch {one('batch_size')}", f"{seeds} seed{'s' if seeds != 1 else ''}"]
    return ", ".join(parts)


def _network_name(label: str, activation: str, q_star: float | None, sigma_w2: float | None, weights: str) -> str:
    """A legend entry: "tanh, sigma_w^2 = 1.05 (q* = 0.026), orthogonal"."""
    parts = [activation]
    if sigma_w2 is not None:
        with_q = q_star is not None and activation != "relu"
        parts.append(f"$\\sigma_w^2$={sigma_w2:.3g}" + (f" ($q^*$={q_star:.2g})" if with_q else ""))
    elif label:
        parts.append(label)
    return ", ".join(parts + [weights])


def _figure_legend(fig, axes, ncol: int = 6, extra: Sequence = ()) -> None:
    """One legend for the figure, below the panels, from the panels' labelled lines (each once)."""
    handles: dict = {}
    for a in axes:
        for h, n in zip(*a.get_legend_handles_labels()):
            handles.setdefault(n, h)
    for h, n in extra:
        handles.setdefault(n, h)
    if handles:
        fig.legend(list(handles.values()), list(handles), loc="outside lower center", ncol=min(len(handles), ncol),
                   fontsize=7, frameon=False)


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
    """E1's learning curves from full run records (see the module docstring); ``title`` names the
    experiment (default "E1")."""
    from ..experiments.analysis import at_best_lr
    from ..experiments.summary import summary_row

    rows = [dict(summary_row(r), _rec=r) for r in records]
    best = at_best_lr(rows)
    opts = [o for o in ("sgd", "momentum", "adam", "rmsprop") if any(r["optimizer"] == o for r in best)]
    opts += sorted({r["optimizer"] for r in best} - set(opts))
    n = max(len(opts), 1)
    fig, axes = _axes(ax, n, (3.3 * n + 0.6, 3.6))
    nets = sorted({(r["label"], r["activation"]) for r in best})
    colour = {lab: _COLOURS[i % len(_COLOURS)] for i, (lab, _) in enumerate(nets)}
    target = best[0]["target_accuracy"] if best else None
    for a, opt in zip(axes, opts):
        groups = defaultdict(list)
        for r in best:
            if r["optimizer"] == opt:
                groups[(r["label"], r["weights"])].append(r)
        for (lab, w), rs in sorted(groups.items(), key=lambda kv: (kv[0][0], kv[0][1] != "orthogonal")):
            x, y = _mean_curve([r["_rec"] for r in rs])
            m = x > 0
            r0 = rs[0]
            name = _network_name(lab, r0["activation"], r0.get("q_star"), r0.get("sigma_w2"), w)
            a.plot(x[m], y[m], color=colour[lab], ls="-" if w == "orthogonal" else "--", lw=1.4, label=name)
        if target is not None:
            a.axhline(target, color="0.5", lw=0.8, ls=":")
        _log_scale(a, "x")
        a.set_title(_OPT_NAMES.get(opt, opt), fontsize=9)
        a.set_xlabel("training step")
        a.set_ylabel("test accuracy")
        a.tick_params(labelleft=True)
    if not opts:
        axes[0].set_title("no finished runs", fontsize=9)
        axes[0].set_ylabel("test accuracy")
    _figure_legend(fig, axes, ncol=3)
    head = f"{title or 'E1'} (paper Fig. 4): {_describe(records)}"
    fig.suptitle(f"{head}\neach network at its best learning rate, mean over seeds"
                 + ("" if target is None else f"; dotted: target accuracy {target:g}"), fontsize=9)
    return finish(fig, path)


def speed_vs_isometry(rows: Sequence[Mapping], *, ax=None, path=None):
    """E2: median steps to target against q*, predicted and measured variance of the eigenvalues of
    J J^T, and measured largest singular value (x: target never reached, drawn at twice the slowest)."""
    from ..experiments.analysis import e2_table

    table = e2_table(list(rows))
    fig, axes = _axes(ax, 4, (13, 3.6))
    finite = [r["median_tau"] for r in table if r["median_tau"] is not None]
    ceiling = 2 * max(finite) if finite else 1.0
    panels = (("q_star", "$q^*$"), ("predicted_variance", r"predicted $\sigma^2_{JJ^T}$"),
              ("measured_variance", r"measured $\sigma^2_{JJ^T}$"),
              ("measured_max_singular_value", r"measured $s_{max}$"))
    never_seen = False
    for j, (a, (key, xl)) in enumerate(zip(axes, panels)):
        for w, mk, ls in (("orthogonal", "o", "-"), ("gaussian", "s", "--")):
            pts = sorted((r[key], r["median_tau"]) for r in table if r["weights"] == w and r.get(key) is not None
                         and r[key] > 0)
            if not pts:
                continue
            xs = np.array([p[0] for p in pts], dtype=float)
            ys = np.array([p[1] if p[1] is not None else ceiling for p in pts], dtype=float)
            a.plot(xs, ys, marker=mk, ls=ls if j == 0 else "none", label=f"{w} weights", ms=4,
                   color=_COLOURS[1] if w == "orthogonal" else _COLOURS[0])
            never = np.array([p[1] is None for p in pts])
            if never.any():
                never_seen = True
                a.plot(xs[never], ys[never], "x", color="k", ms=7)
        _log_scale(a)
        a.set_xlabel(xl)
        a.set_ylabel("median steps to target")
        a.tick_params(labelleft=True)
    extra = []
    if never_seen:
        from matplotlib.lines import Line2D

        extra = [(Line2D([], [], ls="none", marker="x", color="k"), "target never reached (drawn at 2x the slowest)")]
    _figure_legend(fig, axes, extra=extra)
    first = rows[0] if rows else {}
    fig.suptitle(f"E2: learning speed against isometry at initialisation ({first.get('activation', 'tanh')}, "
                 f"{first.get('optimizer', 'sgd')}, {_describe(rows)}; each point: median over seeds at its best "
                 "learning rate)", fontsize=9)
    return finish(fig, path)


def tau_vs_eta_depth(rows: Sequence[Mapping], *, ax=None, path=None):
    """E3 (paper Fig. 6): tau / sqrt(L) against eta L at the median over seeds, one line per depth L,
    each depth's best learning rate (:func:`isometry.experiments.analysis.best_learning_rates`)
    drawn as a filled star."""
    from ..experiments.analysis import best_learning_rates, tau

    by = defaultdict(lambda: defaultdict(list))
    for r in rows:
        by[r["depth"]][r["learning_rate"]].append(tau(r))
    best = best_learning_rates(rows, ("depth",)) if rows else {}
    fig, (a,) = _axes(ax, 1, (5.2, 4.0))
    finite = [float(np.median(t)) / math.sqrt(d) for d, lrs in by.items() for t in lrs.values()
              if math.isfinite(float(np.median(t)))]
    ceiling = 2 * max(finite) if finite else 1.0
    never_seen = False
    for i, (depth, lrs) in enumerate(sorted(by.items())):
        col = _COLOURS[i % len(_COLOURS)]
        pts = [(lr * depth, float(np.median(t)) / math.sqrt(depth), lr) for lr, t in sorted(lrs.items())]
        ok = [p for p in pts if math.isfinite(p[1])]
        if ok:
            x, y, _ = np.array(ok).T
            a.plot(x, y, "o-", color=col, ms=3, label=f"L = {depth}")
            star = [p for p in ok if p[2] == best.get((depth,))]
            if star:
                a.plot(star[0][0], star[0][1], "*", color=col, ms=11, mec="k", mew=0.5)
        never = [p[0] for p in pts if not math.isfinite(p[1])]
        if never:
            never_seen = True
            a.plot(never, [ceiling * 1.1 ** i] * len(never), "x", color=col, ms=6)  # one row per depth
    _log_scale(a)
    a.set_xlabel(r"learning rate $\times$ depth, $\eta L$")
    a.set_ylabel(r"steps to target / $\sqrt{L}$, $\tau / \sqrt{L}$")
    if a.get_legend_handles_labels()[0]:
        a.legend(fontsize=7, title="star: best rate" + ("\nx: target not reached" if never_seen else ""),
                 title_fontsize=7)
    first = rows[0] if rows else {}
    a.set_title(f"E3 (paper Fig. 6): {first.get('activation', 'tanh')} {first.get('weights', '')}, "
                f"$q^*$={first.get('q_star', 0):.3g}, {first.get('optimizer', 'sgd')}\n{_describe(rows, depth=False)}; "
                "median over seeds", fontsize=9)
    return finish(fig, path)


#: E4's colours and markers: this package's modes in strong colours, solid lines and filled markers;
#: the peers dashed with open markers.
_E4_STYLE = {
    "isometry:critical": ("#b2182b", "o"), "isometry:dks": ("#ef8a62", "D"), "isometry:tat": ("#67001f", "s"),
    "pytorch:default": ("0.45", "v"), "pytorch:orthogonal": ("#2166ac", "^"), "lsuv": ("#4dac26", "<"),
    "anyinit": ("#8073ac", ">"), "dks:dks": ("#35978f", "P"), "dks:tat": ("#01665e", "X"),
}


def steps_vs_depth(analysis: Mapping, *, ax=None, path=None):
    """E4 as one figure: a column per activation and optimiser of the fully connected networks
    (x: depth) and per convolutional network (one depth, the initialisers side by side), and three
    rows: (a) the median steps to the target over the reported seeds (bars: their range; x on the
    "not reached" row: a seed that never reached the target), (b) the mean eigenvalue of the body's
    J J^T at initialisation and (c) its normalised variance var/mean^2 (the measured isometry:
    dynamical isometry is mean 1 and spread 0), medians over the reported seeds. One line per
    initialiser: solid for this package's modes, dashed for the peers. ``analysis``:
    :func:`isometry.experiments.benchmark.analyse`'s result; ``ax``: 3 x columns Axes (row-major)."""
    from matplotlib.lines import Line2D

    from ..experiments.benchmark import LABELS
    from ..experiments.config import INITIALIZERS

    cells = list(analysis.get("cells", []))
    lines = sorted({("mlp", c["activation"], c["optimizer"]) for c in cells if c["architecture"] == "mlp"},
                   key=lambda k: (k[1], k[2] != "adam", k[2]))
    convs = sorted({(c["architecture"], c["activation"], c["optimizer"]) for c in cells if c["architecture"] != "mlp"})
    columns = lines + convs
    ncol = max(len(columns), 1)
    if ax is None:
        fig, grid = pyplot().subplots(3, ncol, figsize=(3.3 * ncol + 0.5, 8.6), squeeze=False, layout="constrained",
                                      sharex="col", height_ratios=(1.5, 1, 1))
    else:
        axes_in = list(np.ravel(ax))
        if len(axes_in) != 3 * ncol:
            raise ValueError(f"ax must be {3 * ncol} Axes for this figure, got {len(axes_in)}")
        fig, grid = axes_in[0].figure, np.array(axes_in).reshape(3, ncol)
    budget = max([c["steps"] for c in cells] + [1])
    never_y = budget * 1.8
    floor = 1e-12  # means below are drawn on the axis floor
    never_seen = False
    finite_steps = [t for c in cells for e in c["entries"] for t in e["taus"] if t is not None]
    metrics = (("median_tau", "steps to target (median)"),
               ("measured_mean", "mean eigenvalue of $JJ^T$\nat initialisation"),
               ("measured_normalised_variance", "variance / mean$^2$ of the\neigenvalues of $JJ^T$ at init"))

    def value(e, key):
        v = e.get(key)
        if key == "median_tau":
            return never_y if v is None else v
        return None if v is None else max(v, floor)

    for j, col_key in enumerate(columns):
        arch, act, opt = col_key
        mine = sorted((c for c in cells if (c["architecture"], c["activation"], c["optimizer"]) == col_key),
                      key=lambda c: c["depth"])
        conv = arch != "mlp"
        for i, (key, ylabel) in enumerate(metrics):
            a = grid[i][j]
            for k, name in enumerate(INITIALIZERS):
                col, mk = _E4_STYLE.get(name, ("k", "o"))
                pts = [(c, e) for c in mine for e in c["entries"] if e["initializer"] == name]
                if not pts:
                    continue
                ours = pts[0][1]["ours"]
                if conv:
                    xs = [k]
                else:
                    shift = 1.0 + 0.045 * (k - (len(INITIALIZERS) - 1) / 2)
                    xs = [c["depth"] * shift for c, _ in pts]
                ys = [value(e, key) for _, e in pts]
                keep = [(x, y) for x, y in zip(xs, ys) if y is not None]
                if not keep:
                    continue
                a.plot([x for x, _ in keep], [y for _, y in keep], ls="none" if conv else ("-" if ours else "--"),
                       lw=1.8 if ours else 1.1, color=col, marker=mk, ms=5, mfc=col if ours else "white", mec=col,
                       label=LABELS.get(name, name), zorder=3 if ours else 2)
                if key != "median_tau":
                    continue
                for x, (_, e) in zip(xs, pts):
                    fin = [t for t in e["taus"] if t is not None]
                    if fin and e["median_tau"] is not None:
                        med = e["median_tau"]
                        a.errorbar([x], [med], yerr=[[med - min(fin)], [max(fin) - med]], fmt="none", ecolor=col,
                                   elinewidth=0.9, capsize=1.5, alpha=0.8)
                    if len(fin) < len(e["taus"]):
                        never_seen = True
                        a.plot([x], [never_y], "x", color=col, ms=6, mew=1.4)
            a.set_yscale("log")
            if key == "median_tau":
                a.axhline(budget, color="0.6", lw=0.8, ls=":")
                lo = min(finite_steps) / 1.6 if finite_steps else 1.0
                a.set_ylim(lo, never_y * 1.5)
                _log_scale(a, "y")
                ticks = [t for t in a.get_yticks() if lo <= t <= budget]
                a.set_yticks(ticks + [never_y], [f"{t:g}" for t in ticks] + ["not\nreached"])
                a.set_yticks([], minor=True)
                relu = " (dks: Leaky ReLU)" if act == "relu" else ""
                name = {"mlp": "MLP", "cnn": "CNN", "resnet": "ResNet"}.get(arch, arch)
                where = f", L = {mine[0]['depth']}" if conv and mine else ""
                a.set_title(f"{name}{where}, {act}{relu}, {_OPT_NAMES.get(opt, opt)}", fontsize=9)
            elif key == "measured_mean":
                a.axhline(1.0, color="0.6", lw=0.8, ls=":")
                if a.get_ylim()[0] <= floor * 1.01:  # some mean vanished below the floor
                    a.set_ylim(bottom=floor / 10)
                    ticks = [t for t in a.get_yticks() if floor * 300 < t <= a.get_ylim()[1]]
                    a.set_yticks([floor] + ticks, [f"$\\leq$1e{int(round(math.log10(floor)))}"] +
                                 [f"1e{int(round(math.log10(t)))}" for t in ticks])
                    a.set_yticks([], minor=True)
            else:
                _log_scale(a, "y")
            a.set_ylabel(ylabel, fontsize=8)
            a.tick_params(labelleft=True, labelsize=7)
        bottom = grid[2][j]
        if conv:
            entries = mine[0]["entries"] if mine else []
            names = [e["initializer"] for e in entries]
            order = [INITIALIZERS.index(n) for n in names]
            bottom.set_xticks(order, [LABELS.get(n, n) for n in names], rotation=60, ha="right", fontsize=7)
            bottom.set_xlim(-0.7, len(INITIALIZERS) - 0.3)
        else:
            depths = [c["depth"] for c in mine]
            bottom.set_xscale("log", base=2)
            bottom.set_xticks(depths, [str(d) for d in depths])
            bottom.set_xticks([], minor=True)
            bottom.set_xlim(min(depths) / 1.45, max(depths) * 1.45)
            bottom.set_xlabel("depth L (layers of the body)")
    if not cells:
        grid[0][0].set_title("no finished runs", fontsize=9)
    for r, tag in enumerate("abc"):
        grid[r][0].annotate(f"({tag})", (0.0, 1.0), xycoords="axes fraction", xytext=(-30, 6),
                            textcoords="offset points", fontsize=9, fontweight="bold")
    extra = [(Line2D([], [], ls="none", marker="x", color="k"), "seed that never reached the target")] if never_seen else []
    extra.append((Line2D([], [], ls=":", color="0.6"), "step budget; mean 1"))
    _figure_legend(fig, list(grid[0]), ncol=6, extra=extra)
    names = {"mlp": "MLP", "cnn": "CNN", "resnet": "ResNet"}
    widths = ", ".join(f"{names.get(k, k)} N={'/'.join(map(str, v))}" for k, v in analysis.get("widths", {}).items())
    seeds = analysis.get("seeds", [])
    fig.suptitle(f"E4: (a) steps to {analysis.get('target_accuracy')} test accuracy on {analysis.get('data')}, every "
                 f"initialiser at its learning rate tuned on seed {analysis.get('tuning_seed')}; (b, c) the body's "
                 f"Jacobian at initialisation\n{widths}, batch {'/'.join(map(str, analysis.get('batch_size', [])))}, "
                 f"{budget} steps; medians (bars: range) over {len(seeds)} reported seeds; solid: this package, "
                 "dashed: peers", fontsize=9)
    return finish(fig, path)
