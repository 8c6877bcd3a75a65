"""`isometry spectrum ACTIVATION --depth L (--q-star Q | --sigma-w2 A --sigma-b2 B) [--weights W] [-o PATH] [--json]`.

The free-probability law of the eigenvalues of J J^T: mean, variance, atoms, largest
eigenvalue and quantiles (log forms where a value does not fit in a double); ``-o`` draws
the law of the singular values (or of the eigenvalues with ``--eigenvalues``), on a log axis
for heavy-tailed laws unless ``--log``/``--no-log`` says otherwise.
"""

from __future__ import annotations

import argparse
import math

from ._common import (add_activation_args, add_json_arg, add_out_arg, check_output_path, nonneg_float, positive_float,
                      positive_int, print_json, resolve_activation, status_stream)

QUANTILES = (0.01, 0.1, 0.25, 0.5, 0.75, 0.9, 0.99)


def register(sub) -> None:
    p = sub.add_parser("spectrum", help="free-probability spectrum of the input-output Jacobian J J^T",
                       description="The law of the eigenvalues of J J^T of a deep random network (Pennington, "
                                   "Schoenholz & Ganguli 2017): at the critical point with fixed point --q-star, or "
                                   "at given --sigma-w2 and --sigma-b2.")
    add_activation_args(p)
    p.add_argument("--depth", "-L", type=positive_int("--depth"), metavar="L", required=True,
                   help="number of critical layers L (at most 1e7)")
    p.add_argument("--q-star", type=positive_float("--q-star"), metavar="Q", default=None,
                   help="fixed point q* (critical network)")
    p.add_argument("--sigma-w2", type=positive_float("--sigma-w2"), metavar="VAR", default=None,
                   help="weight variance sigma_w^2")
    p.add_argument("--sigma-b2", type=nonneg_float("--sigma-b2"), metavar="VAR", default=None,
                   help="bias variance sigma_b^2")
    p.add_argument("--weights", choices=["orthogonal", "gaussian"], default="orthogonal", help="weight law")
    add_out_arg(p, "write a figure of the law to this file (PNG, PDF or SVG by suffix)")
    p.add_argument("--log", action=argparse.BooleanOptionalAction, default=None,
                   help="log value axis in the figure (default: chosen for heavy-tailed or very wide laws)")
    p.add_argument("--eigenvalues", action="store_true",
                   help="draw the eigenvalues lambda of J J^T instead of the singular values s = sqrt(lambda)")
    add_json_arg(p, "the law's summary (mean, variance, atoms, largest eigenvalue, quantiles; log forms)")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..spectrum import jacobian_spectrum

    act = resolve_activation(args)
    check_output_path(args.out, "--out")
    sp = jacobian_spectrum(act, args.depth, q_star=args.q_star, sigma_w2=args.sigma_w2, sigma_b2=args.sigma_b2,
                           weights=args.weights)
    d = sp.to_dict(QUANTILES)
    if args.out:
        from ..plotting import save_figure

        save_figure(sp.plot(log=args.log, singular_values=not args.eigenvalues), args.out)
        d["plot"] = args.out
    if args.json:
        print_json(d)
        if args.out:
            print(f"wrote {args.out}", file=status_stream(args))
        return 0
    print(f"spectrum of J J^T: {sp.activation}, L = {sp.depth}, {sp.weights} weights")
    print(f"  q*        = {sp.q_star:.6g}   sigma_w2 = {sp.sigma_w2:.6g}   sigma_b2 = {sp.sigma_b2:.6g}   chi = {sp.chi:.6g}")

    def show(name, value, log_value):
        text = f"exp({log_value:.10g})" if value is None else f"{value:.10g}"
        print(f"  {name:9s} = {text}")

    show("mean", d["mean"], d["log_mean"])
    show("variance", d["var"], d["log_var"])
    print(f"  atom at 0 = {d['zero_mass']:.10g}")
    for (lam, m), (t, _) in zip(d["atoms"], d["log_atoms"]):
        where = f"{lam:.10g}" if lam is not None else f"exp({t:.10g})"
        print(f"  atom      = {m:.10g} at lambda = {where}")
    show("max eig", d["max_eigenvalue"], d["log_max_eigenvalue"])
    print("  quantiles of lambda:")
    for p in QUANTILES:
        v = d["quantiles"][str(p)]
        lv = d["log_quantiles"][str(p)]
        txt = f"{v:.6g}" if v is not None and (v > 0 or lv == -math.inf) else f"exp({lv:.6g})"
        print(f"    {p:>5}: {txt}")
    if args.out:
        print(f"wrote {args.out}")
    return 0
