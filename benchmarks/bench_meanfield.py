"""Mean-field speed: critical_point (closed form / quadrature) and a 200 x 200 phase diagram.

Prints times and ratios against a baseline measured in the same run (one 1000 x 1000 float64 GEMM),
since the machines are noisy. Targets: critical_point < 1 ms closed form, < 10 ms with quadrature;
a 200 x 200 tanh phase diagram < 2 s; c_star by bracketing in milliseconds.

    python benchmarks/bench_meanfield.py
"""

from __future__ import annotations


import numpy as np

import isometry as iso
from _timing import best


def main() -> None:
    a = np.random.default_rng(0).standard_normal((1000, 1000))
    gemm = best(lambda: a @ a, 5)
    print(f"baseline: 1000x1000 GEMM {gemm * 1e3:.1f} ms")
    rows = []
    for name in ["relu", "hard_tanh", "erf", "tanh", "silu", "selu"]:
        unit = iso.get_activation(name)
        q = 0.5 if name not in ("silu",) else 0.05
        try:
            iso.critical_point(unit, q)
        except ValueError:
            q = 0.05
        t = best(lambda: [iso.critical_point(unit, q) for _ in range(50)], 5) / 50
        kind = "closed form" if unit.e_phi2 is not None else "quadrature"
        rows.append((name, kind, t))
        print(f"critical_point({name:10s}) [{kind:11s}] {t * 1e3:7.3f} ms  = {t / gemm:6.3f} GEMMs")
    sw = np.linspace(0.5, 3, 200)
    sb = np.linspace(0, 0.25, 200)
    iso.phase_diagram("tanh", sw[:20], sb[:20])
    t = best(lambda: iso.phase_diagram("tanh", sw, sb), n=3)
    print(f"phase_diagram(tanh, 200 x 200) {t:.3f} s  = {t / gemm:6.1f} GEMMs")
    naive = best(lambda: [iso.q_star("tanh", sw[i], sb[j]) for i in range(0, 200, 20) for j in range(0, 200, 20)], 1) * 400
    print(f"  vs scalar q_star loop (extrapolated from 100 points): {naive:.1f} s, ratio {naive / t:.0f}x")
    t = best(lambda: iso.phase_diagram("silu", sw, sb), n=1)
    print(f"phase_diagram(silu, 200 x 200, q* diverges on part of it) {t:.3f} s  = {t / gemm:6.1f} GEMMs")
    for sw_c in (1.06, 1.2, 2.0):
        t = best(lambda: iso.c_star("tanh", sw_c, 2e-5), 3)
        print(f"c_star(tanh, {sw_c}, 2e-5) = {iso.c_star('tanh', sw_c, 2e-5):.10f}  {t * 1e3:7.1f} ms  = {t / gemm:6.1f} GEMMs")


if __name__ == "__main__":
    main()
