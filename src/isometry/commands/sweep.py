"""`isometry sweep --experiment E --out DIR [--engine local|ray] ...`: run a grid, resumably.

Runs every configuration of a training experiment's grid (or of ``--grid FILE.json``) as an
independent task on a local process pool (default) or on Ray, into the same directory layout as
``isometry train``: ``DIR/grid.json``, ``DIR/runs/<run_id>.json`` per run, ``DIR/summary.json``/
``summary.csv`` and, once every run of a named experiment finished, ``analysis.json`` and figures. Re-running the same command resumes: finished
runs are skipped, never repeated. Prints a JSON line-up of what it did; exit status 1 when a run
failed (the next invocation retries it).
"""

from __future__ import annotations

import os
import sys

from ._common import nonneg_float, positive_float, positive_int, print_json


def register(sub) -> None:
    p = sub.add_parser("sweep", help="run a training experiment's grid on a process pool or a Ray cluster (resumable)")
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--experiment", choices=("E1", "E2", "E3"), help="the training experiment whose grid to run")
    g.add_argument("--grid", metavar="FILE", help="JSON list of run configurations (RunConfig fields) instead")
    size = p.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="the quick grid (about a minute on a laptop)")
    size.add_argument("--paper-scale", action="store_true", help="the paper-scale grid (GPU cluster)")
    p.add_argument("--data", choices=("mnist1d", "digits", "cifar10"), default=None, help="dataset of the grid")
    p.add_argument("--data-dir", default=None, help="directory of the CIFAR-10 batches")
    p.add_argument("--seeds", type=positive_int("--seeds"), default=None, help="number of seeds per point")
    p.add_argument("--steps", type=positive_int("--steps"), default=None, help="training steps per run")
    p.add_argument("--target", type=positive_float("--target"), default=None,
                   help="target test accuracy (default per dataset)")
    p.add_argument("--out", required=True, metavar="DIR", help="output directory (runs/, summary.json, summary.csv)")
    p.add_argument("--engine", choices=("local", "ray"), default="local",
                   help="local: process pool (default, no Ray); ray: Ray core tasks")
    p.add_argument("--address", default=None,
                   help="Ray cluster to join ('auto', 'HOST:6379' or 'ray://HOST:10001'); default: start a local one")
    p.add_argument("--max-parallel", type=positive_int("--max-parallel"), default=None,
                   help="runs in flight at once (local default: CPUs / --num-cpus; ray default: what the cluster fits)")
    p.add_argument("--num-cpus", type=positive_float("--num-cpus"), default=1.0, help="CPUs per run (default 1)")
    p.add_argument("--num-gpus", type=nonneg_float("--num-gpus"), default=0.0,
                   help="GPUs per run on Ray (default 0; fractions share a GPU)")
    p.add_argument("--device", default=None, help="override each run's device: cpu, cuda, cuda:I (default: auto)")
    p.add_argument("--retries", type=int, default=2, help="restarts of a run whose worker died (default 2)")
    p.add_argument("--no-plots", action="store_true", help="skip the figures")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..sweeps import load_grid, sweep_configs, sweep_experiment

    if args.engine == "local" and args.address is not None:
        raise ValueError("--address needs --engine ray")
    if args.engine == "local" and args.num_gpus > 0:
        raise ValueError(f"--num-gpus {args.num_gpus:g} needs --engine ray (the local pool does not assign GPUs; use --device)")
    if args.target is not None and args.target > 1:
        raise ValueError(f"--target must be in (0, 1], got {args.target}")
    if args.experiment and (args.data == "cifar10" or (args.paper_scale and args.data is None)) and not args.data_dir:
        raise ValueError("cifar10 needs --data-dir DIR holding data_batch_1..5 and test_batch (on every node)")
    if args.retries < 0:
        raise ValueError(f"--retries must be an integer >= 0, got {args.retries}")
    common = dict(engine=args.engine, max_parallel=args.max_parallel, address=args.address, num_cpus=args.num_cpus,
                  num_gpus=args.num_gpus, retries=args.retries, device=args.device, progress=not args.no_progress)
    try:
        if args.grid is not None:
            if args.quick or args.paper_scale or args.data or args.seeds or args.steps or args.target:
                raise ValueError("--grid takes its configurations as they are: "
                                 "drop --quick/--paper-scale/--data/--seeds/--steps/--target")
            res = sweep_configs(load_grid(args.grid), args.out, name=os.path.basename(args.grid), **common)
        else:
            res = sweep_experiment(args.experiment, args.out, quick=args.quick, paper_scale=args.paper_scale,
                                   data=args.data, data_dir=args.data_dir, seeds=args.seeds, steps=args.steps,
                                   target_accuracy=args.target, plots=not args.no_plots, **common)
    except ModuleNotFoundError as exc:  # an optional dependency: one line, exit 2
        raise ValueError(str(exc)) from exc
    out = os.path.abspath(args.out)
    print_json({**res.as_dict(), "out": out, "summary": os.path.join(out, "summary.json")})
    if res.failed:
        print(f"isometry sweep: {len(res.failed)} run(s) failed; run the same command again to retry them",
              file=sys.stderr)
        return 1
    return 0
