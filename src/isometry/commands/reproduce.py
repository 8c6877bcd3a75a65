"""`isometry reproduce [--quick | --paper-scale] --out DIR`: the paper's figures and a report of checks.

Writes DIR/report.md, DIR/index.html (figures embedded) and DIR/checks.json; finished parts are
cached in DIR/parts and reused by the next run (--force recomputes them).
"""

from __future__ import annotations

import argparse

from ._common import add_engine_args, engine_kwargs


def register(sub) -> None:
    from ..report.reproduce import PARTS

    p = sub.add_parser("reproduce", help="regenerate the paper's figures with a report of checked claims",
                       description=__doc__.split("\n\n", 1)[1],
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    scale = p.add_mutually_exclusive_group()
    scale.add_argument("--quick", action="store_true", help="every figure at reduced size")
    scale.add_argument("--paper-scale", action="store_true", help="the paper's sizes (for a GPU machine)")
    p.add_argument("--out", default="report", metavar="DIR", help="output directory; finished parts are reused")
    p.add_argument("--seed", type=int, default=0, help="random seed of the simulations")
    p.add_argument("--force", action="store_true", help="recompute every part instead of reusing finished ones")
    p.add_argument("--only", nargs="+", metavar="PART",
                   help=f"run only these parts (of {', '.join(n for n, _ in PARTS)}); the report still covers "
                        "every finished part")
    add_engine_args(p)
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("--strict", action="store_true", help="exit 1 if any check fails")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..report import reproduce

    summary = reproduce(args.out, quick=args.quick, paper_scale=args.paper_scale, seed=args.seed, force=args.force,
                        progress=not args.no_progress, only=args.only, **engine_kwargs(args))
    return 1 if args.strict and summary["n_failed"] else 0
