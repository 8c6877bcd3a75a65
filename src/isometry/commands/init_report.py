"""`isometry init-report ACT --depth L --width N [--q-star Q | --sigma0-2 S]`: what critical_init_ would do.

Builds the MLP ``isometry.torch.mlp(L, N, ACT, d_in, d_out)`` on PyTorch's meta device (no
memory, no random numbers), runs :func:`isometry.torch.critical_init_` on it and prints the
:class:`~isometry.torch.InitReport`: q*, sigma_w2, sigma_b2, the predicted spectrum of J J^T,
whether the network can be isometric (and why not), and the per-layer table.
"""

from __future__ import annotations

import math

from ._common import add_activation_args, positive_float, positive_int, print_json, resolve_activation


def register(sub) -> None:
    p = sub.add_parser(
        "init-report",
        help="what critical_init_ would do for an MLP: q*, sigma_w2, sigma_b2, predicted spectrum",
        description="Print the critical initialisation of a depth-L, width-N MLP and its predicted "
        "Jacobian spectrum (nothing is trained or sampled).",
    )
    add_activation_args(p)
    p.add_argument("--depth", type=positive_int("--depth"), required=True, help="number of (Linear, activation) layers L")
    p.add_argument("--width", type=positive_int("--width"), required=True, help="hidden width N")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--q-star", type=positive_float("--q-star"), default=None, help="fixed point q* > 0")
    g.add_argument("--sigma0-2", type=positive_float("--sigma0-2"), default=None,
                   help="target variance sigma^2_JJT of the eigenvalues of J J^T (default 0.25)")
    p.add_argument("--weights", choices=("orthogonal", "gaussian"), default="orthogonal")
    p.add_argument("--d-in", type=positive_int("--d-in"), default=None, help="input dimension (default N)")
    p.add_argument("--d-out", type=positive_int("--d-out"), default=None, help="readout dimension (default: none)")
    p.add_argument("--strict", action="store_true", help="exit 2 if the network cannot be isometric")
    p.add_argument("--plot", metavar="FILE.png", default=None, help="save the predicted singular-value density")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=run)


def _finite_or_none(d):
    if isinstance(d, dict):
        return {k: _finite_or_none(v) for k, v in d.items()}
    if isinstance(d, (list, tuple)):
        return [_finite_or_none(v) for v in d]
    if isinstance(d, float) and not math.isfinite(d):
        return None
    return d


def run(args) -> int:
    try:
        from ..torch import critical_init_, mlp
    except ImportError as exc:  # pragma: no cover
        raise ValueError(str(exc)) from None

    act = resolve_activation(args)
    model = mlp(args.depth, args.width, act, d_in=args.d_in, d_out=args.d_out, device="meta")
    report = critical_init_(model, q_star=args.q_star, sigma0_2=args.sigma0_2, weights=args.weights,
                            strict=args.strict)
    if args.plot:
        from ..plotting import save_figure

        ax = report.plot()
        save_figure(ax.figure, args.plot)
    if args.json:
        print_json(_finite_or_none(report.as_dict()))
    else:
        print(report)
        if args.plot:
            print(f"wrote {args.plot}")
    return 0
