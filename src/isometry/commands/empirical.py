"""`isometry empirical ACT --depth L --width N (--q-star Q | --sigma-w2 A --sigma-b2 B) --weights W
[--samples K] [--seed S] [--stable] [--compare] [-o plot.png] [--log] [--json]`:
the measured spectrum of J J^T for random networks, optionally against the theory."""

from __future__ import annotations

import numpy as np

from ._common import add_activation_args, nonneg_float, positive_float, positive_int, print_json, resolve_activation

QUANTILES = (0.01, 0.1, 0.5, 0.9, 0.99)


def register(sub) -> None:
    p = sub.add_parser("empirical", help="eigenvalues of J J^T of random networks (optionally vs theory)")
    add_activation_args(p)
    p.add_argument("--depth", "-L", type=positive_int("--depth"), required=True, help="number of layers L")
    p.add_argument("--width", "-N", type=positive_int("--width"), required=True, help="width N")
    p.add_argument("--q-star", type=positive_float("--q-star"), default=None, help="critical point with this fixed point q*")
    p.add_argument("--sigma-w2", type=positive_float("--sigma-w2"), default=None, help="weight variance (with --sigma-b2)")
    p.add_argument("--sigma-b2", type=nonneg_float("--sigma-b2"), default=None, help="bias variance (with --sigma-w2)")
    p.add_argument("--weights", choices=("orthogonal", "gaussian"), default="orthogonal")
    p.add_argument("--samples", type=positive_int("--samples"), default=1, help="number of networks (default 1)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--stable", action="store_true", help="QR-accumulated product (resolves tiny eigenvalues)")
    p.add_argument("--floor", type=nonneg_float("--floor"), default=1e-20, help="eigenvalues below count as 0 (default 1e-20)")
    p.add_argument("--compare", action="store_true", help="compare with isometry.jacobian_spectrum (KS, quantiles, moments)")
    p.add_argument("-o", "--output", default=None, help="save a histogram (with the theory when --compare) to this image")
    p.add_argument("--log", action="store_true", help="log-scale x axis in the plot")
    p.add_argument("--singular-values", action="store_true", help="plot singular values instead of eigenvalues")
    p.add_argument("--save", default=None, help="save the eigenvalues (networks x N) to this .npy file")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..empirical import compare, empirical_spectrum
    from ..meanfield import network_parameters

    act = resolve_activation(args)
    if args.q_star is None and (args.sigma_w2 is None or args.sigma_b2 is None):
        raise ValueError("give --q-star Q, or both --sigma-w2 and --sigma-b2")
    if args.q_star is not None and (args.sigma_w2 is not None or args.sigma_b2 is not None):
        raise ValueError("give either --q-star or --sigma-w2/--sigma-b2, not both")
    kw = {"q_star": args.q_star} if args.q_star is not None else {"sigma_w2": args.sigma_w2, "sigma_b2": args.sigma_b2}
    sw, sb, q = network_parameters(act, **kw)
    lam = empirical_spectrum(act, args.depth, args.width, weights=args.weights, n_samples=args.samples, seed=args.seed,
                             stable=args.stable, **kw).reshape(args.samples, args.width)
    if args.save:
        np.save(args.save, lam)
    pooled = lam.ravel()
    x = np.where(pooled < args.floor, 0.0, pooled)
    out = {
        "activation": act.name, "depth": args.depth, "width": args.width, "weights": args.weights,
        "sigma_w2": sw, "sigma_b2": sb, "q_star": q, "samples": args.samples, "seed": args.seed, "stable": args.stable,
        "mean": float(x.mean()), "variance": float(x.var()), "max": float(x.max()), "zero_fraction": float(np.mean(x == 0)),
        "quantiles": {str(p): float(v) for p, v in zip(QUANTILES, np.quantile(x, QUANTILES))},
    }
    cmp = None
    if args.compare:
        from .. import jacobian_spectrum

        theory = jacobian_spectrum(act, args.depth, weights=args.weights, **kw)
        cmp = compare(theory, lam, floor=args.floor, seed=args.seed)
        out["comparison"] = cmp.as_dict()
    if args.output:
        if cmp is not None:
            cmp.plot(log=args.log, singular_values=args.singular_values, path=args.output)
        else:
            _histogram(x, args)
        out["plot"] = args.output
    if args.json:
        print_json(out)
        return 0
    print(f"J J^T of {args.samples} {args.weights} {act.name} network(s), L = {args.depth}, N = {args.width}: "
          f"sigma_w2 = {sw:.6g}, sigma_b2 = {sb:.6g}, q* = {q:.6g}")
    print(f"  mean {out['mean']:.6g}   variance {out['variance']:.6g}   max {out['max']:.6g}   "
          f"fraction < {args.floor:g}: {out['zero_fraction']:.4f}")
    print("  quantiles " + "  ".join(f"{p:g}: {v:.4g}" for p, v in zip(QUANTILES, np.quantile(x, QUANTILES))))
    if cmp is not None:
        print(cmp.table())
    if args.output:
        print(f"plot written to {args.output}")
    return 0


def _histogram(x: np.ndarray, args) -> None:
    from ..plotting import _plt, save_figure

    plt = _plt()
    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    v = x[x > 0]
    if args.singular_values:
        v = np.sqrt(v)
    if v.size == 0:
        raise ValueError("no non-zero eigenvalues to plot")
    if args.log:
        edges = np.logspace(np.log10(v.min()), np.log10(v.max()), 81)
        ax.set_xscale("log")
    else:
        edges = np.linspace(0.0, v.max(), 81)
    ax.hist(v, bins=edges, density=not args.log, alpha=0.6)
    ax.set_xlabel("singular value" if args.singular_values else r"eigenvalue $\lambda$ of $JJ^T$")
    ax.set_ylabel("count" if args.log else "density")
    save_figure(fig, args.output)
