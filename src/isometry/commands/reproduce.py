"""`isometry reproduce [--quick | --paper-scale] --out DIR`: the paper's figures and a report of checks."""

from __future__ import annotations


def register(sub) -> None:
    p = sub.add_parser("reproduce", help="regenerate the paper's figures with a report of checked claims")
    scale = p.add_mutually_exclusive_group()
    scale.add_argument("--quick", action="store_true", help="every figure at reduced size (~5 min on 2 cores)")
    scale.add_argument("--paper-scale", action="store_true", help="the paper's sizes (for a GPU machine)")
    p.add_argument("--out", default="report", help="output directory (default ./report); finished parts are reused")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--force", action="store_true", help="recompute every part instead of reusing finished ones")
    p.add_argument("--only", nargs="+", metavar="PART", help="run only these parts")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("--strict", action="store_true", help="exit 1 if any check fails")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..report import reproduce

    summary = reproduce(args.out, quick=args.quick, paper_scale=args.paper_scale, seed=args.seed, force=args.force,
                        progress=not args.no_progress, only=args.only)
    return 1 if args.strict and summary["n_failed"] else 0
