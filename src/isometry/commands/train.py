"""`isometry train --experiment {E1,E2,E3} [--quick|--paper-scale] [--data D --data-dir DIR] --out DIR`.

Runs the experiment's grid (finished runs in DIR/runs are skipped, so an interrupted experiment
resumes), then writes DIR/summary.json + summary.csv (one row per run), DIR/analysis.json and the
figures.
"""

from __future__ import annotations

from ._common import positive_float, positive_int


def register(sub) -> None:
    p = sub.add_parser("train", help="training experiments: does dynamical isometry speed up learning?")
    p.add_argument("--experiment", required=True, choices=["E1", "E2", "E3"],
                   help="E1: Fig. 4 analogue; E2: speed vs q*/isometry; E3: Fig. 6 analogue")
    size = p.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="reduced grid (about a minute; for CI)")
    size.add_argument("--paper-scale", action="store_true", help="L=200, N=400, CIFAR-10, 1e5 steps (GPU)")
    p.add_argument("--data", choices=["mnist1d", "digits", "cifar10"], default=None,
                   help="dataset (default: digits on CPU sizes, cifar10 at paper scale)")
    p.add_argument("--data-dir", default=None, help="directory with the CIFAR-10 python batches")
    p.add_argument("--seeds", type=positive_int("--seeds"), default=None, help="number of seeds per setting")
    p.add_argument("--steps", type=positive_int("--steps"), default=None, help="training steps per run")
    p.add_argument("--target", type=positive_float("--target"), default=None,
                   help="target test accuracy (default per dataset)")
    p.add_argument("--device", default="auto", help="auto (CUDA when present) | cpu | cuda[:i]")
    p.add_argument("--threads", type=positive_int("--threads"), default=None, help="torch CPU threads")
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--no-plots", action="store_true", help="skip the figures")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=run)


def run(args) -> int:
    import os

    try:
        import torch
    except ImportError as exc:  # pragma: no cover
        raise ValueError('isometry train needs PyTorch: pip install "isometry[torch,data]"') from exc
    from ..experiments import analysis, experiment_grid, run_grid, summarise
    from ..experiments.records import atomic_write_json

    if args.target is not None and args.target > 1:
        raise ValueError(f"--target must be in (0, 1], got {args.target}")
    if args.threads:
        torch.set_num_threads(args.threads)
    if (args.data == "cifar10" or (args.paper_scale and args.data is None)) and not args.data_dir:
        raise ValueError("cifar10 needs --data-dir DIR holding data_batch_1..5 and test_batch")
    configs = experiment_grid(args.experiment, quick=args.quick, paper_scale=args.paper_scale, data=args.data,
                              data_dir=args.data_dir, seeds=args.seeds, steps=args.steps,
                              target_accuracy=args.target, device=args.device)
    os.makedirs(args.out, exist_ok=True)
    atomic_write_json(os.path.join(args.out, "grid.json"), [c.to_dict() | {"run_id": c.run_id} for c in configs])
    run_grid(configs, args.out, progress=not args.no_progress, step_progress=args.paper_scale and not args.no_progress)
    rows = summarise(args.out, configs)
    res = analysis.analyse(args.experiment, rows)
    atomic_write_json(os.path.join(args.out, "analysis.json"), res)
    if not args.no_plots:
        from ..experiments.plots import plot_experiment

        for path in plot_experiment(args.experiment, args.out):
            print(f"wrote {path}")
    print(f"wrote {os.path.join(args.out, 'summary.json')} ({len(rows)} runs)")
    print(_report(res))
    return 0


def _report(res: dict) -> str:
    lines = [f"{res['experiment']}: {res['runs']} runs, target accuracy {res.get('target_accuracy')} on "
             f"{res.get('data')}"]
    if res["experiment"] == "E1":
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
                         f"{r['median_tau']}  sigma2 pred {_f(r['predicted_sigma2'])} meas {_f(r['measured_sigma2'])}"
                         f"  s_max {_f(r['measured_s_max'])}")
        lines.append(f"  Spearman(tau, .): {res.get('spearman_tau_vs')}")
    elif res["experiment"] == "E3":
        for r in res.get("table", []):
            lines.append(f"  L={r['depth']:<4d} best eta={r['best_learning_rate']:<9g} tau={r['tau_at_best']}  "
                         f"tau/sqrt(L)={_f(r['tau_over_sqrt_depth'])}  eta*L={_f(r['eta_times_depth'])}")
    return "\n".join(lines)


def _f(x) -> str:
    return "None" if x is None else f"{x:.3g}"
