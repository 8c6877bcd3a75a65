"""`isometry sweep (--experiment E | --grid FILE) --out DIR`: run a grid of training runs, resumably.

Runs every configuration of a training experiment's grid (or of a JSON list of run
configurations) as independent tasks on a local process pool (default), on Ray, or in order in
this process (isometry.experiments.run_experiment; runs of one shape are trained together as one
batched model), into the layout of `isometry train`: DIR/grid.json, DIR/runs/<run_id>.json per run,
DIR/summary.json + summary.csv and, once every run of a named experiment has finished,
DIR/analysis.json and the figure. Re-running the same command resumes: finished runs are skipped,
never repeated. Prints a JSON account of what it did; exit status 1 when a run failed (the next
invocation retries it).
"""

from __future__ import annotations

import argparse
import os
import sys

from ._common import out_dir, print_json
from .train import add_grid_args, add_run_args, grid_kwargs, run_kwargs


def register(sub) -> None:
    p = sub.add_parser("sweep", help="run a training experiment's grid on a process pool or a Ray cluster (resumable)",
                       description=__doc__.split("\n\n", 1)[1],
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--experiment", choices=("E1", "E2", "E3", "E4"), help="the training experiment whose grid to run")
    g.add_argument("--grid", metavar="FILE",
                   help="JSON list of run configurations (RunConfig fields, e.g. a grid.json) instead")
    add_grid_args(p)
    p.add_argument("--device", default=None,
                   help="replace each run's device: auto, cpu, cuda, cuda:I or mps (default: each configuration's)")
    p.add_argument("-o", "--out", required=True, metavar="DIR", type=out_dir, help="output directory")
    add_run_args(p)
    p.add_argument("--no-plots", action="store_true", help="skip the figure")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..experiments import load_grid, run_experiment

    grid = grid_kwargs(args)
    if args.grid is not None:
        chosen = [f"--{k.replace('_', '-')}" for k in ("data", "data_dir", "seeds", "steps", "select")
                  if getattr(args, k) is not None] + (["--target"] if args.target is not None else [])
        if args.scale != "default":
            chosen.append("--scale")
        if chosen:
            raise ValueError(f"{', '.join(chosen)} choose a named experiment's grid; --grid runs its file as given")
        experiment, name = load_grid(args.grid), os.path.basename(args.grid)
        grid = {}
    else:
        experiment, name = args.experiment, None
    res = run_experiment(experiment, args.out, device=args.device, plots=not args.no_plots,
                         progress=not args.no_progress, name=name,
                         status=lambda line: print(line, file=sys.stderr, flush=True), **grid, **run_kwargs(args))
    print_json(res.to_dict())
    if res.sweep.failed:
        print(f"isometry sweep: {len(res.sweep.failed)} run(s) failed; run the same command again to retry them",
              file=sys.stderr)
        return 1
    return 0
