"""Report part on training (paper Fig. 4 and Fig. 6 analogues), built on :mod:`isometry.experiments`.

The three experiments run together (:func:`isometry.experiments.run_experiments`): their runs live
in ``OUT/training/runs`` (one record per run, shared where the grids overlap, resumable like every
training experiment), each experiment's grid, summary, analysis and figure in
``OUT/training/E1`` etc. Progress: a bar over the runs (``Context.track``) and a status line when a
learning-rate grid is extended (``Context.status``).
"""

from __future__ import annotations

import math
import os

import numpy as np

from .._io import atomic_write_bytes
from .core import Check, Context, PartResult, check

EXPERIMENTS = ("E1", "E2", "E3")

CAPTIONS = {
    "E1": "E1 (paper Fig. 4): test accuracy against training step, one panel per optimiser, each network at its "
          "best learning rate, mean over seeds. Look for the orthogonal tanh network at q* = 0.0259 (solid, its "
          "spectrum the closest to isometry) reaching the dotted target first with every optimiser.",
    "E2": "E2: median steps to the target against q*, the predicted and measured variance of the eigenvalues of J J^T "
          "and the measured largest singular value, orthogonal and Gaussian tanh. Look for the steps rising with "
          "the spread of the spectrum (x: target never reached).",
    "E3": "E3 (paper Fig. 6): time to target over sqrt(L) against learning rate times depth, one line per depth. Look "
          "for the depths falling on one curve with the optimum at the same eta L: optimal eta ~ 1/L, tau ~ sqrt(L).",
}


def experiment_scale(ctx: Context) -> str:
    """The :data:`isometry.experiments.SCALES` name of the report's scale (the same names)."""
    from ..experiments import SCALES

    if ctx.scale not in SCALES:
        raise ValueError(f"the training experiments have no scale {ctx.scale!r}; scales: {', '.join(SCALES)}")
    return ctx.scale


def _run_all(ctx: Context):
    """Run E1, E2, E3 at the report's scale into ``OUT/training``: ``{name: ExperimentResult}``."""
    from ..experiments import run_experiments

    scale = experiment_scale(ctx)
    results = run_experiments(
        EXPERIMENTS, ctx.out / "training", scale=scale,
        data_dir=os.environ.get("ISOMETRY_CIFAR_DIR") if scale == "paper" else None,
        progress=ctx.track if ctx.progress else False, status=lambda line: ctx.status(f"[training] {line}"),
        **ctx.run_options())
    for name, res in results.items():
        if not res.complete:
            failed = "; ".join(f"{rid}: {msg}" for rid, msg in list(res.sweep.failed.items())[:3])
            raise RuntimeError(f"{name}: {res.sweep.total - len(res.rows)} of {res.sweep.total} runs did not finish "
                               f"({failed})")
    return results


def _copy_figures(ctx: Context, res) -> list[str]:
    figures = []
    for src in res.figures:  # the report keeps its own copy beside the other parts' figures
        dst = ctx.figure_path(f"fig_training_{os.path.splitext(os.path.basename(src))[0]}")
        with open(src, "rb") as fh:
            figures.append(atomic_write_bytes(dst, fh.read()))
    return figures


def _init_checks(rows) -> list[Check]:
    """At initialisation the trained networks' measured Jacobian spread is ordered as the theory says:
    orthogonal tanh at small q* much closer to isometry than ReLU (one small finite network each, so the
    spreads themselves are only listed in the data; the moments part checks them at width)."""
    def spread(act, w, qmax=None):
        v = [float(r["measured_variance"]) for r in rows if r["activation"] == act and r["weights"] == w
             and r.get("measured_variance") is not None and (qmax is None or r["q_star"] <= qmax)]
        return float(np.median(v)) if v else math.nan

    tanh_o, relu_o = spread("tanh", "orthogonal", 0.03), spread("relu", "orthogonal")
    if not (math.isfinite(tanh_o) and math.isfinite(relu_o)):
        return []
    return [check("at init: measured variance of the eigenvalues of J J^T, orthogonal tanh (q*<=0.03) < orthogonal "
                  "ReLU", relu_o, tanh_o, 0.0, passed=tanh_o < relu_o,
                  rule="measured (tanh) < theory column (ReLU, also measured)")]


def _init_table(rows) -> list[dict]:
    seen, out = set(), []
    for r in rows:
        key = (r["activation"], r["weights"], r["q_star"], r["depth"])
        if key not in seen and r.get("predicted_variance") is not None:
            seen.add(key)
            out.append({k: r.get(k) for k in ("activation", "weights", "q_star", "depth", "width", "predicted_variance",
                                              "measured_variance", "predicted_max_singular_value",
                                              "measured_max_singular_value")})
    return out


def _e1_checks(res: dict) -> tuple[list[Check], str]:
    checks = []
    for opt, d in res.get("by_optimizer", {}).items():
        ref = d["networks"].get("tanh sw2=1.05 orthogonal")
        for other in d["reference_vs"]:
            if not other.startswith("relu"):
                continue
            med_ref = ref["median_tau"] if ref else None
            med_other = d["networks"][other]["median_tau"]
            faster = med_ref is not None and (med_other is None or med_ref < med_other)
            checks.append(check(
                f"E1 {opt}: orthogonal tanh (q*=0.026) reaches the target in fewer steps than {other}",
                math.nan if med_other is None else med_other, math.nan if med_ref is None else med_ref, 0.0,
                passed=faster, rule="median steps (measured: orthogonal tanh) < median steps (theory column: ReLU)",
                kind="experiment"))
    text = "E1 (median steps to the target at each network's best rate): " + "; ".join(
        f"{opt}: " + ", ".join(f"{k} {v['median_tau']}" for k, v in d["networks"].items())
        for opt, d in res.get("by_optimizer", {}).items())
    pv = [f"{opt} vs {other}: p = {c['p_value']:.2g}" for opt, d in res.get("by_optimizer", {}).items()
          for other, c in d["reference_vs"].items() if c.get("p_value") is not None and other.startswith("relu")]
    if pv:
        text += ". One-sided Mann-Whitney p-values that orthogonal tanh at q* = 0.0259 is faster: " + ", ".join(pv)
    comb = res.get("combined", {})
    if comb:
        text += ". Orthogonal tanh at q* = 0.0259 against the others, over the four optimisers (Fisher): " + ", ".join(
            f"{k} p = {v['fisher_p_value']:.2g}" for k, v in comb.items() if v.get("fisher_p_value") is not None)
    return checks, text


def _e2_checks(res: dict) -> tuple[list[Check], str]:
    sp = res.get("spearman_tau_vs", {})
    rho = sp.get("measured_variance")
    text = (f"E2: Spearman correlation of steps-to-target with the measured variance of the eigenvalues of J J^T "
            f"{_fmt(rho)}, with the predicted variance {_fmt(sp.get('predicted_variance'))}, with q* "
            f"{_fmt(sp.get('q_star'))}")
    return [check("E2: learning is slower (more steps) the less isometric the network (Spearman > 0)",
                  1.0, math.nan if rho is None else rho, 1.0, passed=rho is not None and rho > 0,
                  rule="Spearman rank correlation(steps to target, measured variance) > 0", kind="experiment")], text


def _e3_text(res: dict) -> str:
    tab = res.get("table", [])
    return "E3: " + ", ".join(f"L={t['depth']}: eta* L={t['eta_times_depth']:.3g}, tau*/sqrt(L)="
                              f"{_fmt(t['tau_over_sqrt_depth'])}" for t in tab)


def _fmt(x) -> str:
    return "n/a" if x is None else f"{x:.3g}"


def training_part(ctx: Context) -> PartResult:
    """E1 (optimisers x networks), E2 (speed vs isometry), E3 (eta-L collapse)."""
    results = _run_all(ctx)
    checks: list[Check] = []
    figures: list[str] = []
    captions: list[str] = []
    data: dict = {}
    texts = []
    for name, res in results.items():
        figs = _copy_figures(ctx, res)
        figures += figs
        captions += [CAPTIONS[name]] * len(figs)
        rows = list(res.rows)
        data[name] = res.analysis
        data[f"{name}_init"] = _init_table(rows)
        data[f"{name}_runs"] = {"runs": res.sweep.total, "trained_now": len(res.sweep.completed),
                                "reused": res.sweep.skipped, "added_by_learning_rate_extension": res.extended}
        if name == "E1":
            checks += _init_checks(rows)
            c, t = _e1_checks(res.analysis)
        elif name == "E2":
            c, t = _e2_checks(res.analysis)
        else:
            c, t = [], _e3_text(res.analysis)
        checks += c
        texts.append(t)
    sweep = next(iter(results.values())).sweep
    edge = [f"{n}" for n, r in results.items() if _any_at_edge(r.analysis)]
    n_runs = len({r["run_id"] for res in results.values() for r in res.rows})
    text = ("The paper's practical claim (its Fig. 4): among critical networks, the ones closer to dynamical isometry "
            "learn faster; orthogonal tanh at small q* beats ReLU and Gaussian tanh for every optimiser. Its Fig. 6: "
            "the "
            "best learning rate scales like 1/L and the time to target at the best rate like sqrt(L). At this scale "
            f"({experiment_scale(ctx)}: {n_runs} training runs, shared between the experiments where their grids "
            f"overlap, trained in batches of same-shaped networks on {sweep.workers or 'the cluster'}'s workers) the "
            "experiments are far smaller than the paper's (docs/training.md gives every scale). Learning-rate grids are centred on the "
            "measured optimum eta* ~ c/L and extended wherever a best rate fell at a grid edge"
            + (f" (still at an edge after the extension: {', '.join(edge)})" if edge else "")
            + "; the training outcomes are reported as measured, pass or fail. Measured: " + " | ".join(texts))
    return PartResult("training", "Fig. 4 and Fig. 6 analogues: training speed", text, figures, checks, data,
                      captions=captions)


def _any_at_edge(analysis: dict | None) -> bool:
    if not analysis:
        return False
    if "by_optimizer" in analysis:
        return any(v.get("at_edge") for d in analysis["by_optimizer"].values() for v in d["networks"].values())
    return any(r.get("at_edge") for r in analysis.get("table", []))
