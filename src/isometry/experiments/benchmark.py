"""E4: this package's initialisations side by side with the initialisers people use (no torch here).

**The question.** The paper's practical claim is that dynamical isometry makes deep networks learn
fast, and the more so the deeper they are. E4 trains the same networks from every initialiser of
:data:`isometry.experiments.INITIALIZERS` (this package's modes of
:func:`isometry.torch.critical_init_`, and PyTorch's default, ``orthogonal_`` with
``calculate_gain``, LSUV, AnyInit and dks's DKS and TAT, each called as its authors document:
:mod:`isometry.experiments.initializers`) and measures the steps to a target test accuracy.

**Networks** (:mod:`isometry.experiments.networks`): fully connected tanh and ReLU networks over
a range of depths, and (``full``, ``paper``) a deep CNN and a residual network. A *cell* is one
(architecture, activation, optimiser, depth); a *group* one cell and one initialiser.

**Protocol.** Every initialiser gets the same learning-rate grid in a cell: the lattice of the
other experiments (:func:`isometry.experiments.grids.lattice_rate`, eta0 = c / L times 10^(k/4))
at k = -2, 0, 2 (a decade, half a decade apart). The rate is chosen per group on a *tuning seed*
(:data:`TUNING_SEED`) that is not reported: the smallest steps to the target, ties broken by the
higher final accuracy, then the smaller rate (:func:`isometry.experiments.analysis.best_learning_rates`);
a chosen rate at an edge of the grid adds the next rate beyond it (half a decade), at most
``max_extra`` per side, and the choice is made again (the rule of the other experiments). Then the
chosen rate is run on the reported seeds 0 .. seeds - 1 (``quick``, ``default``: until the target
or the step budget; ``full``, ``paper``: for the whole step budget), which gives the steps to the target (the first evaluation at or above it; never: the run
did not reach it), the final accuracy, the divergence step and the measured spectrum of the body's
J J^T at initialisation (mean and variance of its eigenvalues: the measured isometry).

**Answers** (:func:`analyse`): per cell, each initialiser's median steps over the reported seeds;
the fastest initialiser; this package's best mode against the best peer (the ratio of their median
steps, one-sided Mann-Whitney p-values both ways over the seeds, and a verdict: a tie when neither
median is more than :data:`TIE_FACTOR` times the other, about one evaluation interval); an
initialiser whose seeds mostly diverged, or reached the target and then fell more than
:data:`COLLAPSE_MARGIN` below it by the end of the budget (``collapsed``), is *unstable* and ranks
after every stable one; and the
effect size against depth: the speed-up of isometric initialisation over the conventional
initialisers at each depth, and whether it grows with depth.

Scales (:data:`SIZES`): ``quick`` (tiny networks, seconds; CI), ``default`` (the sub-grid the
reproduction report runs in about a minute on 2 cores: digits, width 64, depths 32 and 128, tanh
and ReLU, Adam), ``full`` (digits, width 128, depths 8-256, Adam and SGD with momentum, a deep CNN
and a residual network; about two CPU hours) and ``paper`` (mnist1d at the full grid's sizes,
1000 steps; a GPU job).
"""

from __future__ import annotations

import itertools
import math
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from .config import INITIALIZERS, OUR_INITIALIZERS, RunConfig

__all__ = ["SIZES", "E4Sizes", "TUNING_SEED", "TIE_FACTOR", "COLLAPSE_MARGIN", "GROUP", "CELL", "PEERS", "CONVENTIONAL", "e4_grid",
           "next_round", "analyse", "default_q_star", "shaping_feasible", "LR_KS"]

#: The seed the learning rates are tuned on (not reported).
TUNING_SEED = 1000

#: The learning-rate lattice points k of every cell's grid: eta0 x 10^(k/4).
LR_KS = (-2, 0, 2)

#: A tie: neither median steps-to-target exceeds the other by more than this factor (about one
#: interval of the log-spaced evaluation grid: 30 evaluations over 200-1000 steps are 1.2-1.27 apart).
TIE_FACTOR = 1.25

#: A run *collapsed* when it reached the target and ended more than this below it (the test accuracy of
#: a run at the target fluctuates by a few hundredths from one evaluation to the next; a collapse is
#: a fall to a fraction of it).
COLLAPSE_MARGIN = 0.1

#: The fields of one cell, and of one learning-rate group (a cell and an initialiser).
CELL = ("architecture", "activation", "optimizer", "depth")
GROUP = CELL + ("initializer",)

#: The peers, and among them the conventional initialisers (not designed for isometry).
PEERS = tuple(i for i in INITIALIZERS if i not in OUR_INITIALIZERS)
CONVENTIONAL = ("pytorch:default", "pytorch:orthogonal", "lsuv", "anyinit")

#: Short names for tables and legends.
LABELS = {"isometry:critical": "isometry critical", "isometry:dks": "isometry DKS", "isometry:tat": "isometry TAT",
          "pytorch:default": "PyTorch default", "pytorch:orthogonal": "orthogonal_ + gain", "lsuv": "LSUV",
          "anyinit": "AnyInit", "dks:dks": "dks DKS", "dks:tat": "dks TAT"}


@dataclass(frozen=True)
class E4Sizes:
    """The sizes of one scale of E4: ``mlp_depths`` of the fully connected networks, ``conv``: the
    (architecture, depth) of the convolutional networks, ``conv_width`` their channels;
    ``to_budget``: the reported runs train for the whole step budget (their final accuracy is then
    the accuracy after ``steps``); otherwise they stop at the target like the tuning runs (the final
    accuracy of a run that reached the target is then its accuracy there)."""

    data: str
    width: int
    batch_size: int
    steps: int
    n_evals: int
    seeds: int
    jacobian_inputs: int
    mlp_depths: tuple[int, ...]
    activations: tuple[str, ...]
    optimizers: tuple[str, ...]
    conv: tuple[tuple[str, int], ...] = ()
    conv_width: int = 16
    target_accuracy: float | None = None
    to_budget: bool = True


SIZES = {
    "quick": E4Sizes("digits", 16, 32, 60, 12, 3, 1, (8, 16), ("tanh", "relu"), ("adam",), target_accuracy=0.7,
                     to_budget=False),
    "default": E4Sizes("digits", 64, 32, 150, 20, 3, 2, (32, 128), ("tanh", "relu"), ("adam",), to_budget=False),
    "full": E4Sizes("digits", 128, 64, 300, 30, 3, 2, (8, 32, 128, 256), ("tanh", "relu"), ("adam", "momentum"),
                    conv=(("cnn", 32), ("resnet", 32)), conv_width=16),
    "paper": E4Sizes("mnist1d", 128, 128, 1000, 40, 5, 2, (8, 32, 128, 256), ("tanh", "relu"), ("adam", "momentum"),
                     conv=(("cnn", 32), ("resnet", 32)), conv_width=64),
}


def default_q_star(activation: str, depth: int) -> float:
    """The q* :func:`isometry.torch.critical_init_` chooses by default for a body of ``depth``
    critical layers (:func:`isometry.torch.choose_critical_point`): 1 for a positively homogeneous
    unit, else the double-scaling q* whose orthogonal-weight variance L (mu2/mu1^2 - 1) is 1/4."""
    from ..activations import get_activation
    from ..spectrum import q_star_for_variance

    act = get_activation(activation)
    if act.homogeneous:
        return 1.0
    return float(f"{q_star_for_variance(act, depth, 0.25):.6g}")


def shaping_feasible(initializer: str, activation: str, architecture: str, depth: int) -> str | None:
    """None when the kernel-shaped initialiser (``isometry:dks|tat``, ``dks:dks|tat``) can shape this
    network, else the reason (e.g. TAT's eta = 0.9 is out of reach for a shallow ReLU network);
    None for every other initialiser. Decided by this package's transforms (which match dks's)."""
    mode = initializer.split(":", 1)[1] if ":" in initializer else ""
    if mode not in ("dks", "tat"):
        return None
    from ..shaping import Chain, ResidualChain, dks_transform, tat_transform
    from .config import SHORTCUT_WEIGHT

    subnet = ResidualChain(depth, SHORTCUT_WEIGHT) if architecture == "resnet" else Chain(depth)
    try:
        (tat_transform if mode == "tat" else dks_transform)(activation, subnet=subnet)
    except ValueError as exc:
        return str(exc)
    return None


def _rates(optimizer: str, depth: int) -> tuple[float, ...]:
    from .grids import lattice_rate

    return tuple(lattice_rate(optimizer, depth, k) for k in LR_KS)


def e4_grid(scale: str = "default", *, data: str | None = None, data_dir: str | None = None,
            seeds: int | None = None, steps: int | None = None, target_accuracy: float | None = None,
            device: str = "auto") -> list[RunConfig]:
    """The tuning runs of E4 at ``scale`` (every group at every rate of its grid, on
    :data:`TUNING_SEED`, stopping at the target); :func:`next_round` adds the extensions and the
    reported seeds. Groups a kernel-shaped initialiser cannot shape (:func:`shaping_feasible`) are
    left out. ``seeds`` (the reported seeds) is not part of these configurations; see
    :func:`next_round`."""
    from .grids import TARGETS

    z = SIZES[scale]
    data = data or z.data
    target = target_accuracy if target_accuracy is not None else (z.target_accuracy if data == z.data and
                                                                  z.target_accuracy is not None else TARGETS[data])
    n_steps = z.steps if steps is None else steps
    cells = [("mlp", d, z.width) for d in z.mlp_depths] + [(a, d, z.conv_width) for a, d in z.conv]
    out = []
    for (arch, depth, width), act, opt in itertools.product(cells, z.activations, z.optimizers):
        q = default_q_star(act, depth)
        for init in INITIALIZERS:
            if shaping_feasible(init, act, arch, depth) is not None:
                continue
            for lr in _rates(opt, depth):
                out.append(RunConfig(
                    experiment="E4", label=init, initializer=init, normalize_input=init in OUR_INITIALIZERS,
                    architecture=arch, activation=act, weights="orthogonal", q_star=q, depth=depth, width=width,
                    optimizer=opt, learning_rate=lr, batch_size=z.batch_size, steps=n_steps, n_evals=z.n_evals,
                    target_accuracy=target, stop_at_target=True, seed=TUNING_SEED, data=data, data_dir=data_dir,
                    jacobian_inputs=z.jacobian_inputs, device=device))
    return out


def excluded(scale: str = "default") -> list[dict]:
    """The groups :func:`e4_grid` leaves out at ``scale``, with the reason."""
    z = SIZES[scale]
    cells = [("mlp", d) for d in z.mlp_depths] + list(z.conv)
    out = []
    for (arch, depth), act, opt in itertools.product(cells, z.activations, z.optimizers):
        for init in INITIALIZERS:
            why = shaping_feasible(init, act, arch, depth)
            if why is not None:
                out.append({"architecture": arch, "activation": act, "optimizer": opt, "depth": depth,
                            "initializer": init, "reason": why})
    return out


def _group(c) -> tuple:
    return tuple(getattr(c, k) if not isinstance(c, Mapping) else c.get(k) for k in GROUP)


def next_round(configs: Sequence[RunConfig], rows: Sequence[Mapping], initial: Sequence[RunConfig] | None = None,
               *, seeds: int = 3, max_extra: int = 2, to_budget: bool = True) -> list[RunConfig]:
    """The configurations E4 runs next, given the finished ``rows`` of ``configs``: first the
    learning-rate extensions of the tuning runs (:func:`isometry.experiments.extend_learning_rates`
    on the tuning seed; ``initial``: the grid before any extension), and once no group's chosen
    rate needs one, each group's chosen rate on the reported seeds 0 .. ``seeds`` - 1 (for the whole
    step budget when ``to_budget``, else stopping at the target). [] when everything has been run."""
    from .analysis import best_learning_rates
    from .grids import extend_learning_rates

    tuning = [c for c in configs if c.seed == TUNING_SEED]
    tuning_rows = [r for r in rows if r.get("seed") == TUNING_SEED]
    new = extend_learning_rates("E4", tuning, tuning_rows, initial=initial, max_extra=max_extra)
    if new:
        return new
    best = best_learning_rates(tuning_rows, GROUP)
    have = {c.run_id for c in configs}
    out = []
    for c in sorted(tuning, key=lambda c: (str(_group(c)), c.learning_rate)):
        if best.get(_group(c)) != c.learning_rate:
            continue
        for s in range(seeds):
            r = c.replace(seed=s, stop_at_target=not to_budget)
            if r.run_id not in have:
                have.add(r.run_id)
                out.append(r)
    return out


# ------------------------------------------------------------------------------ analysis
def _tau(r: Mapping) -> float:
    s = r.get("steps_to_target")
    return math.inf if s is None else float(s)


def _median(v) -> float:
    a = np.asarray(list(v), dtype=float)
    return float(np.median(a)) if a.size else math.nan


def _finite(x):
    return x if x is not None and math.isfinite(x) else None


def _ratio(num: float, den: float, budget: float) -> tuple[float | None, bool]:
    """(num / den with a never-reached median counted as the step budget, whether that is a bound):
    num censored -> a lower bound; den censored -> an upper bound; both -> undefined (None)."""
    n_c, d_c = not math.isfinite(num), not math.isfinite(den)
    if n_c and d_c:
        return None, True
    n = budget if n_c else num
    d = budget if d_c else den
    if d <= 0:
        return None, False
    return n / d, n_c or d_c


def _mw_less(a: list[float], b: list[float]) -> float | None:
    from .analysis import _mannwhitney_less

    return _mannwhitney_less(a, b)


def normalised_variance(variance: float | None, mean: float | None) -> float | None:
    """Var / E^2 of the eigenvalues of J J^T from their measured variance and mean, or None where
    float64 cannot tell it: no measurement, a mean <= 0, or a gradient so vanished (a deep network at
    PyTorch's default: means of 1e-200 and below) that the variance underflowed to 0 or the ratio
    overflows. Computed as (Var / E) / E, so that E^2 underflowing alone does not divide by zero."""
    if variance is None or mean is None or not (mean > 0) or not math.isfinite(variance):
        return None
    if variance == 0.0 and mean < 1e-100:  # the variance underflowed: its ratio to E^2 is unknown
        return None
    x = (variance / mean) / mean
    return x if math.isfinite(x) else None


def _entry(init: str, rs: list[Mapping], lr: float, rates: list[float]) -> dict:
    from .analysis import at_edge

    rs = sorted(rs, key=lambda r: r["seed"])
    t = [_tau(r) for r in rs]
    finals = [r.get("final_test_accuracy") for r in rs if r.get("final_test_accuracy") is not None]

    def med(key):
        v = [r[key] for r in rs if r.get(key) is not None]
        return float(np.median(v)) if v else None

    norm = [x for x in (normalised_variance(r.get("measured_variance"), r.get("measured_mean_eigenvalue"))
                        for r in rs) if x is not None]

    target = rs[0].get("target_accuracy") if rs else None
    collapsed = sum(1 for r in rs if r.get("steps_to_target") is not None and target is not None
                    and r.get("final_test_accuracy") is not None
                    and r["final_test_accuracy"] < target - COLLAPSE_MARGIN)
    diverged = sum(r.get("diverged_at") is not None for r in rs)
    return {
        "initializer": init, "label": LABELS.get(init, init), "ours": init in OUR_INITIALIZERS,
        "learning_rate": lr, "rates": rates, "at_edge": at_edge(rates, lr),
        "taus": [_finite(x) for x in t], "median_tau": _finite(_median(t)) if t else None,
        "reached": int(sum(math.isfinite(x) for x in t)), "seeds": len(t),
        "diverged": int(diverged), "collapsed": int(collapsed), "unstable": 2 * (collapsed + diverged) > len(rs),
        "final_accuracy": float(np.mean(finals)) if finals else None,
        "final_accuracy_sd": float(np.std(finals, ddof=1)) if len(finals) > 1 else None,
        "measured_mean": med("measured_mean_eigenvalue"), "measured_variance": med("measured_variance"),
        "measured_normalised_variance": float(np.median(norm)) if norm else None,
        "predicted_mean": med("predicted_mean"), "predicted_variance": med("predicted_variance"),
    }


def _rank_key(e: dict) -> tuple:
    """Fastest first: stable before unstable (most seeds diverged, or reached the target and ended
    below it: ``collapsed``), then the median steps, then the higher final accuracy."""
    m = e["median_tau"]
    return (bool(e.get("unstable")), math.inf if m is None else m, -(e["final_accuracy"] or 0.0))


def _compare(ours: dict, peer: dict, budget: float) -> dict:
    """Ours against a peer over the reported seeds."""
    a = [math.inf if x is None else x for x in ours["taus"]]
    b = [math.inf if x is None else x for x in peer["taus"]]
    ma, mb = _median(a), _median(b)
    ratio, bound = _ratio(mb, ma, budget)
    if ratio is None and bound:  # neither reached the target: compare the final accuracy
        da = (ours["final_accuracy"] or 0.0) - (peer["final_accuracy"] or 0.0)
        verdict = "tie" if abs(da) < 0.02 else ("ours faster" if da > 0 else "peer faster")
    elif ratio is None:
        verdict = "tie"
    elif ratio > TIE_FACTOR:
        verdict = "ours faster"
    elif ratio < 1.0 / TIE_FACTOR:
        verdict = "peer faster"
    else:
        verdict = "tie"
    return {"ours": ours["initializer"], "peer": peer["initializer"], "ratio": ratio, "ratio_is_bound": bound,
            "p_ours_faster": _mw_less(a, b), "p_peer_faster": _mw_less(b, a), "verdict": verdict,
            "ties_or_beats": verdict in ("tie", "ours faster")}


def analyse(rows: Sequence[Mapping]) -> dict:
    """E4's answers from its summary rows (tuning and reported runs).

    Returns ``cells`` (one per cell, deepest last within an architecture/activation/optimiser:
    ``entries`` per initialiser, as :func:`_entry`; ``fastest``; ``ours_best``, ``peer_best`` and
    ``comparison`` (:func:`_compare`)), ``effect`` (per architecture/activation/optimiser and
    depth: the speed-up of this package's best mode and of ``isometry:critical`` over the best
    conventional initialiser and over PyTorch's default; ``grows``: the speed-up over the best
    conventional initialiser at the deepest depth exceeds the one at the shallowest), and
    ``done`` (this package's best mode ties or beats the best peer in every cell of depth >= 32).
    """
    from .analysis import best_learning_rates, rates_by_group

    rows = list(rows)
    tuning = [r for r in rows if r.get("seed") == TUNING_SEED]
    reported = [r for r in rows if r.get("seed") != TUNING_SEED]
    res: dict = {"experiment": "E4", "runs": len(rows), "tuning_runs": len(tuning), "reported_runs": len(reported),
                 "target_accuracy": rows[0].get("target_accuracy") if rows else None,
                 "data": rows[0].get("data") if rows else None, "tuning_seed": TUNING_SEED, "tie_factor": TIE_FACTOR,
                 "widths": {a: sorted({r.get("width") for r in rows if r.get("architecture", "mlp") == a})
                            for a in sorted({r.get("architecture", "mlp") for r in rows})},
                 "batch_size": sorted({r.get("batch_size") for r in rows}),
                 "seeds": sorted({r.get("seed") for r in reported})}
    if not rows:
        return res | {"cells": [], "effect": [], "done": None}
    best = best_learning_rates(tuning, GROUP)
    grids = rates_by_group(tuning, GROUP)
    by_group = defaultdict(list)
    for r in reported:
        g = _group(r)
        if best.get(g) == r["learning_rate"]:
            by_group[g].append(r)
    cells = defaultdict(dict)
    budgets = {}
    for g, rs in by_group.items():
        cells[g[:-1]][g[-1]] = _entry(g[-1], rs, best[g], grids[g])
        budgets[g[:-1]] = max(int(r.get("steps") or 0) for r in rs)
    out = []
    for cell in sorted(cells, key=lambda c: (c[0], c[1], c[2], c[3])):
        entries = sorted(cells[cell].values(), key=lambda e: INITIALIZERS.index(e["initializer"]))
        ranked = sorted(entries, key=_rank_key)
        ours = [e for e in ranked if e["ours"]]
        peers = [e for e in ranked if not e["ours"]]
        d = dict(zip(CELL, cell)) | {"steps": budgets[cell], "entries": entries, "fastest": ranked[0]["initializer"]}
        if ours and peers:
            d["ours_best"], d["peer_best"] = ours[0]["initializer"], peers[0]["initializer"]
            d["comparison"] = _compare(ours[0], peers[0], budgets[cell])
        out.append(d)
    res["cells"] = out
    res["effect"] = _effect(out)
    deep = [c for c in out if c["depth"] >= 32 and "comparison" in c]
    res["done"] = {"cells": len(deep), "ties_or_beats": sum(c["comparison"]["ties_or_beats"] for c in deep),
                   "passed": bool(deep) and all(c["comparison"]["ties_or_beats"] for c in deep)}
    return res


def _effect(cells: list[dict]) -> list[dict]:
    """Speed-ups over depth per (architecture, activation, optimiser)."""
    lines = defaultdict(list)
    for c in cells:
        lines[(c["architecture"], c["activation"], c["optimizer"])].append(c)
    out = []
    for key, cs in sorted(lines.items()):
        pts = []
        for c in sorted(cs, key=lambda c: c["depth"]):
            e = {x["initializer"]: x for x in c["entries"]}
            budget = c["steps"]
            med = lambda name: math.inf if name not in e or e[name]["median_tau"] is None else e[name]["median_tau"]  # noqa: E731
            conv = [n for n in CONVENTIONAL if n in e]
            conv_best = min(conv, key=lambda n: _rank_key(e[n])) if conv else None
            ours = [n for n in OUR_INITIALIZERS if n in e]
            ours_best = min(ours, key=lambda n: _rank_key(e[n])) if ours else None
            p = {"depth": c["depth"], "conventional_best": conv_best, "ours_best": ours_best}
            for name, who in (("best", ours_best), ("critical", "isometry:critical" if "isometry:critical" in e else None)):
                for vs, other in (("conventional", conv_best), ("default", "pytorch:default" if "pytorch:default" in e
                                                                      else None)):
                    if who is None or other is None:
                        r, b = None, False
                    else:
                        r, b = _ratio(med(other), med(who), budget)
                    p[f"speedup_{name}_vs_{vs}"] = r
                    p[f"speedup_{name}_vs_{vs}_is_bound"] = b
                    if who is not None and other is not None:
                        p[f"accuracy_gain_{name}_vs_{vs}"] = (e[who]["final_accuracy"] or 0.0) - (
                            e[other]["final_accuracy"] or 0.0)
            pts.append(p)
        out.append(dict(zip(("architecture", "activation", "optimizer"), key))
                   | {"points": pts, "grows": _grows(pts, "best"), "grows_critical": _grows(pts, "critical")})
    return out


def _grows(pts: list[dict], who: str) -> bool | None:
    """Whether the advantage of ``who`` (``best``: this package's best mode; ``critical``) over the best
    conventional initialiser is larger at the deepest depth than at the shallowest: the speed-up
    when it is measured at both depths (or the deepest one's lower bound already exceeds the
    shallowest), else (a median never reached, so the speed-ups are bounds that cannot be compared)
    the gap in final test accuracy. None: one depth, or nothing to compare."""
    if len(pts) < 2:
        return None
    first, last = pts[0], pts[-1]
    a, b = first.get(f"speedup_{who}_vs_conventional"), last.get(f"speedup_{who}_vs_conventional")
    a_bound, b_bound = first.get(f"speedup_{who}_vs_conventional_is_bound"), last.get(
        f"speedup_{who}_vs_conventional_is_bound")
    if a is not None and b is not None and not a_bound and (not b_bound or b > a):
        return b > a
    ga, gb = first.get(f"accuracy_gain_{who}_vs_conventional"), last.get(f"accuracy_gain_{who}_vs_conventional")
    if ga is not None and gb is not None:
        return gb > ga
    return None
    first, last = pts[0], pts[-1]
    a, b = first.get(f"speedup_{who}_vs_conventional"), last.get(f"speedup_{who}_vs_conventional")
    ga, gb = first.get(f"accuracy_gain_{who}_vs_conventional"), last.get(f"accuracy_gain_{who}_vs_conventional")
    if a is not None and b is not None:
        return b > a
    if b is None and a is not None and ga is not None and gb is not None:
        return gb > ga
    return None


#: Columns of the E4 table (:func:`table_rows`).
TABLE_KEYS = ("architecture", "activation", "optimizer", "depth", "initializer", "learning_rate", "at_edge",
              "median_steps", "steps_per_seed", "reached", "diverged", "collapsed", "final_accuracy", "final_accuracy_sd",
              "measured_mean", "measured_normalised_variance", "predicted_variance", "fastest", "verdict")


def table_rows(analysis: Mapping) -> list[dict]:
    """One row per cell and initialiser of :func:`analyse`'s result (keys :data:`TABLE_KEYS`):
    ``verdict`` is the cell's comparison on this package's best mode's and the best peer's rows."""
    out = []
    for c in analysis.get("cells", []):
        cmp_ = c.get("comparison") or {}
        for e in c["entries"]:
            verdict = cmp_.get("verdict") if e["initializer"] in (cmp_.get("ours"), cmp_.get("peer")) else None
            out.append({"architecture": c["architecture"], "activation": c["activation"], "optimizer": c["optimizer"],
                        "depth": c["depth"], "initializer": e["initializer"], "learning_rate": e["learning_rate"],
                        "at_edge": e["at_edge"], "median_steps": e["median_tau"],
                        "steps_per_seed": e["taus"], "reached": f"{e['reached']}/{e['seeds']}",
                        "diverged": e["diverged"], "collapsed": e["collapsed"], "final_accuracy": e["final_accuracy"],
                        "final_accuracy_sd": e["final_accuracy_sd"], "measured_mean": e["measured_mean"],
                        "measured_normalised_variance": e["measured_normalised_variance"],
                        "predicted_variance": e["predicted_variance"], "fastest": c["fastest"] == e["initializer"],
                        "verdict": verdict})
    return out


def markdown_table(analysis: Mapping) -> str:
    """The E4 table in Markdown: per cell (architecture, activation, optimiser, depth), each
    initialiser's learning rate, steps to the target per reported seed (- : never) and their median,
    mean final accuracy, and the measured mean and normalised variance of the body's J J^T at
    initialisation; the fastest in bold; then the comparison of this package's best mode with the
    best peer."""
    def g(x, fmt="{:.3g}"):
        return "-" if x is None else fmt.format(x)

    lines = [f"E4: steps to {analysis.get('target_accuracy')} test accuracy on {analysis.get('data')}; rate tuned on "
             f"seed {analysis.get('tuning_seed')}; steps per reported seed (-: never reached)", "",
             "| network | L | initialiser | lr | steps (seeds) | median | final acc. | mean eig. JJ^T | var/mean^2 |",
             "|---|---|---|---|---|---|---|---|---|"]
    for c in analysis.get("cells", []):
        net = f"{ {'mlp': 'MLP', 'cnn': 'CNN', 'resnet': 'ResNet'}.get(c['architecture'], c['architecture'])} " \
              f"{c['activation']} {c['optimizer']}"
        for e in c["entries"]:
            name = LABELS.get(e["initializer"], e["initializer"])
            if c["fastest"] == e["initializer"]:
                name = f"**{name}**"
            seeds = ", ".join("-" if t is None else f"{t:g}" for t in e["taus"])
            acc = "-" if e["final_accuracy"] is None else f"{e['final_accuracy']:.3f}"
            flag = ", ".join(x for x in (f"{e['diverged']} diverged" if e["diverged"] else "",
                                         f"{e['collapsed']} collapsed" if e["collapsed"] else "") if x)
            lines.append(f"| {net} | {c['depth']} | {name} | {e['learning_rate']:.3g}{' (edge)' if e['at_edge'] else ''}"
                         f" | {seeds} | {g(e['median_tau'], '{:g}')}{f' ({flag})' if flag else ''} | {acc} | "
                         f"{g(e['measured_mean'])} | {g(e['measured_normalised_variance'])} |")
    lines.append("")
    for c in analysis.get("cells", []):
        cmp_ = c.get("comparison")
        if not cmp_:
            continue
        r = cmp_["ratio"]
        ratio = "n/a" if r is None else (f"{r:.2g}" + (" (bound)" if cmp_["ratio_is_bound"] else ""))
        lines.append(f"- {c['architecture']} {c['activation']} {c['optimizer']} L={c['depth']}: "
                     f"{LABELS[cmp_['ours']]} vs {LABELS[cmp_['peer']]}: {cmp_['verdict']} (peer's median steps / "
                     f"ours {ratio}; Mann-Whitney p = {g(cmp_['p_ours_faster'], '{:.2g}')} ours faster, "
                     f"{g(cmp_['p_peer_faster'], '{:.2g}')} peer faster)")
    return "\n".join(lines) + "\n"
