"""Turning summary rows into answers: learning-rate tuning and seed-level comparisons.

The time to target ``tau`` of a run is its ``steps_to_target`` (first evaluation step at which the
test accuracy reaches the target); a run that never reaches it (or diverges first) has
``tau = inf``. Comparisons use the median over seeds and a one-sided Mann-Whitney U test on the
seeds' taus (rank based, so ``inf`` is simply the largest rank).
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Mapping

import numpy as np

REFERENCE = ("tanh sw2=1.05", "orthogonal")


def tau(row: Mapping) -> float:
    s = row.get("steps_to_target")
    return math.inf if s is None else float(s)


def _median(v: Iterable[float]) -> float:
    a = np.asarray(list(v), dtype=float)
    return float(np.median(a)) if a.size else math.nan


def _finite_or_none(x: float):
    return x if math.isfinite(x) else None


def best_learning_rates(rows: Iterable[Mapping], keys: tuple[str, ...] = ("label", "weights", "optimizer")) -> dict:
    """Per group (``keys``), the learning rate with the smallest median tau over seeds (ties: the
    higher mean final accuracy, then the smaller rate). Returns {group: learning_rate}."""
    by = defaultdict(lambda: defaultdict(list))
    for r in rows:
        by[tuple(r.get(k) for k in keys)][r["learning_rate"]].append(r)
    best = {}
    for g, lrs in by.items():
        def score(item):
            lr, rs = item
            acc = np.mean([r.get("final_test_accuracy") or 0.0 for r in rs])
            return (_median(tau(r) for r in rs), -acc, lr)

        best[g] = min(lrs.items(), key=score)[0]
    return best


def rates_by_group(rows: Iterable[Mapping], keys: tuple[str, ...] = ("label", "weights", "optimizer")) -> dict:
    """Per group (``keys``), the sorted learning rates it was run at."""
    out = defaultdict(set)
    for r in rows:
        out[tuple(r.get(k) for k in keys)].add(r["learning_rate"])
    return {g: sorted(v) for g, v in out.items()}


def at_edge(rates: list[float], best: float) -> bool:
    """Whether ``best`` is the smallest or largest of ``rates`` (a grid of two or more rates): a
    better rate might lie outside the grid."""
    return len(rates) >= 2 and best in (rates[0], rates[-1])


def at_best_lr(rows: list[Mapping], keys: tuple[str, ...] = ("label", "weights", "optimizer")) -> list[Mapping]:
    """The rows run at their group's best learning rate (see :func:`best_learning_rates`)."""
    best = best_learning_rates(rows, keys)
    return [r for r in rows if best[tuple(r.get(k) for k in keys)] == r["learning_rate"]]


def _mannwhitney_less(a: list[float], b: list[float]) -> float | None:
    """One-sided p-value that taus ``a`` are stochastically smaller than ``b`` (None if degenerate)."""
    if len(a) < 2 or len(b) < 2:
        return None
    from scipy.stats import mannwhitneyu

    big = 10.0 * max([x for x in a + b if math.isfinite(x)] + [1.0])
    a2 = [x if math.isfinite(x) else big for x in a]
    b2 = [x if math.isfinite(x) else big for x in b]
    if len(set(a2 + b2)) == 1:
        return 1.0
    return float(mannwhitneyu(a2, b2, alternative="less", method="exact").pvalue)


def e1_comparison(rows: list[Mapping], reference: tuple[str, str] = REFERENCE) -> dict:
    """Per optimiser: each network's taus over seeds at its best learning rate, and the reference
    (orthogonal tanh at q* = 0.0259) against each other network: median ratio, whether it was
    faster in every seed pair, and the one-sided Mann-Whitney p-value."""
    best_rows = at_best_lr(rows)
    grids = rates_by_group(rows)
    out: dict = {}
    for opt in sorted({r["optimizer"] for r in best_rows}):
        nets = defaultdict(list)
        lr = {}
        for r in best_rows:
            if r["optimizer"] == opt:
                nets[(r["label"], r["weights"])].append(r)
                lr[(r["label"], r["weights"])] = r["learning_rate"]
        table = {}
        for k, rs in sorted(nets.items()):
            t = [tau(r) for r in sorted(rs, key=lambda r: r["seed"])]
            rates = grids[(k[0], k[1], opt)]
            table[f"{k[0]} {k[1]}"] = {
                "learning_rate": lr[k], "rates": rates, "at_edge": at_edge(rates, lr[k]),
                "taus": [_finite_or_none(x) for x in t],
                "median_tau": _finite_or_none(_median(t)),
                "reached": int(sum(math.isfinite(x) for x in t)), "seeds": len(t),
                "mean_final_accuracy": float(np.mean([r.get("final_test_accuracy") or 0.0 for r in rs])),
            }
        comp = {}
        if reference in nets:
            ta = [tau(r) for r in nets[reference]]
            for k, rs in sorted(nets.items()):
                if k == reference:
                    continue
                tb = [tau(r) for r in rs]
                ma, mb = _median(ta), _median(tb)
                comp[f"{k[0]} {k[1]}"] = {
                    "median_ratio": (mb / ma) if math.isfinite(ma) and math.isfinite(mb) and ma > 0 else
                    (math.inf if math.isfinite(ma) else None),
                    "reference_faster_every_seed": bool(max(ta) < min(tb)),
                    "p_value": _mannwhitney_less(ta, tb),
                }
        out[opt] = {"networks": table, "reference_vs": comp}
    return out


def combined_over_optimizers(comparison: dict) -> dict:
    """Fisher's combination of the per-optimiser p-values of each reference-vs-network comparison
    (the optimisers' runs are independent), with how many optimisers had the reference faster in
    every seed pair."""
    from scipy.stats import combine_pvalues

    names = sorted({n for d in comparison.values() for n in d["reference_vs"]})
    out = {}
    for n in names:
        cs = [d["reference_vs"][n] for d in comparison.values() if n in d["reference_vs"]]
        ps = [c["p_value"] for c in cs if c["p_value"] is not None]
        out[n] = {
            "optimizers": len(cs),
            "reference_faster_every_seed": int(sum(c["reference_faster_every_seed"] for c in cs)),
            "fisher_p_value": float(combine_pvalues(ps, method="fisher").pvalue) if len(ps) >= 2 else None,
        }
    return out


def e2_table(rows: list[Mapping]) -> list[dict]:
    """Per (q*, weights) at the best learning rate: median tau, and the mean predicted and measured
    variance of the eigenvalues of J J^T and largest singular value of J."""
    best_rows = at_best_lr(rows, ("q_star", "weights"))
    grids = rates_by_group(rows, ("q_star", "weights"))
    groups = defaultdict(list)
    for r in best_rows:
        groups[(r["q_star"], r["weights"])].append(r)
    out = []
    for (q, w), rs in sorted(groups.items()):
        t = [tau(r) for r in rs]
        m = lambda k: float(np.mean([r[k] for r in rs if r.get(k) is not None])) if any(  # noqa: E731
            r.get(k) is not None for r in rs) else None
        out.append({"q_star": q, "weights": w, "learning_rate": rs[0]["learning_rate"],
                    "at_edge": at_edge(grids[(q, w)], rs[0]["learning_rate"]), "sigma_w2": rs[0].get("sigma_w2"), "median_tau": _finite_or_none(_median(t)),
                    "taus": [_finite_or_none(x) for x in t],
                    **{k: m(k) for k in ("predicted_variance", "measured_variance", "predicted_max_singular_value",
                                         "measured_max_singular_value")}})
    return out


def spearman_tau_vs(table: list[dict], key: str) -> float | None:
    pts = [(r[key], r["median_tau"] if r["median_tau"] is not None else math.inf) for r in table
           if r.get(key) is not None]
    if len(pts) < 3:
        return None
    from scipy.stats import spearmanr

    a, b = np.array(pts, dtype=float).T
    b = np.where(np.isfinite(b), b, 10 * np.nanmax(np.where(np.isfinite(b), b, 1.0)))
    if np.ptp(a) == 0 or np.ptp(b) == 0:
        return None
    return float(spearmanr(a, b).statistic)


def e3_table(rows: list[Mapping]) -> list[dict]:
    """Per depth L: median tau per learning rate, the best rate eta* (:func:`best_learning_rates`
    per depth), and tau*/sqrt(L), eta* L."""
    groups = defaultdict(lambda: defaultdict(list))
    for r in rows:
        groups[r["depth"]][r["learning_rate"]].append(tau(r))
    best = best_learning_rates(rows, ("depth",))
    out = []
    for depth, lrs in sorted(groups.items()):
        med = {lr: _median(t) for lr, t in sorted(lrs.items())}
        lr_best = best[(depth,)]
        tb = med[lr_best]
        out.append({"depth": depth, "best_learning_rate": lr_best, "at_edge": at_edge(sorted(med), lr_best),
                    "tau_at_best": _finite_or_none(tb),
                    "tau_over_sqrt_depth": _finite_or_none(tb / math.sqrt(depth)),
                    "eta_times_depth": lr_best * depth,
                    "median_tau_by_lr": {str(lr): _finite_or_none(v) for lr, v in med.items()}})
    return out


def analyse(experiment: str, rows: list[Mapping]) -> dict:
    """The experiment's analysis as a JSON-able dict."""
    if not rows:
        return {"experiment": experiment, "runs": 0}
    res: dict = {"experiment": experiment, "runs": len(rows),
                 "target_accuracy": rows[0].get("target_accuracy"), "data": rows[0].get("data")}
    if experiment == "E1":
        res["by_optimizer"] = e1_comparison(rows)
        res["combined"] = combined_over_optimizers(res["by_optimizer"])
    elif experiment == "E2":
        t = e2_table(rows)
        res["table"] = t
        res["spearman_tau_vs"] = {k: spearman_tau_vs(t, k) for k in (
            "q_star", "measured_variance", "measured_max_singular_value", "predicted_variance")}
    elif experiment == "E3":
        res["table"] = e3_table(rows)
    elif experiment == "E4":
        from .benchmark import analyse as analyse_e4

        return analyse_e4(rows)
    return res
