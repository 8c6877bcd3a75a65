"""Report part on training (paper Fig. 4 and Fig. 6 analogues), built on :mod:`isometry.experiments`.

The runs live in ``OUT/training/E1`` etc. and are resumable like every training experiment: a run
whose record exists is not trained again.
"""

from __future__ import annotations

import math
import os

import numpy as np

from .._io import atomic_write_bytes
from .core import Check, Context, PartResult, check


def _run(ctx: Context, name: str):
    """Run experiment ``name`` at the report's scale into ``OUT/training/NAME``: (rows, analysis, figures)."""
    from ..experiments import run_experiment

    paper = ctx.scale == "paper"
    res = run_experiment(name, ctx.out / "training" / name, quick=ctx.quick, paper_scale=paper,
                         data_dir=os.environ.get("ISOMETRY_CIFAR_DIR") if paper else None, progress=ctx.progress,
                         **ctx.run_options())
    if not res.complete:
        failed = "; ".join(f"{rid}: {msg}" for rid, msg in list(res.sweep.failed.items())[:3])
        raise RuntimeError(f"{name}: {res.sweep.total - len(res.rows)} of {res.sweep.total} runs did not finish "
                           f"({failed})")
    figures = []
    for src in res.figures:  # the report keeps its own copy beside the other parts' figures
        dst = ctx.figure_path(f"fig_training_{os.path.splitext(os.path.basename(src))[0]}")
        with open(src, "rb") as fh:
            figures.append(atomic_write_bytes(dst, fh.read()))
    return list(res.rows), res.analysis, figures


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
    return [check("at init: measured variance of the eigenvalues of J J^T, orthogonal tanh (q*<=0.03) < orthogonal ReLU",
                  relu_o,
                  tanh_o, 0.0, passed=tanh_o < relu_o, rule="measured (tanh) < theory column (ReLU, also measured)")]


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


def training_part(ctx: Context) -> PartResult:
    """E1 (optimisers x networks), E2 (speed vs isometry), E3 (eta-L collapse)."""
    checks: list[Check] = []
    figures: list[str] = []
    data = {}
    texts = []
    for name in ("E1", "E2", "E3"):
        rows, res, figs = _run(ctx, name)
        figures += figs
        data[name] = res
        data[f"{name}_init"] = _init_table(rows)
        if name == "E1":
            checks += _init_checks(rows)
        if name == "E1":
            for opt, d in res.get("by_optimizer", {}).items():
                ref = d["networks"].get("tanh sw2=1.05 orthogonal")
                for other, comp in d["reference_vs"].items():
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
            texts.append("E1: " + "; ".join(
                f"{opt}: " + ", ".join(f"{k} {v['median_tau']}" for k, v in d["networks"].items())
                for opt, d in res.get("by_optimizer", {}).items()))
        elif name == "E2":
            sp = res.get("spearman_tau_vs", {})
            texts.append(f"E2: Spearman correlation of steps-to-target with the measured variance of the eigenvalues "
                         f"of J J^T {sp.get('measured_variance')}, with q* {sp.get('q_star')}")
            rho = sp.get("measured_variance")
            checks.append(check("E2: learning is slower (more steps) the less isometric the network (Spearman > 0)",
                                1.0, math.nan if rho is None else rho, 1.0, passed=rho is not None and rho > 0,
                                rule="Spearman rank correlation(steps to target, measured variance) > 0",
                                kind="experiment"))
        else:
            tab = res.get("table", [])
            texts.append("E3: " + ", ".join(f"L={t['depth']}: eta* L={t['eta_times_depth']:.3g}, tau*/sqrt(L)="
                                            f"{t['tau_over_sqrt_depth']}" for t in tab))
    text = ("The paper's practical claim (its Fig. 4): among critical networks, the ones closer to dynamical isometry "
            "learn faster; orthogonal tanh at small q* beats ReLU and Gaussian tanh for every optimiser. Its Fig. 6: the "
            "best learning rate scales like 1/L and the time to target at the best rate like sqrt(L). At this scale "
            f"({ctx.scale}) the experiments are far smaller than the paper's (see the README); the training outcomes are "
            "reported as measured, pass or fail. Measured: " + " | ".join(texts))
    return PartResult("training", "Fig. 4 and Fig. 6 analogues: training speed", text, figures, checks, data)
