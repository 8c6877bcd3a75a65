"""`isometry reproduce [--scale S] --out DIR`: the paper's figures and a report of checked claims.

Writes DIR/report.md, DIR/index.html (figures embedded) and DIR/checks.json; finished parts are
cached in DIR/parts and reused by the next run (--force recomputes them); the training runs are
resumable one by one (DIR/training/runs). Progress: a bar over the parts and, inside the training
part, over its runs (on stderr), and one line per finished part with its checks. With --json,
stdout holds only the summary as JSON and the status lines go to stderr.
"""

from __future__ import annotations

import argparse
import sys

from ._common import out_dir, print_json
from .train import add_run_args, run_kwargs


def register(sub) -> None:
    from ..report.reproduce import PARTS, SCALES

    p = sub.add_parser("reproduce", help="regenerate the paper's figures with a report of checked claims",
                       description=__doc__.split("\n\n", 1)[1],
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    g = p.add_mutually_exclusive_group()
    g.add_argument("--scale", choices=SCALES, default="default",
                   help="quick: every figure at reduced size (CI); default: CPU sizes (minutes on 2 cores); full: "
                        "the larger CPU training grids of isometry 0.1; paper: the paper's training sizes (CIFAR-10 "
                        "from $ISOMETRY_CIFAR_DIR, for GPUs)")
    g.add_argument("--quick", dest="scale", action="store_const", const="quick", help="the same as --scale quick")
    p.add_argument("-o", "--out", default="report", metavar="DIR", type=out_dir, help="output directory; finished parts are reused")
    p.add_argument("--seed", type=int, default=0, help="random seed of the simulations")
    p.add_argument("--force", action="store_true", help="recompute every part instead of reusing finished ones")
    p.add_argument("--only", nargs="+", metavar="PART", choices=[n for n, _ in PARTS],
                   help=f"run only these parts (of {', '.join(n for n, _ in PARTS)}); the report still covers "
                        "every finished part")
    add_run_args(p, batch=False)
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("--strict", action="store_true", help="exit 1 if any check fails")
    p.add_argument("--json", action="store_true",
                   help="print the summary of the checks as JSON on stdout (status lines go to stderr)")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..report import reproduce

    out = sys.stderr if args.json else sys.stdout
    opts = run_kwargs(args)
    summary = reproduce(args.out, scale=args.scale, seed=args.seed, force=args.force, progress=not args.no_progress,
                        only=args.only, log=lambda line: print(line, file=out, flush=True), **opts)
    if args.json:
        print_json(summary)
    return 1 if args.strict and summary["n_failed"] else 0
