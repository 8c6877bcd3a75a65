"""`isometry init-report ACTIVATION --depth L --width N [--mode critical|dks|tat] [--q-star Q | --sigma0-2 S]
[--zeta Z | --tau T | --eta E] [-o PATH] [--json]`: what critical_init_ would do.

Builds the MLP ``isometry.torch.mlp(L, N, ACT, d_in, d_out)`` on PyTorch's meta device (no
parameter memory, no random numbers), runs :func:`isometry.torch.critical_init_` on it and
prints the :class:`~isometry.torch.InitReport`: q*, sigma_w2, sigma_b2, the predicted spectrum
of J J^T over the L critical layers, whether the network can be isometric (and why not), and
the per-layer table. ``--mode dks`` / ``--mode tat`` report the kernel-shaped initialisation
instead (the shaped activation, its parameters, the replaced modules and the shaped network's
predicted spectrum). The memory and time of the request are estimated first; a request that
would not fit in memory, or would take longer than :data:`MAX_SECONDS`, is refused with what it
would need.
"""

from __future__ import annotations

import sys

from ._common import (add_activation_args, add_json_arg, add_out_arg, check_output_path, positive_float, positive_int,
                      print_json, resolve_activation)

MAX_SECONDS = 300.0
"""The longest report the command builds (estimated up front): a few hundred thousand layers."""


def register(sub) -> None:
    p = sub.add_parser(
        "init-report",
        help="what critical_init_ would do for an MLP: q*, sigma_w2, sigma_b2, predicted spectrum",
        description="Print the critical initialisation of an MLP with L critical layers of width N and the "
        "predicted spectrum of the Jacobian of its body, the square critical stack (nothing is trained or sampled).",
    )
    add_activation_args(p)
    p.add_argument("--depth", type=positive_int("--depth"), metavar="L", required=True,
                   help="number L of critical (Linear(N, N), activation) layers")
    p.add_argument("--width", type=positive_int("--width"), metavar="N", required=True,
                   help="width N of the critical layers")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--q-star", type=positive_float("--q-star"), metavar="Q", default=None, help="fixed point q* > 0")
    g.add_argument("--sigma0-2", type=positive_float("--sigma0-2"), metavar="VAR", default=None,
                   help="target variance sigma^2_JJT of the eigenvalues of J J^T (default 0.25)")
    p.add_argument("--mode", choices=("critical", "dks", "tat"), default="critical",
                   help="critical orthogonal initialisation, or kernel shaping (DKS, TAT)")
    p.add_argument("--zeta", type=positive_float("--zeta"), metavar="Z", default=None,
                   help="--mode dks: target maximal C'_f(1) of the network, > 1 (default 1.5)")
    p.add_argument("--tau", type=positive_float("--tau"), metavar="T", default=None,
                   help="--mode tat, smooth units: target maximal C''_f(1) (default 0.3)")
    p.add_argument("--eta", type=positive_float("--eta"), metavar="E", default=None,
                   help="--mode tat, (leaky) ReLU: target maximal C_f(0) in (0, 1) (default 0.9)")
    p.add_argument("--weights", choices=("orthogonal", "gaussian"), default="orthogonal", help="weight law")
    p.add_argument("--d-in", type=positive_int("--d-in"), metavar="D", default=None,
                   help="input dimension (default N; another value adds a linear stem Linear(d_in, N))")
    p.add_argument("--d-out", type=positive_int("--d-out"), metavar="K", default=None,
                   help="readout dimension (default: none)")
    p.add_argument("--strict", action="store_true", help="exit 2 if the network cannot be isometric")
    add_out_arg(p, "write a figure of the predicted law of the singular values to this file (PNG, PDF or SVG by "
                   "suffix)")
    add_json_arg(p, "the report")
    p.set_defaults(func=run)


def check_request(depth: int, width: int, d_in: int | None, d_out: int | None) -> None:
    """Refuse (``ValueError``) a report whose estimated memory does not fit or whose estimated
    time exceeds :data:`MAX_SECONDS`, saying what it would need."""
    from ..torch._common import available_memory, format_bytes, format_seconds
    from ..torch.init import init_cost
    from ..torch.modules import mlp_cost

    need, seconds, n_mod = mlp_cost(depth, width, d_in, d_out, device="meta")
    n_affine = depth + (d_in is not None and d_in != width) + (d_out is not None)
    b, s = init_cost(n_affine)
    need, seconds = need + b, seconds + s
    what = f"init-report --depth {depth} ({n_mod} modules)"
    have = available_memory()
    if have is not None and need > have:
        raise ValueError(f"{what} needs about {format_bytes(need)} of memory, but only {format_bytes(have)} "
                         "is available; reduce --depth")
    if seconds > MAX_SECONDS:
        raise ValueError(f"{what} would take about {format_seconds(seconds)} and {format_bytes(need)} "
                         f"(the limit is {format_seconds(MAX_SECONDS)}); reduce --depth")


def run(args) -> int:
    try:
        from ..torch import critical_init_, mlp
    except ImportError as exc:  # pragma: no cover
        raise ValueError(str(exc)) from None

    act = resolve_activation(args)
    check_output_path(args.out, "--out")
    check_request(args.depth, args.width, args.d_in, args.d_out)
    model = mlp(args.depth, args.width, act, d_in=args.d_in, d_out=args.d_out, device="meta")
    report = critical_init_(model, mode=args.mode, q_star=args.q_star, sigma0_2=args.sigma0_2, zeta=args.zeta,
                            tau=args.tau, eta=args.eta, weights=args.weights, strict=args.strict)
    if args.out:
        from ..plotting import pyplot

        pyplot().close(report.plot(path=args.out))
    if args.json:
        print_json(report.to_dict())
    else:
        print(report)
    if args.out:
        print(f"wrote {args.out}", file=sys.stderr if args.json else sys.stdout)
    return 0
