"""`isometry phase ACT -o FILE.png`: the order/chaos phase diagram (paper Fig. 1)."""

from __future__ import annotations

import numpy as np

from ._common import add_activation_args, positive_int, print_json, resolve_activation


def register(sub) -> None:
    p = sub.add_parser("phase", help="order/chaos phase diagram with the critical line coloured by q*")
    add_activation_args(p)
    p.add_argument("-o", "--output", default="phase.png", help="PNG file to write (default phase.png)")
    p.add_argument("--sigma-w2", nargs=2, type=float, default=(0.5, 3.0), metavar=("MIN", "MAX"))
    p.add_argument("--sigma-b2", nargs=2, type=float, default=(0.0, 0.25), metavar=("MIN", "MAX"))
    p.add_argument("--grid", type=positive_int("--grid"), default=200, help="grid points per axis")
    p.add_argument("--json", action="store_true", help="also print the critical line as JSON")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..meanfield import phase_diagram
    from ..plotting import save_figure

    lo, hi = args.sigma_w2
    if not (0 < lo < hi and np.isfinite(hi)):
        raise ValueError(f"--sigma-w2 needs 0 < MIN < MAX, got {lo} {hi}")
    blo, bhi = args.sigma_b2
    if not (0 <= blo < bhi and np.isfinite(bhi)):
        raise ValueError(f"--sigma-b2 needs 0 <= MIN < MAX, got {blo} {bhi}")
    act = resolve_activation(args)
    pd = phase_diagram(act, np.linspace(lo, hi, args.grid), np.linspace(blo, bhi, args.grid))
    fig = pd.plot()
    save_figure(fig, args.output)
    print(f"wrote {args.output}")
    if args.json:
        print_json({"activation": act.name, "sigma_w2": pd.sigma_w2[0], "sigma_b2": pd.sigma_b2[:, 0],
                    "q_star": pd.q_star, "chi": pd.chi})
    return 0
