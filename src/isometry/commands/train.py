"""`isometry train --experiment {E1,E2,E3} --out DIR`: run a training experiment and report it.

Runs the experiment's grid (isometry.experiments.run_experiment; finished runs in
DIR/runs are reused, so an interrupted experiment resumes), then writes DIR/summary.json +
summary.csv (one row per run), DIR/analysis.json and the figure, and prints the comparisons.
Exit status 1 when a run failed (the same command retries it).
"""

from __future__ import annotations

import argparse
import sys

from ._common import add_engine_args, add_experiment_args, engine_kwargs


def register(sub) -> None:
    p = sub.add_parser("train", help="training experiments: does dynamical isometry speed up learning?",
                       description=__doc__.split("\n\n", 1)[1],
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--experiment", required=True, choices=["E1", "E2", "E3"],
                   help="E1: Fig. 4 analogue (optimisers x networks); E2: speed vs q* and isometry; "
                        "E3: Fig. 6 analogue (learning rate x depth)")
    add_experiment_args(p)
    p.add_argument("--device", default=None,
                   help="device of every run: auto (CUDA when present), cpu, cuda, cuda:I or mps (default: auto)")
    p.add_argument("--out", required=True, metavar="DIR", help="output directory")
    add_engine_args(p)
    p.add_argument("--no-plots", action="store_true", help="skip the figure")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..experiments import run_experiment

    res = run_experiment(args.experiment, args.out, quick=args.quick, paper_scale=args.paper_scale, data=args.data,
                         data_dir=args.data_dir, seeds=args.seeds, steps=args.steps, target_accuracy=args.target,
                         device=args.device, plots=not args.no_plots, progress=not args.no_progress,
                         **engine_kwargs(args))
    s = res.sweep
    print(f"{res.experiment}: {s.total} runs: {len(s.completed)} trained now, {s.skipped} reused from "
          f"{res.out_dir}/runs, {len(s.failed)} failed")
    for path in res.figures:
        print(f"wrote {path}")
    print(f"wrote {res.summary_path} ({len(res.rows)} runs)")
    if res.analysis is not None:
        print(report(res.analysis))
    if s.failed:
        for rid, msg in s.failed.items():
            print(f"isometry train: run {rid} failed: {msg}", file=sys.stderr)
        print("isometry train: run the same command again to retry the failed runs", file=sys.stderr)
        return 1
    return 0


def report(res: dict) -> str:
    """The analysis of an experiment as text."""
    lines = [f"{res['experiment']}: {res['runs']} runs, target test accuracy {res.get('target_accuracy')} on "
             f"{res.get('data')}; steps = median steps to the target over seeds at the best learning rate"]
    if res["experiment"] == "E1":
        lines.append("  ref = the reference network, orthogonal tanh at sigma_w2 = 1.05 (q* = 0.0259); ratio = its "
                     "median steps over the other's; p = one-sided Mann-Whitney p-value that ref is faster "
                     "(None: fewer than 2 seeds)")
        for opt, d in res.get("by_optimizer", {}).items():
            lines.append(f"  {opt}:")
            for name, t in d["networks"].items():
                lines.append(f"    {name:28s} lr={t['learning_rate']:<8g} median steps {t['median_tau']}  "
                             f"reached {t['reached']}/{t['seeds']}")
            for name, c in d["reference_vs"].items():
                p = c["p_value"]
                lines.append(f"    ref vs {name:21s} ratio {_f(c['median_ratio'])}  every seed faster: "
                             f"{c['reference_faster_every_seed']}  p={p if p is None else round(p, 4)}")
        for name, c in res.get("combined", {}).items():
            lines.append(f"  all optimisers, ref vs {name:24s} faster every seed in {c['reference_faster_every_seed']}/"
                         f"{c['optimizers']}, Fisher p={_f(c['fisher_p_value'])}")
    elif res["experiment"] == "E2":
        for r in res.get("table", []):
            lines.append(f"  q*={r['q_star']:<7g} {r['weights']:10s} lr={r['learning_rate']:<6g} median steps "
                         f"{r['median_tau']}  variance of J J^T eigenvalues: predicted {_f(r['predicted_variance'])} "
                         f"measured {_f(r['measured_variance'])}  s_max {_f(r['measured_max_singular_value'])}")
        lines.append(f"  Spearman(steps, .): {res.get('spearman_tau_vs')}")
    elif res["experiment"] == "E3":
        for r in res.get("table", []):
            lines.append(f"  L={r['depth']:<4d} best eta={r['best_learning_rate']:<9g} tau={r['tau_at_best']}  "
                         f"tau/sqrt(L)={_f(r['tau_over_sqrt_depth'])}  eta*L={_f(r['eta_times_depth'])}")
    return "\n".join(lines)


def _f(x) -> str:
    return "None" if x is None else f"{x:.3g}"
