"""`isometry sweep (--experiment E | --grid FILE) --out DIR`: run a grid of training runs, resumably.

Runs every configuration of a training experiment's grid (or of a JSON list of run
configurations) as an independent task on a local process pool (default), on Ray, or in order in
this process (isometry.experiments.run_experiment), into the layout of `isometry train`:
DIR/grid.json, DIR/runs/<run_id>.json per run, DIR/summary.json + summary.csv and, once every run
of a named experiment has finished, DIR/analysis.json and the figure. Re-running the same command
resumes: finished runs are skipped, never repeated. Prints a JSON account of what it did; exit
status 1 when a run failed (the next invocation retries it).
"""

from __future__ import annotations

import argparse
import os
import sys

from ._common import add_engine_args, add_experiment_args, engine_kwargs, print_json


def register(sub) -> None:
    p = sub.add_parser("sweep", help="run a training experiment's grid on a process pool or a Ray cluster (resumable)",
                       description=__doc__.split("\n\n", 1)[1],
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--experiment", choices=("E1", "E2", "E3"), help="the training experiment whose grid to run")
    g.add_argument("--grid", metavar="FILE",
                   help="JSON list of run configurations (RunConfig fields, e.g. a grid.json) instead")
    add_experiment_args(p)
    p.add_argument("--device", default=None,
                   help="replace each run's device: auto, cpu, cuda, cuda:I or mps (default: each configuration's)")
    p.add_argument("--out", required=True, metavar="DIR", help="output directory")
    add_engine_args(p)
    p.add_argument("--no-plots", action="store_true", help="skip the figure")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..experiments import load_grid, run_experiment

    if args.grid is not None:
        experiment, name = load_grid(args.grid), os.path.basename(args.grid)
    else:
        experiment, name = args.experiment, None
    res = run_experiment(experiment, args.out, quick=args.quick, paper_scale=args.paper_scale, data=args.data,
                         data_dir=args.data_dir, seeds=args.seeds, steps=args.steps, target_accuracy=args.target,
                         device=args.device, plots=not args.no_plots, progress=not args.no_progress, name=name,
                         **engine_kwargs(args))
    print_json(res.to_dict())
    if res.sweep.failed:
        print(f"isometry sweep: {len(res.sweep.failed)} run(s) failed; run the same command again to retry them",
              file=sys.stderr)
        return 1
    return 0
