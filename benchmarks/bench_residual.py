"""Residual-network spectrum speed: the free-probability law against Monte Carlo, as ratios.

For each (activation, weights) and depth L, with the branch scale at normalised variance 1/2
(``isometry.residual_branch_scale``), prints the CPU time (``time.process_time``, best of a few: the
machine may be shared) to

* build the law (mean field, D^2 laws of the block groups, band tracing),
* evaluate its cdf at 1000 points,

and the ratios against one random residual network of width 500 and 1000 (the eigenvalues of J J^T:
L products and one SVD; measured up to L = 64, per-block cost extrapolated beyond, marked ~). A
histogram with the resolution of the law needs many such networks.

    python benchmarks/bench_residual.py [--quick]
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402

from isometry.residual import residual_branch_scale, residual_eigenvalues  # noqa: E402
from isometry.spectrum.residual import residual_spectrum  # noqa: E402
from _timing import best  # noqa: E402


def cpu_best(f, n: int = 2) -> float:
    """The least CPU time of ``n`` calls."""
    return best(f, n, clock=time.process_time)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="fewer depths and cases")
    args = ap.parse_args()
    depths = [4, 16, 64] if args.quick else [4, 16, 64, 256, 1024]
    cases = [("tanh", "orthogonal"), ("relu", "orthogonal")] if args.quick else [
        ("tanh", "orthogonal"), ("tanh", "gaussian"), ("relu", "orthogonal"), ("relu", "gaussian"),
        ("erf", "orthogonal")]
    mc_depths = [d for d in depths if d <= 64]
    print(f"{'activation':10s} {'weights':10s} {'L':>5s} {'law s':>7s} {'cdf s':>7s} {'MC500 s':>8s} {'MC1000 s':>9s} "
          f"{'MC500/law':>10s} {'MC1000/law':>11s}")
    for act, w in cases:
        per_block = {}
        for L in depths:
            a = residual_branch_scale(act, L, sigma0_2=0.5, weights=w)

            def build():
                sp = residual_spectrum(act, L, branch_scale=a, weights=w)
                sp._bands  # noqa: B018 - the traced bands are the cost
                return sp

            t_law = cpu_best(build)
            sp = build()
            x = np.exp(np.linspace(*sp.log_eigenvalues.support(), 1000))
            t_cdf = cpu_best(lambda: sp.cdf(x), 1)
            mc = {}
            for n in (500, 1000):
                if L in mc_depths:
                    mc[n] = cpu_best(lambda: residual_eigenvalues(act, L, n, branch_scale=a, weights=w, seed=0), 1)
                    per_block[n] = mc[n] / L
                    mark = ""
                else:
                    mc[n] = per_block[n] * L
                    mark = "~"
            law = t_law + t_cdf
            print(f"{act:10s} {w:10s} {L:5d} {t_law:7.2f} {t_cdf:7.2f} {mark}{mc[500]:7.2f} {mark}{mc[1000]:8.2f} "
                  f"{mc[500] / law:10.2f} {mc[1000] / law:11.2f}")


if __name__ == "__main__":
    main()
