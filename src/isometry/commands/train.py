"""`isometry train --experiment E [E ...] --out DIR`: run training experiments and report them.

Runs each experiment's grid (isometry.experiments.run_experiment; finished runs in DIR/runs are
reused, so an interrupted experiment resumes), extends a learning-rate grid wherever a best rate
falls at its edge, then writes DIR/summary.json + summary.csv (one row per run), DIR/analysis.json
and the figure, and prints the comparisons. Several experiments (--experiment E1 E2 E3) share
their runs: DIR/runs holds every record and DIR/E1, DIR/E2, ... each experiment's files.
Runs of one shape are trained together as one batched model, on a process pool by default.
Exit status 1 when a run failed (the same command retries it).
"""

from __future__ import annotations

import argparse
import sys

from ._common import out_dir, print_json

SCALE_HELP = ("quick: L=8, N=32 (seconds; CI); default: L=32, N=64, 3 seeds, learning-rate grids centred on the "
              "measured optimum; full: the larger CPU grids of isometry 0.1; paper: CIFAR-10, L=200, N=400, 1e5 "
              "steps (for GPUs). E4 has its own sizes: quick: digits, N=16, L=8,16, 60 steps; default: digits, N=64, "
              "L=32,128, tanh and ReLU, Adam, 150 steps; full: digits, N=128, L=8..256, Adam and momentum, CNN and "
              "ResNet; paper: mnist1d at the full sizes, 1000 steps")


def add_scale_args(p: argparse.ArgumentParser) -> None:
    """``--scale {quick,default,full,paper}`` and its alias ``--quick``."""
    from ..experiments import SCALES

    g = p.add_mutually_exclusive_group()
    g.add_argument("--scale", choices=SCALES, default="default", help=SCALE_HELP)
    g.add_argument("--quick", dest="scale", action="store_const", const="quick", help="the same as --scale quick")


def add_grid_args(p: argparse.ArgumentParser) -> None:
    """The grid options of the named training experiments (``train`` and ``sweep``)."""
    add_scale_args(p)
    p.add_argument("--data", choices=("mnist1d", "digits", "cifar10"), default=None,
                   help="dataset (default: digits, cifar10 at --scale paper)")
    p.add_argument("--data-dir", default=None, metavar="DIR",
                   help="directory holding the CIFAR-10 python batches (data_batch_1..5, test_batch)")
    p.add_argument("--seeds", type=int, default=None, metavar="K", help="seeds per setting (default: the scale's)")
    p.add_argument("--steps", type=int, default=None, metavar="S",
                   help="training steps per run (default: the scale's)")
    p.add_argument("--target", type=float, default=None, metavar="ACC",
                   help="target test accuracy in (0, 1] (default: per dataset)")
    p.add_argument("--lr-extensions", type=int, default=2, metavar="N",
                   help="extra learning rates per side of a grid whose best rate is at an edge (0: none)")
    p.add_argument("--select", action="append", default=None, metavar="FIELD=V1,V2",
                   help="run only the part of the grid whose FIELD takes one of the values (repeatable; e.g. "
                        "--select depth=8,32,128 --select optimizer=adam)")


def add_run_args(p: argparse.ArgumentParser, *, batch: bool = True) -> None:
    """How the runs are executed (:func:`isometry.sweeps.run_tasks`); ``batch``: offer ``--max-batch``."""
    p.add_argument("--engine", choices=("local", "ray", "sequential"), default="local",
                   help="local: a process pool on this machine (one worker: in this process); ray: Ray core tasks; "
                        "sequential: in this process")
    p.add_argument("--max-parallel", type=int, default=None, metavar="N",
                   help="tasks (batches of runs) in flight at once (default: CPUs / --num-cpus locally, what the "
                        "cluster fits on Ray)")
    if batch:
        p.add_argument("--max-batch", type=int, default=None, metavar="R",
                       help="most runs trained together as one batched model (default: about two batches per "
                            "worker, at most 64)")
    p.add_argument("--address", default=None,
                   help="Ray cluster to join: 'auto', 'HOST:6379' or 'ray://HOST:10001' (default: start a local one)")
    p.add_argument("--num-cpus", type=float, default=1.0, metavar="C",
                   help="CPUs (and BLAS/torch threads) per task")
    p.add_argument("--num-gpus", type=float, default=0.0, metavar="G",
                   help="GPUs per task on Ray (fractions share a GPU)")
    p.add_argument("--retries", type=int, default=2, metavar="K", help="restarts of a task whose worker died")


def run_kwargs(args: argparse.Namespace) -> dict:
    """The execution options of :func:`add_run_args` as keyword arguments."""
    out = dict(engine=args.engine, max_parallel=args.max_parallel, address=args.address, num_cpus=args.num_cpus,
               num_gpus=args.num_gpus, retries=args.retries)
    if hasattr(args, "max_batch"):
        out["max_batch"] = args.max_batch
    return out


def grid_kwargs(args: argparse.Namespace) -> dict:
    return dict(scale=args.scale, data=args.data, data_dir=args.data_dir, seeds=args.seeds, steps=args.steps,
                target_accuracy=args.target, lr_extensions=args.lr_extensions, select=parse_select(args.select))


def parse_select(items: list[str] | None) -> dict | None:
    """``["depth=8,32", "optimizer=adam"]`` -> ``{"depth": ["8", "32"], "optimizer": ["adam"]}`` (values
    are compared with the grid's as numbers where they are numbers); ``ValueError`` for an item
    without ``=`` or without values."""
    if not items:
        return None
    out: dict[str, list[str]] = {}
    for item in items:
        field, sep, values = item.partition("=")
        vals = [v.strip() for v in values.split(",") if v.strip()]
        if not sep or not field.strip() or not vals:
            raise ValueError(f"--select takes FIELD=V1,V2,..., got {item!r}")
        out.setdefault(field.strip(), []).extend(vals)
    return out


def register(sub) -> None:
    p = sub.add_parser("train", help="training experiments: does dynamical isometry speed up learning?",
                       description=__doc__.split("\n\n", 1)[1],
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--experiment", required=True, nargs="+", choices=["E1", "E2", "E3", "E4"], metavar="E",
                   help="E1: Fig. 4 analogue (optimisers x networks); E2: speed vs q* and isometry; "
                        "E3: Fig. 6 analogue (learning rate x depth); E4: every initialiser side by side (this "
                        "package's modes, PyTorch default, orthogonal_, LSUV, AnyInit, dks DKS/TAT) against depth; "
                        "several share their runs")
    add_grid_args(p)
    p.add_argument("--device", default=None,
                   help="device of every run: auto (CUDA when present), cpu, cuda, cuda:I or mps (default: auto)")
    p.add_argument("-o", "--out", required=True, metavar="DIR", type=out_dir, help="output directory")
    add_run_args(p)
    p.add_argument("--no-plots", action="store_true", help="skip the figures")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--json", action="store_true",
                   help="print the results as JSON on stdout (status lines go to stderr)")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..experiments import run_experiment, run_experiments

    out = sys.stderr if args.json else sys.stdout
    say = lambda line: print(line, file=out, flush=True)  # noqa: E731
    names = list(dict.fromkeys(args.experiment))
    common = dict(device=args.device, plots=not args.no_plots, progress=not args.no_progress, status=say,
                  **grid_kwargs(args), **run_kwargs(args))
    if len(names) == 1:
        results = {names[0]: run_experiment(names[0], args.out, **common)}
    else:
        results = run_experiments(names, args.out, **common)
    failed = {}
    for res in results.values():
        s = res.sweep
        say(f"{res.experiment}: {s.total} runs: {len(s.completed)} trained now, {s.skipped} finished earlier and "
            f"reused (not trained again), {len(s.failed)} failed"
            + (f"; {res.extended} added where a best learning rate was at the edge of its grid" if res.extended
               else ""))
        for path in res.figures:
            say(f"wrote {path}")
        say(f"wrote {res.summary_path} ({len(res.rows)} runs)")
        if res.analysis is not None and not args.json:
            say(report(res.analysis))
        failed.update(s.failed)
    if args.json:
        print_json({name: res.to_dict() for name, res in results.items()} if len(results) > 1
                   else next(iter(results.values())).to_dict())
    if failed:
        for rid, msg in failed.items():
            print(f"isometry train: run {rid} failed: {msg}", file=sys.stderr)
        print("isometry train: run the same command again to retry the failed runs", file=sys.stderr)
        return 1
    return 0


def report(res: dict) -> str:
    """The analysis of an experiment as text."""
    lines = [f"{res['experiment']}: {res['runs']} runs, target test accuracy {res.get('target_accuracy')} on "
             f"{res.get('data')}; steps = median over seeds of the steps to reach the target, at each setting's best "
             "learning rate (chosen among the rates run; [edge]: the best rate is at an edge of its grid)"]
    if res["experiment"] == "E1":
        lines.append("  ref = the reference network, orthogonal tanh at sigma_w2 = 1.05 (q* = 0.0259); ratio = the "
                     "other "
                     "network's median steps over ref's; p = one-sided Mann-Whitney p-value that ref needs fewer steps "
                     "(p=n/a: fewer than 2 seeds per network; with 3 vs 3 seeds the smallest possible p is 0.05)")
        for opt, d in res.get("by_optimizer", {}).items():
            lines.append(f"  {opt}:")
            for name, t in d["networks"].items():
                lines.append(f"    {name:28s} lr={t['learning_rate']:<8.3g}{' [edge]' if t.get('at_edge') else ''} "
                             f"median steps {_steps(t['median_tau'])}  reached {t['reached']}/{t['seeds']}")
            for name, c in d["reference_vs"].items():
                lines.append(f"    ref vs {name:21s} ratio {_ratio(c['median_ratio'])}  faster in every seed pair: "
                             f"{'yes' if c['reference_faster_every_seed'] else 'no'}  p={_p(c['p_value'])}")
        for name, c in res.get("combined", {}).items():
            lines.append(f"  all optimisers, ref vs {name:24s} faster in every seed pair in "
                         f"{c['reference_faster_every_seed']}/{c['optimizers']}, Fisher p={_p(c['fisher_p_value'])}")
    elif res["experiment"] == "E2":
        for r in res.get("table", []):
            lines.append(f"  q*={r['q_star']:<7.3g} {r['weights']:10s} lr={r['learning_rate']:<6.3g}"
                         f"{' [edge]' if r.get('at_edge') else ''} median steps {_steps(r['median_tau'])}  variance of "
                         f"J J^T eigenvalues: predicted {_f(r['predicted_variance'])} measured "
                         f"{_f(r['measured_variance'])}  s_max {_f(r['measured_max_singular_value'])}")
        sp = res.get("spearman_tau_vs") or {}
        lines.append("  Spearman rank correlation of the steps with: "
                     + ", ".join(f"{k} {_f(v)}" for k, v in sp.items()))
    elif res["experiment"] == "E4":
        from ..experiments.benchmark import LABELS

        lines[0] = (f"E4: {res['runs']} runs ({res['tuning_runs']} on the tuning seed {res['tuning_seed']}, "
                    f"{res['reported_runs']} reported), target test accuracy {res.get('target_accuracy')} on "
                    f"{res.get('data')}; steps = median over the reported seeds of the steps to the target, at the "
                    "rate chosen on the tuning seed ([edge]: still at an edge of its grid); acc = mean final test "
                    "accuracy; var = median measured variance of the eigenvalues of the body's J J^T at initialisation")
        for c in res.get("cells", []):
            lines.append(f"  {c['architecture']} {c['activation']} {c['optimizer']} L={c['depth']} "
                         f"({c['steps']} steps): fastest {LABELS.get(c['fastest'], c['fastest'])}")
            for e in c["entries"]:
                lines.append(f"    {e['label']:20s} lr={e['learning_rate']:<8.3g}{' [edge]' if e['at_edge'] else '':7s}"
                             f" steps {('never' if e['median_tau'] is None else format(e['median_tau'], 'g')):>5s} ({e['reached']}/{e['seeds']} reached"
                             + (f", {e['diverged']} diverged" if e["diverged"] else "") + f")  acc "
                             f"{_f(e['final_accuracy'])}  var {_f(e['measured_variance'])}")
            cmp_ = c.get("comparison")
            if cmp_:
                lines.append(f"    ours ({LABELS[cmp_['ours']]}) vs best peer ({LABELS[cmp_['peer']]}): "
                             f"{cmp_['verdict']}; peer steps / ours {_ratio(cmp_['ratio'])}"
                             f"{' (bound)' if cmp_['ratio_is_bound'] and cmp_['ratio'] is not None else ''}; "
                             f"Mann-Whitney p(ours faster)={_p(cmp_['p_ours_faster'])} "
                             f"p(peer faster)={_p(cmp_['p_peer_faster'])}")
        yes = {True: "yes", False: "no", None: "n/a"}
        for eff in res.get("effect", []):
            for who, name in (("best", "this package's best mode"), ("critical", "isometry critical")):
                pts = ", ".join(f"L={p['depth']}: {_ratio(p.get(f'speedup_{who}_vs_conventional'))}"
                                f"{'+' if p.get(f'speedup_{who}_vs_conventional_is_bound') else ''}"
                                for p in eff["points"])
                grows = eff["grows"] if who == "best" else eff.get("grows_critical")
                lines.append(f"  {eff['architecture']} {eff['activation']} {eff['optimizer']}: speed-up of {name} over "
                             f"the best conventional initialiser {pts} (+: a bound); grows with depth: {yes[grows]}")
        done = res.get("done") or {}
        if done:
            lines.append(f"  this package's best mode ties or beats the best peer in {done['ties_or_beats']} of "
                         f"{done['cells']} cells with L >= 32")
    elif res["experiment"] == "E3":
        for r in res.get("table", []):
            lines.append(f"  L={r['depth']:<4d} best eta={r['best_learning_rate']:<9.3g}"
                         f"{' [edge]' if r.get('at_edge') else ''} tau={_steps(r['tau_at_best'])}  "
                         f"tau/sqrt(L)={_f(r['tau_over_sqrt_depth'])}  eta*L={_f(r['eta_times_depth'])}")
    return "\n".join(lines)


def _f(x) -> str:
    return "n/a" if x is None else f"{x:.3g}"


def _ratio(x) -> str:
    return "n/a" if x is None else "inf (the other never reached the target)" if x == float("inf") else f"{x:.3g}"


def _p(x) -> str:
    return "n/a" if x is None else f"{x:.3g}"


def _steps(x) -> str:
    return "never (target not reached)" if x is None else f"{x:g}"
