"""Spectrum engine speed: a 1000-point density curve per (activation, weights, L).

For each pair and depth L in {10, 1e2, 1e3, 1e4, 1e5} prints the time to build the
spectrum (critical-point scan + band tracing, done once per spectrum) and the
time for a 1000-point density curve on it, with ratios against two baselines
measured in the same run:

* Monte Carlo: one width-1000 random network of the same depth (eigenvalues of
  J J^T; measured at L = 10 and 30, per-layer cost extrapolated beyond, marked ~);
  a histogram of the same resolution needs many such networks;
* the polynomial-root method (degree L+1 roots per point, continuity tracking;
  Bernoulli/linear units only, L <= 64 where it still works).

    python benchmarks/bench_spectrum.py [--quick]
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402

import isometry as iso  # noqa: E402
from isometry.spectrum import jacobian_spectrum  # noqa: E402
from isometry.spectrum.closed_forms import polynomial_density  # noqa: E402

Q_STAR = {"relu": 1.0, "leaky_relu": 1.0, "hard_tanh": 0.5, "shifted_relu": 1.0, "linear": 1.0, "tanh": 0.5,
          "erf": 0.5, "silu": 1.0, "gelu": 0.5, "elu": 1.0, "selu": 1.0, "sigmoid": 0.5, "softplus": 0.5}


def _setting(name: str) -> dict:
    """A critical point if the activation has one, else an off-critical (sigma_w2, sigma_b2)."""
    q = Q_STAR[name]
    for cand in (q, 0.1, 0.01, 1e-3):
        try:
            iso.critical_point(name, cand)
            return {"q_star": cand}
        except ValueError:
            continue
    return {"sigma_w2": 1.0, "sigma_b2": 0.1}  # sigmoid, softplus: no critical point with sigma_b2 >= 0


def monte_carlo_time(activation: str, L: int, q: float, weights: str, width: int = 1000) -> float:
    rng = np.random.default_rng(0)
    a = iso.get_activation(activation)
    cp = iso.critical_point(a, q)
    t = time.perf_counter()
    J = np.eye(width)
    for _ in range(L):
        if weights == "orthogonal":
            Q, R = np.linalg.qr(rng.standard_normal((width, width)))
            W = Q * np.sign(np.diag(R)) * np.sqrt(cp.sigma_w2)
        else:
            W = rng.standard_normal((width, width)) * np.sqrt(cp.sigma_w2 / width)
        d = a.dphi(np.sqrt(q) * rng.standard_normal(width))
        J = (d[:, None] * W) @ J
    np.linalg.eigvalsh(J @ J.T)
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="fewer activations and depths")
    args = ap.parse_args()
    acts = ["relu", "hard_tanh", "tanh", "erf"] if args.quick else list(Q_STAR)
    depths = [10, 1000, 100000] if args.quick else [10, 100, 1000, 10**4, 10**5]
    mc = {}
    for w in ("orthogonal", "gaussian"):
        t10 = monte_carlo_time("tanh", 10, 0.5, w)
        t30 = monte_carlo_time("tanh", 30, 0.5, w)
        mc[w] = (t10, max(t30 - t10, 0.0) / 20.0)  # fixed + per-layer cost
        print(f"baseline Monte Carlo (one width-1000 network, {w}): L=10 {t10:.2f} s, L=30 {t30:.2f} s")
    print()
    print(f"{'activation':12s} {'weights':10s} {'L':>7s} {'build s':>8s} {'curve s':>8s} {'MC/curve':>10s} "
          f"{'MC/(build+curve)':>17s} {'mass err':>9s}")
    worst = 0.0
    for name in acts:
        kw = _setting(name)
        for w in ("orthogonal", "gaussian"):
            for L in depths:
                t = time.perf_counter()
                sp = jacobian_spectrum(name, L, weights=w, **kw)
                try:
                    lmax = sp.max_eigenvalue
                except ValueError:  # chi^L beyond double range: the curve in log form
                    lmax = None
                tb = time.perf_counter() - t
                t = time.perf_counter()
                if lmax is not None:
                    d = sp.pdf(np.linspace(lmax * 1e-6, lmax, 1000))
                else:
                    top = sp.log_max_eigenvalue
                    d = sp.log_eigenvalues.pdf(np.linspace(top - 50.0, top, 1000))
                tc = time.perf_counter() - t
                assert np.all(np.isfinite(d))
                worst = max(worst, tc)
                t10, per = mc[w]
                tmc = t10 + per * (L - 10)
                mark = "" if L == 10 else "~"
                err = sp.continuous_mass + sum(m for _, m in sp.atoms) - 1.0
                print(f"{name:12s} {w:10s} {L:7d} {tb:8.3f} {tc:8.3f} {mark + f'{tmc / tc:.0f}':>10s} "
                      f"{mark + f'{tmc / (tb + tc):.0f}':>17s} {err:9.1e}")
    print(f"\nslowest 1000-point curve: {worst:.3f} s (machine load average {os.getloadavg()[0]:.1f})")
    print("\nexact sampling by inverse cdf (log_eigenvalues.rvs) and quantiles (log_eigenvalues.ppf):")
    for name, q, L, w in (("tanh", 0.5, 10, "orthogonal"), ("relu", 1.0, 10, "gaussian"), ("erf", 1.0, 1000, "orthogonal")):
        sp = jacobian_spectrum(name, L, q_star=q, weights=w)
        sp.cdf(1.0)  # bands traced
        view = sp.log_eigenvalues  # samples below 1e-308 (erf, L = 1000) are drawn on the log scale
        t = time.perf_counter()
        view.rvs(10_000, random_state=0)
        tr = time.perf_counter() - t
        t = time.perf_counter()
        view.ppf(np.linspace(0.001, 0.999, 999))
        tq = time.perf_counter() - t
        print(f"  {name:5s} {w:10s} L={L:5d}: rvs(10000) {tr:6.3f} s, ppf(999 points) {tq:6.3f} s")
    print("\npolynomial roots (Bernoulli D^2, normalised) vs the engine, same 1000 points:")
    for name, p in (("linear", 1.0), ("relu", 0.5)):
        for w in ("orthogonal", "gaussian"):
            if name == "linear" and w == "orthogonal":
                continue
            for L in (4, 16, 64):
                sp = jacobian_spectrum(name, L, q_star=1.0, weights=w)
                top = np.exp(sp._bands[0].t_top)
                lam = top * np.linspace(1e-3, 0.999, 1000)
                t = time.perf_counter()
                ours = sp.pdf(lam * sp.mean()) * sp.mean()
                to = time.perf_counter() - t
                t = time.perf_counter()
                ref = polynomial_density(lam, L, p, w)
                tp = time.perf_counter() - t
                rel = np.max(np.abs(ours - ref) / np.maximum(ref, 1e-300))
                print(f"  {name:7s} {w:10s} L={L:3d}: poly {tp:7.3f} s, engine {to:6.3f} s, ratio {tp / to:7.1f}, "
                      f"max rel diff {rel:.1e}")


if __name__ == "__main__":
    main()
