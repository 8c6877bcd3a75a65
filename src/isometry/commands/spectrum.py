"""`isometry spectrum ACT --depth L (--q-star Q | --sigma-w2 A --sigma-b2 B) [--weights W] [-o plot.png] [--json]`.

The free-probability spectrum of J J^T: mean, variance, atoms, largest eigenvalue
and quantiles; ``-o`` plots the singular-value density.
"""

from __future__ import annotations

import math

from ._common import add_activation_args, nonneg_float, positive_float, positive_int, print_json, resolve_activation

QUANTILES = (0.01, 0.1, 0.25, 0.5, 0.75, 0.9, 0.99)


def register(sub) -> None:
    p = sub.add_parser("spectrum", help="free-probability spectrum of the input-output Jacobian J J^T")
    add_activation_args(p)
    p.add_argument("--depth", "-L", type=positive_int("--depth"), required=True, help="number of layers L")
    p.add_argument("--q-star", type=positive_float("--q-star"), default=None, help="fixed point q* (critical network)")
    p.add_argument("--sigma-w2", type=positive_float("--sigma-w2"), default=None, help="weight variance sigma_w^2")
    p.add_argument("--sigma-b2", type=nonneg_float("--sigma-b2"), default=None, help="bias variance sigma_b^2")
    p.add_argument("--weights", choices=["orthogonal", "gaussian"], default="orthogonal", help="weight law")
    p.add_argument("-o", "--output", default=None, help="write a plot of the singular-value density (PNG/PDF)")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..spectrum import jacobian_spectrum

    if args.q_star is not None and (args.sigma_w2 is not None or args.sigma_b2 is not None):
        raise ValueError("give either --q-star or --sigma-w2 and --sigma-b2, not both")
    if args.q_star is None and (args.sigma_w2 is None or args.sigma_b2 is None):
        raise ValueError("give --q-star Q, or both --sigma-w2 A and --sigma-b2 B")
    act = resolve_activation(args)
    if args.q_star is not None:
        sp = jacobian_spectrum(act, args.depth, q_star=args.q_star, weights=args.weights)
    else:
        sp = jacobian_spectrum(act, args.depth, sigma_w2=args.sigma_w2, sigma_b2=args.sigma_b2, weights=args.weights)
    d = sp.summary(QUANTILES)
    if args.output:
        from ..plotting import _plt, save_figure

        plt = _plt()
        fig, ax = plt.subplots(figsize=(5.5, 3.8))
        sp.plot(ax=ax)
        save_figure(fig, args.output)
        plt.close(fig)
        d["plot"] = args.output
    if args.json:
        print_json(d)
        return 0
    print(f"spectrum of J J^T: {d['activation']}, L = {sp.depth}, {d['weights']} weights")
    print(f"  q*        = {sp.q_star:.6g}   sigma_w2 = {sp.sigma_w2:.6g}   sigma_b2 = {sp.sigma_b2:.6g}   chi = {sp.chi:.6g}")

    def show(name, key, logkey=None):
        v = d.get(key)
        if v is None and logkey is not None:
            print(f"  {name:9s} = exp({d[logkey]:.10g})")
        else:
            print(f"  {name:9s} = {v:.10g}")

    show("mean", "mean", "log_mean")
    if d["variance"] is None:
        print(f"  variance  = exp({2 * sp.log_scale + math.log(max(sp.variance_normalised, 1e-300)):.10g})")
    else:
        print(f"  variance  = {d['variance']:.10g}")
    print(f"  atom at 0 = {d['atom']:.10g}")
    for lam, m in d["atoms"]:
        print(f"  atom      = {m:.10g} at lambda = {lam:.10g}")
    show("max eig", "max_eigenvalue", "log_max_eigenvalue")
    print("  quantiles of lambda:")
    for p in QUANTILES:
        v = d["quantiles"][str(p)]
        lv = d["log_quantiles"][str(p)]
        txt = f"{v:.6g}" if v is not None and (v > 0 or lv == -math.inf) else f"exp({lv:.6g})"
        print(f"    {p:>5}: {txt}")
    if args.output:
        print(f"  plot: {args.output}")
    return 0
