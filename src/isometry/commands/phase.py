"""`isometry phase ACTIVATION [-o PATH] [--json]`: the order/chaos phase diagram (paper Fig. 1).

Writes the figure to ``-o/--out PATH`` (default ``phase.png``; with ``--json`` and no ``-o``, no
figure) and, with ``--json``, prints the critical line inside the grid as JSON.

The default sigma_w2 range follows the activation's valid range: for the positively homogeneous
units (linear, relu, leaky_relu) q* exists only for sigma_w2 < 1 / E[phi(z)^2] (2 for ReLU),
where their critical point sits, so their range is (1/4, 5/4) of that threshold: the ordered
phase, the critical point and the start of the region without a fixed point (hatched).
"""

from __future__ import annotations

import numpy as np

from ._common import (add_activation_args, add_json_arg, add_out_arg, check_output_path, positive_int, print_json,
                      resolve_activation, status_stream)

_JSON_Q_STARS = np.geomspace(1e-4, 10.0, 41)  # 8 points per decade


def register(sub) -> None:
    p = sub.add_parser("phase", help="order/chaos phase diagram with the critical line coloured by q*",
                       description="Order/chaos phase diagram (chi = sigma_w2 mu_1(q*)) on a (sigma_w2, sigma_b2) "
                                   "grid, with the critical line chi = 1 coloured by q*.")
    add_activation_args(p)
    add_out_arg(p, "figure to write, PNG, PDF or SVG by suffix (default: phase.png; with --json, no figure unless "
                   "-o is given)")
    p.add_argument("--sigma-w2", nargs=2, type=float, default=None, metavar=("MIN", "MAX"),
                   help="weight-variance range (default: 0.5 3; for linear, relu, leaky_relu 1/4 to 5/4 of the "
                        "sigma_w2 where q* diverges, e.g. 0.5 2.5 for relu)")
    p.add_argument("--sigma-b2", nargs=2, type=float, default=None, metavar=("MIN", "MAX"),
                   help="bias-variance range (default: 0 0.25)")
    p.add_argument("--grid", type=positive_int("--grid"), metavar="N", default=200, help="grid points per axis")
    add_json_arg(p, "the critical line inside the grid (q*, sigma_w2, sigma_b2 per point, q* from 1e-4 to 10)")
    p.set_defaults(func=run)


def default_sigma_w2_range(activation) -> tuple[float, float]:
    """(0.5, 3), or for positively homogeneous units (1/4, 5/4) / E[phi(z)^2] (q* exists for sigma_w2 < 1/E[phi^2])."""
    from ..meanfield import e_phi2

    if activation.homogeneous:
        c = float(e_phi2(activation, 1.0))
        return 0.25 / c, 1.25 / c
    return 0.5, 3.0


def run(args) -> int:
    from ..meanfield import critical_line, phase_diagram
    from ..plotting import save_figure

    act = resolve_activation(args)
    lo, hi = args.sigma_w2 if args.sigma_w2 is not None else default_sigma_w2_range(act)
    if not (0 < lo < hi and np.isfinite(hi)):
        raise ValueError(f"--sigma-w2 needs 0 < MIN < MAX, got {lo} {hi}")
    blo, bhi = args.sigma_b2 if args.sigma_b2 is not None else (0.0, 0.25)
    if not (0 <= blo < bhi and np.isfinite(bhi)):
        raise ValueError(f"--sigma-b2 needs 0 <= MIN < MAX, got {blo} {bhi}")
    if args.grid < 2:
        raise ValueError(f"--grid needs at least 2 points per axis, got {args.grid}")
    out = args.out if args.out is not None or args.json else "phase.png"
    check_output_path(out, "--out")
    if out is not None:
        pd = phase_diagram(act, np.linspace(lo, hi, args.grid), np.linspace(blo, bhi, args.grid))
        save_figure(pd.plot(), out)
        print(f"wrote {out}", file=status_stream(args))
    if args.json:
        line = critical_line(act, _JSON_Q_STARS)
        tol = 1e-12 * hi
        points = [{"q_star": p["q_star"], "sigma_w2": p["sigma_w2"], "sigma_b2": p["sigma_b2"]}
                  for p in line.to_dict()["points"]
                  if lo - tol <= p["sigma_w2"] <= hi + tol and blo <= p["sigma_b2"] <= bhi]
        print_json({"activation": act.name, "sigma_w2_range": [lo, hi], "sigma_b2_range": [blo, bhi],
                    "critical_line": points})
    return 0
