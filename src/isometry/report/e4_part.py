"""Report part on the initialiser benchmark (E4, :mod:`isometry.experiments.benchmark`).

This package's initialisations (critical orthogonal, and the kernel-shaped DKS and TAT modes of
:func:`isometry.torch.critical_init_`, each with per-example input normalisation) against PyTorch's
default, ``orthogonal_`` with ``calculate_gain``, LSUV, AnyInit and dks's DKS and TAT, on the same
networks and learning-rate grids, the rate tuned on a seed that is not reported. The runs live in
``OUT/e4`` (grid, records in ``OUT/e4/runs``, summary, analysis and figure), resumable like every
training experiment. The part states, per depth and activation, which initialiser was fastest and
by how much, compares this package's best mode with the best peer (Mann-Whitney over the reported
seeds), and asks whether the advantage of isometric initialisation grows with depth. Its checks
are of kind ``"experiment"``: reported as measured, pass or fail.
"""

from __future__ import annotations

import math
import os

from .._io import atomic_write_bytes
from .core import Check, Context, PartResult, check
from .training_parts import experiment_scale

CAPTION = ("E4. (a) Median steps to the target test accuracy against depth, one line per initialiser (solid: this "
           "package's modes; dashed: the peers), each at its learning rate tuned on a seed that is not reported; bars: "
           "range over the reported seeds; x on the top row: a seed that never reached the target. (b) The mean and "
           "(c) the normalised variance (var/mean^2) of the eigenvalues of the body's J J^T at initialisation, medians "
           "over the seeds: dynamical isometry is mean 1 and spread 0. Look for the conventional initialisers (PyTorch "
           "default, orthogonal_ + gain, LSUV, AnyInit) whose mean drifts away from 1 and whose spread grows with depth "
           "climbing to the 'not reached' row, while the initialisations that keep J near isometry stay fast at every "
           "depth; and for how this package's modes sit against dks's.")


def _steps(x) -> str:
    return "never" if x is None else f"{x:g}"


def _ratio_text(c: dict) -> str:
    r = c["ratio"]
    if r is None:
        return "neither reached the target"
    if c["ratio_is_bound"]:
        return f"{'>=' if r >= 1 else '<='} {r:.2g}x (a median is the step budget: the run never reached the target)"
    return f"{r:.2g}x"


def _p(x) -> str:
    return "n/a" if x is None else f"{x:.2g}"


def _cell_name(c: dict) -> str:
    arch = {"mlp": "MLP", "cnn": "CNN", "resnet": "ResNet"}.get(c["architecture"], c["architecture"])
    return f"{arch} {c['activation']} {c['optimizer']} L={c['depth']}"


def _cell_text(c: dict, labels: dict) -> str:
    e = {x["initializer"]: x for x in c["entries"]}
    f = e[c["fastest"]]
    line = (f"{_cell_name(c)}: fastest {labels[c['fastest']]} (median {_steps(f['median_tau'])} steps, final accuracy "
            f"{f['final_accuracy']:.3f})")
    if "comparison" in c:
        cmp_ = c["comparison"]
        o, p = e[cmp_["ours"]], e[cmp_["peer"]]
        line += (f"; this package's best, {labels[cmp_['ours']]} ({_steps(o['median_tau'])} steps, accuracy "
                 f"{o['final_accuracy']:.3f}), against the best peer, {labels[cmp_['peer']]} ({_steps(p['median_tau'])} "
                 f"steps, accuracy {p['final_accuracy']:.3f}): {cmp_['verdict']}, the peer's median steps over ours "
                 f"{_ratio_text(cmp_)}, one-sided Mann-Whitney p = {_p(cmp_['p_ours_faster'])} that ours is faster, "
                 f"{_p(cmp_['p_peer_faster'])} that the peer is")
        if cmp_["verdict"] == "peer faster":
            line += f" (the peer wins here, by {_ratio_text({**cmp_, 'ratio': 1 / cmp_['ratio']}) if cmp_['ratio'] else 'accuracy'})"
    return line


def _speedup(p: dict, who: str) -> str:
    r, b = p.get(f"speedup_{who}_vs_conventional"), p.get(f"speedup_{who}_vs_conventional_is_bound")
    return "n/a (neither reached the target)" if r is None else f"{'>= ' if b and r >= 1 else ''}{r:.2g}x"


_GROWS = {True: "grows with depth", False: "does not grow with depth",
          None: "cannot be told (one depth, or no target reached at the shallowest)"}


def _effect_text(eff: dict, labels: dict) -> str:
    pts = []
    for p in eff["points"]:
        conv = labels.get(p["conventional_best"], p["conventional_best"])
        gain = p.get("accuracy_gain_critical_vs_conventional")
        pts.append(f"L={p['depth']}: best mode ({labels.get(p['ours_best'], p['ours_best'])}) {_speedup(p, 'best')}, "
                   f"critical {_speedup(p, 'critical')}"
                   + (f" (final accuracy {gain:+.2f})" if gain is not None else "") + f" over {conv}")
    return (f"{eff['architecture']} {eff['activation']} {eff['optimizer']}: speed-up over the best conventional "
            f"initialiser " + "; ".join(pts) + f": the advantage of this package's best mode {_GROWS[eff['grows']]}, "
            f"that of the critical mode {_GROWS[eff.get('grows_critical')]}")


def _isometry_note(cells: list[dict], labels: dict) -> str:
    """Which initialiser started the most isometric (smallest measured var/mean^2 of J J^T, mean within a
    factor 2 of 1) against which was fastest, per cell: isometry at initialisation is not the whole story
    when they differ."""
    parts = []
    for c in cells:
        ok = [e for e in c["entries"] if e["measured_normalised_variance"] is not None and e["measured_mean"]
              and 0.5 <= e["measured_mean"] <= 2.0]
        if not ok:
            continue
        iso = min(ok, key=lambda e: e["measured_normalised_variance"])
        same = iso["initializer"] == c["fastest"]
        parts.append(f"{_cell_name(c)}: most isometric {labels[iso['initializer']]} (var/mean^2 "
                     f"{iso['measured_normalised_variance']:.2g}, {_steps(iso['median_tau'])} steps)"
                     + ("" if same else f", fastest {labels[c['fastest']]}"))
    if not parts:
        return ""
    return ("Isometry at initialisation against speed (the most isometric start among those with mean eigenvalue "
            "within a factor 2 of 1): " + "; ".join(parts) + ".")


def _checks(analysis: dict, labels: dict) -> list[Check]:
    out = []
    for c in analysis["cells"]:
        if c["depth"] < 32 or "comparison" not in c:
            continue
        cmp_ = c["comparison"]
        e = {x["initializer"]: x for x in c["entries"]}
        peer, ours = e[cmp_["peer"]]["median_tau"], e[cmp_["ours"]]["median_tau"]
        out.append(check(
            f"E4 {_cell_name(c)}: this package's best mode ({labels[cmp_['ours']]}) reaches the target as fast as the "
            f"best peer ({labels[cmp_['peer']]}) or faster",
            math.nan if peer is None else peer, math.nan if ours is None else ours, analysis["tie_factor"],
            passed=cmp_["ties_or_beats"], kind="experiment",
            rule=f"median steps (measured: ours) <= {analysis['tie_factor']:g} x median steps (theory column: best peer); "
                 "neither reached: final accuracy at most 0.02 lower"))
    for eff in analysis["effect"]:
        if len(eff["points"]) < 2:
            continue
        a, b = eff["points"][0], eff["points"][-1]
        ra, rb = a.get("speedup_best_vs_conventional"), b.get("speedup_best_vs_conventional")
        out.append(check(
            f"E4 {eff['architecture']} {eff['activation']} {eff['optimizer']}: the speed-up of this package's best mode "
            f"over the best conventional initialiser is larger at L={b['depth']} than at L={a['depth']} (the paper: "
            "isometry matters more the deeper the network)",
            math.nan if ra is None else ra, math.nan if rb is None else rb, 0.0, passed=bool(eff["grows"]),
            kind="experiment",
            rule="speed-up at the deepest (measured) > speed-up at the shallowest (theory column), a median never "
                 "reached counting as the step budget; where that makes them bounds that cannot be compared: the gap in "
                 "final test accuracy is larger at the deepest"))
    return out


def e4_part(ctx: Context) -> PartResult:
    """E4: steps to target per initialiser, depth, activation; ours against the best peer; effect vs depth."""
    from ..experiments import run_experiment
    from ..experiments.benchmark import LABELS, SIZES, excluded

    scale = experiment_scale(ctx)
    res = run_experiment("E4", ctx.out / "e4", scale=scale, progress=ctx.track if ctx.progress else False,
                         status=lambda line: ctx.status(f"[e4] {line}"), **ctx.run_options())
    if not res.complete:
        failed = "; ".join(f"{rid}: {msg}" for rid, msg in list(res.sweep.failed.items())[:3])
        raise RuntimeError(f"E4: {res.sweep.total - len(res.rows)} of {res.sweep.total} runs did not finish ({failed})")
    analysis = res.analysis
    figures = []
    for src in res.figures:
        with open(src, "rb") as fh:
            figures.append(atomic_write_bytes(ctx.figure_path("fig_e4_steps_vs_depth"), fh.read()))
    labels = dict(LABELS)
    z = SIZES[scale]
    cells = analysis["cells"]
    wins = [c for c in cells if c.get("comparison", {}).get("verdict") == "peer faster"]
    done = analysis["done"]
    skipped = excluded(scale)
    text = (
        "The paper's practical claim is that dynamical isometry speeds up learning, the more so the deeper the network. "
        "E4 puts this package's initialisations (critical orthogonal at the double-scaling q*, and the kernel-shaped DKS "
        "and TAT modes, each with per-example input normalisation) beside PyTorch's default, orthogonal_ with "
        "calculate_gain, LSUV 0.3.0, AnyInit 0.4.0 and dks 0.1.2's DKS and TAT, each called as its authors document "
        "(the call is in every run record's initializer field). Every initialiser gets the same learning-rate grid, "
        "extended wherever the chosen rate sat at its edge, and the rate is chosen on a tuning seed that is not "
        "reported; the reported seeds then train at it"
        + (" for the whole step budget" if z.to_budget else " until the target (or the step budget)")
        + ". For ReLU networks dks's rows use its Leaky "
        "ReLU (dks supports ReLU only partially under DKS and not under TAT), and this package's TAT mode shapes a "
        "Leaky ReLU too.\n\n"
        f"At this scale ({scale}): {z.data}, fully connected width {z.width}, depths "
        f"{', '.join(map(str, z.mlp_depths))}"
        + (f", {', '.join(f'{a} at L={d}' for a, d in z.conv)} with {z.conv_width} channels" if z.conv else "")
        + f", {', '.join(z.activations)}, {', '.join(z.optimizers)}, batch {z.batch_size}, {z.steps} steps, target "
          f"{analysis['target_accuracy']}, {len(analysis['seeds'])} reported seeds; {res.sweep.total} runs "
          f"({analysis['tuning_runs']} tuning, {analysis['reported_runs']} reported)."
        + (" Not run (the shaping cannot reach its target): " + "; ".join(
            f"{labels[s['initializer']]} at {s['architecture']} {s['activation']} L={s['depth']}" for s in skipped)
           + "." if skipped else "")
        + "\n\nMeasured, per cell:\n\n" + "\n\n".join(_cell_text(c, labels) + "." for c in cells)
        + "\n\nEffect of depth:\n\n" + "\n\n".join(_effect_text(e, labels) + "." for e in analysis["effect"])
        + ((f"\n\nThis package's best mode tied or beat the best peer in {done['ties_or_beats']} of {done['cells']} "
            f"cells of depth >= 32" + (", and lost in: " + "; ".join(
                f"{_cell_name(c)} to {labels[c['comparison']['peer']]}" for c in wins) if wins else "") + ".\n\n")
           if done["cells"] else "\n\nNo cell at this scale has depth >= 32, where the comparison with the best peer is "
           "checked (the default scale has).\n\n")
        + _isometry_note(cells, labels)
        + f" The full table (steps per seed, learning rates, final accuracies, the measured mean and spread of J J^T) "
          f"is in {os.path.relpath(os.path.join(res.out_dir, 'E4_table.md'), ctx.out)} (and .csv)."
    )
    data = {"analysis": analysis, "runs": {"runs": res.sweep.total, "trained_now": len(res.sweep.completed),
                                           "reused": res.sweep.skipped, "added_after_the_grid": res.extended},
            "excluded": skipped}
    return PartResult("e4", "Initialisers side by side: steps to target against depth (E4)", text, figures,
                      _checks(analysis, labels), data, captions=[CAPTION] * len(figures))
