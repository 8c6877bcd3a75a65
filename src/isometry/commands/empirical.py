"""`isometry empirical ACTIVATION --depth L --width N (--q-star Q | --sigma-w2 A --sigma-b2 B) [--weights W]
[--samples K] [--seed S] [--stable] [--compare] [-o PATH] [--log] [--save PATH] [--json]`:
the measured spectrum of J J^T for random networks, optionally against the theory.

``-o/--out PATH`` writes the figure (a histogram, with the theory under ``--compare``; atoms are
markers with their masses); the title names the configuration (activation, depth, width, weight
law, q*, number of networks).

``--save PATH`` writes the eigenvalues (an array of shape (networks, N), NumPy ``.npy`` format)
to exactly PATH, atomically: on a failure (a full disk) nothing is left under PATH and the error
names the file and the cause. Requests too large for the machine's memory are refused before
anything is computed, with the memory they would need.
"""

from __future__ import annotations

import sys

import numpy as np

from ._common import (add_activation_args, add_json_arg, add_out_arg, check_output_path, nonneg_float, positive_float,
                      positive_int, print_json, resolve_activation)

QUANTILES = (0.01, 0.1, 0.5, 0.9, 0.99)


def register(sub) -> None:
    p = sub.add_parser("empirical", help="eigenvalues of J J^T of random networks (optionally vs theory)")
    add_activation_args(p)
    p.add_argument("--depth", "-L", type=positive_int("--depth"), metavar="L", required=True,
                   help="number of critical layers L (factors D W of the Jacobian)")
    p.add_argument("--width", "-N", type=positive_int("--width"), metavar="N", required=True, help="width N")
    p.add_argument("--q-star", type=positive_float("--q-star"), metavar="Q", default=None,
                   help="the critical point (chi = 1) with this fixed point q*")
    p.add_argument("--sigma-w2", type=positive_float("--sigma-w2"), metavar="VAR", default=None,
                   help="weight variance (with --sigma-b2)")
    p.add_argument("--sigma-b2", type=nonneg_float("--sigma-b2"), metavar="VAR", default=None,
                   help="bias variance (with --sigma-w2)")
    p.add_argument("--q0", type=positive_float("--q0"), metavar="Q0", default=None,
                   help="length of the input pre-activation h^0 ~ N(0, q0) (default: the fixed point q*)")
    p.add_argument("--weights", choices=("orthogonal", "gaussian"), default="orthogonal", help="weight law")
    p.add_argument("--samples", type=positive_int("--samples"), metavar="K", default=1, help="number of networks")
    p.add_argument("--seed", type=int, metavar="S", default=0, help="random seed")
    p.add_argument("--stable", action="store_true", help="QR-accumulated product (resolves tiny eigenvalues)")
    p.add_argument("--floor", type=nonneg_float("--floor"), metavar="F", default=1e-20,
                   help="eigenvalues below count as 0")
    p.add_argument("--compare", action="store_true",
                   help="compare with isometry.jacobian_spectrum (KS, quantiles, moments)")
    add_out_arg(p, "write a histogram figure (with the theory under --compare) to this file (PNG, PDF or SVG by "
                   "suffix)")
    p.add_argument("--log", action="store_true", help="log-scale x axis in the figure (log-spaced bins)")
    p.add_argument("--singular-values", action="store_true",
                   help="draw the singular values s of J instead of the eigenvalues of J J^T")
    p.add_argument("--save", default=None, metavar="PATH",
                   help="save the eigenvalues (networks x N, NumPy .npy format) to exactly this file")
    p.add_argument("--no-progress", action="store_true", help="no progress bar (drawn on stderr, only on a terminal)")
    add_json_arg(p, "the measured summary (and the comparison under --compare)")
    p.set_defaults(func=run)


def run(args) -> int:
    from .._io import atomic_write, to_jsonable
    from ..empirical import compare, empirical_eigenvalues, memory_estimate
    from ..meanfield import network_parameters

    act = resolve_activation(args)
    check_output_path(args.save, "--save")
    check_output_path(args.out, "--out")
    kw = {"q_star": args.q_star, "sigma_w2": args.sigma_w2, "sigma_b2": args.sigma_b2}
    lam = empirical_eigenvalues(act, args.depth, args.width, weights=args.weights, q0=args.q0, n_samples=args.samples,
                                seed=args.seed, stable=args.stable, progress=False if args.no_progress else None,
                                **kw).reshape(args.samples, args.width)
    if args.q_star is not None:
        sw, sb, q = network_parameters(act, q_star=args.q_star)
    else:
        sw, sb, q = network_parameters(act, sigma_w2=args.sigma_w2, sigma_b2=args.sigma_b2, q0=args.q0)
    if args.save:
        atomic_write(args.save, lambda fh: np.save(fh, lam))
    pooled = lam.ravel()
    x = np.where(pooled < args.floor, 0.0, pooled)
    q0 = q if args.q0 is None else args.q0
    out = {
        "activation": act.name, "depth": args.depth, "width": args.width, "weights": args.weights,
        "sigma_w2": sw, "sigma_b2": sb, "q_star": q, "q0": q0, "samples": args.samples, "seed": args.seed,
        "stable": args.stable, "memory_estimate": memory_estimate(args.width, n_samples=args.samples, weights=args.weights,
                                                                   stable=args.stable),
        "mean": float(x.mean()), "variance": float(x.var()), "max": float(x.max()), "zero_fraction": float(np.mean(x == 0)),
        "quantiles": {str(p): float(v) for p, v in zip(QUANTILES, np.quantile(x, QUANTILES))},
    }
    if args.save:
        out["save"] = args.save
    config = (f"{act.name}, L = {args.depth}, N = {args.width}, {args.weights} weights, q* = {q:.3g}, "
              f"{args.samples} network{'s' if args.samples != 1 else ''}")
    cmp = None
    if args.compare:
        from ..spectrum import jacobian_spectrum

        theory = jacobian_spectrum(act, args.depth, weights=args.weights, q0=args.q0, **kw)
        cmp = compare(theory, lam, floor=args.floor, seed=args.seed)
        out["comparison"] = cmp.to_dict()
    if args.out:
        from ..plotting import pyplot
        from ..plotting.empirical import plot_eigenvalues

        if cmp is not None:
            fig = cmp.plot(path=args.out, log=args.log, singular_values=args.singular_values,
                           title=f"{config}\nKS = {cmp.ks:.3f}")
        else:
            fig = plot_eigenvalues(lam, path=args.out, log=args.log, singular_values=args.singular_values,
                                   floor=args.floor, title=config)
        pyplot().close(fig)
        out["plot"] = args.out
    if args.json:
        print_json(to_jsonable(out))
        if args.out:
            print(f"wrote {args.out}", file=sys.stderr)
        if args.save:
            print(f"eigenvalues written to {args.save}", file=sys.stderr)
        return 0
    print(f"J J^T of {args.samples} {args.weights} {act.name} network(s), L = {args.depth}, N = {args.width}: "
          f"sigma_w2 = {sw:.6g}, sigma_b2 = {sb:.6g}, q* = {q:.6g}" + (f", q0 = {q0:.6g}" if args.q0 is not None else ""))
    print(f"  mean {out['mean']:.6g}   variance {out['variance']:.6g}   max {out['max']:.6g}   "
          f"fraction < {args.floor:g}: {out['zero_fraction']:.4f}")
    print("  quantiles " + "  ".join(f"{p:g}: {v:.4g}" for p, v in zip(QUANTILES, np.quantile(x, QUANTILES))))
    if cmp is not None:
        print(cmp.table())
    if args.save:
        print(f"eigenvalues written to {args.save}")
    if args.out:
        print(f"wrote {args.out}")
    return 0
