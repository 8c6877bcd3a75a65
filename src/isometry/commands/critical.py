"""`isometry critical ACTIVATION --q-star Q [--json]`: the critical point (chi = 1) with fixed point q*."""

from __future__ import annotations

from ._common import add_activation_args, add_json_arg, positive_float, print_json, resolve_activation


def register(sub) -> None:
    p = sub.add_parser("critical", help="critical point (chi = 1) of an activation at a given q*")
    add_activation_args(p)
    p.add_argument("--q-star", type=positive_float("--q-star"), metavar="Q", required=True, help="fixed point q* > 0")
    add_json_arg(p, "the critical point (sigma_w2, sigma_b2, mu1, mu2, chi)")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..meanfield import critical_point

    act = resolve_activation(args)
    cp = critical_point(act, args.q_star)
    d = {"activation": act.name, **cp.to_dict()}
    if args.json:
        print_json(d)
    else:
        print(f"critical point of {act.name} at q* = {cp.q_star:.6g}")
        for k in ("sigma_w2", "sigma_b2", "mu1", "mu2", "chi"):
            print(f"  {k:9s} = {d[k]:.10g}")
        ratio = cp.mu2 / cp.mu1**2
        print(f"  mu2/mu1^2 = {ratio:.6g}  (per-layer spread of J J^T: orthogonal {ratio - 1:.4g}, gaussian {ratio:.4g})")
    return 0
