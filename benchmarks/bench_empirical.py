"""Empirical Jacobian spectra at N = 1000: GEMM-bound product, Haar sampling, stable mode, and the
straightforward route (scipy.stats.ortho_group + torch.func.jacrev + svdvals).

Everything runs on one thread (BLAS and torch) and every time is printed next to a baseline measured
in the same run (an N x (N+1) float64 GEMM), since the machines are shared and noisy. Targets:
product >= 80% of the GEMM rate, memory O(N^2) whatever L (memory_estimate is printed beside the traced peak).

    python benchmarks/bench_empirical.py            # N = 1000, L = 100 and 200 (a few minutes)
    python benchmarks/bench_empirical.py --width 500 --depths 20 --no-naive
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import scipy.linalg as sla  # noqa: E402
from threadpoolctl import threadpool_limits  # noqa: E402

import isometry  # noqa: E402
from _timing import best  # noqa: E402
from isometry.empirical import jacobian_product, memory_estimate  # noqa: E402
from isometry.empirical.sampling import _householder_haar  # noqa: E402
from isometry.meanfield import network_parameters  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--width", type=int, default=1000)
    ap.add_argument("--depths", type=int, nargs="+", default=[100, 200])
    ap.add_argument("--stable-depth", type=int, default=20)
    ap.add_argument("--no-naive", action="store_true")
    args = ap.parse_args()
    n = args.width
    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n))
    c = np.asfortranarray(rng.standard_normal((n, n + 1)))
    gemm = best(lambda: a @ c, 5)
    flops = 2.0 * n * n * (n + 1)
    rate = flops / gemm / 1e9
    print(f"baseline: {n}x{n} @ {n}x{n + 1} float64 GEMM {gemm * 1e3:.1f} ms = {rate:.1f} GFLOP/s (1 thread)")
    a32, c32 = a.astype(np.float32), c.astype(np.float32)
    g32 = best(lambda: a32 @ c32, 5)
    print(f"  float32 GEMM {g32 * 1e3:.1f} ms ({gemm / g32:.2f}x faster)")

    # ---------------------------------------------------------------- Haar sampling
    print("\nHaar orthogonal N x N (sampling, then Q @ C for an N x (N+1) block):")
    buf = np.empty((n, n))
    t_h = best(lambda: _householder_haar(n, rng, buffer=buf), 5)
    h = _householder_haar(n, rng)
    t_apply = best(lambda: h.apply(c.copy(order="F")), 3)
    t_copy = best(lambda: c.copy(order="F"), 3)
    t_apply -= t_copy
    print(f"  Householder reflectors drawn directly (O(N^2)):   {t_h * 1e3:7.1f} ms = {t_h / gemm:5.2f} GEMM")
    print(f"  apply Q by dormqr (2 N^2 (N+1) flops):            {t_apply * 1e3:7.1f} ms = {t_apply / gemm:5.2f} GEMM")

    def qr_sign():
        q, r = np.linalg.qr(rng.standard_normal((n, n)))
        return q * np.sign(np.diag(r))

    t_qr = best(qr_sign, 3)
    t_geqrf = best(lambda: sla.lapack.dgeqrf(rng.standard_normal((n, n))), 3)
    from scipy.stats import ortho_group

    t_og = best(lambda: ortho_group.rvs(n, random_state=rng), 3)
    print(f"  dgeqrf of a Gaussian matrix (no Q formed):        {t_geqrf * 1e3:7.1f} ms = {t_geqrf / gemm:5.2f} GEMM")
    print(f"  numpy QR + sign fix (Q formed):                   {t_qr * 1e3:7.1f} ms = {t_qr / gemm:5.2f} GEMM")
    print(f"  scipy.stats.ortho_group.rvs:                      {t_og * 1e3:7.1f} ms = {t_og / gemm:5.2f} GEMM")
    print(f"  => orthogonal layer here costs {(t_h + t_apply) / gemm:.2f} GEMM; "
          f"QR + sign fix + GEMM costs {(t_qr + gemm) / gemm:.2f}; ortho_group + GEMM {(t_og + gemm) / gemm:.2f}")

    # ---------------------------------------------------------------- SVD traps
    t_svd64 = best(lambda: sla.svdvals(a), 1)
    t_svd32 = best(lambda: sla.svdvals(a32), 1)
    print(f"\nSVD (gesdd) of {n}x{n}: float64 {t_svd64:.2f} s, float32 {t_svd32:.2f} s ({t_svd32 / t_svd64:.2f}x the float64 time)")
    try:
        import torch

        torch.set_num_threads(1)
        ta = torch.from_numpy(a)
        t_t64 = best(lambda: torch.linalg.svdvals(ta), 1)
        t_t32 = best(lambda: torch.linalg.svdvals(ta.float()), 1)
        print(f"torch.linalg.svdvals: float64 {t_t64:.2f} s ({t_t64 / t_svd64:.1f}x numpy float64), float32 {t_t32:.2f} s")
    except ImportError:  # pragma: no cover
        torch = None
    m = jacobian_product("erf", 30, min(n, 400), sigma_w2=1.0, sigma_b2=0.0, q0=0.1, weights="gaussian", seed=1)
    s64 = np.sort(sla.svdvals(m) ** 2)
    s32 = np.sort(sla.svdvals(m.astype(np.float32)).astype(np.float64) ** 2)
    bad = np.abs(s32 - s64) > 0.01 * s64
    print(f"float32 trap: erf L=30 Gaussian product, N={m.shape[0]}: float32 eigenvalues off by >1% for "
          f"{bad.mean():.1%} of the spectrum, all below {s64[bad].max() / s64.max() if bad.any() else 0:.1e} lambda_max")

    # ---------------------------------------------------------------- one layer, interleaved with GEMMs
    from isometry.empirical.networks import _Layers

    act = isometry.get_activation("tanh")
    print("\none layer C <- D W C on an N x (N+1) block, best of 10, interleaved with the GEMM (robust to load):")
    with threadpool_limits(1):
        for weights in ("gaussian", "orthogonal"):
            layers = _Layers(act, n, 1.7, 0.04, weights, np.random.default_rng(5), np.dtype(np.float64))
            blk = [np.asfortranarray(c.copy())]
            tl, tg = [], []
            for _ in range(10):
                t = time.perf_counter()
                blk[0] = layers.apply(blk[0])
                tl.append(time.perf_counter() - t)
                blk[0] /= np.abs(blk[0]).max()
                t = time.perf_counter()
                a @ c
                tg.append(time.perf_counter() - t)
            print(f"  {weights:10s} layer {min(tl) * 1e3:6.1f} ms vs GEMM {min(tg) * 1e3:6.1f} ms -> "
                  f"{min(tg) / min(tl):5.1%} of the GEMM rate")

    # ---------------------------------------------------------------- the product
    # The load on shared machines drifts over minutes: each run is bracketed by GEMM timings and
    # compared with their mean.
    def gemm_now():
        return best(lambda: a @ c, 3)

    print(f"\nempirical_eigenvalues, N = {n} (product time = total - SVD; GEMM re-measured around each run):")
    with threadpool_limits(1):
        for depth in args.depths:
            for weights in ("gaussian", "orthogonal"):
                g0 = gemm_now()
                t0 = time.perf_counter()
                isometry.empirical_eigenvalues("tanh", depth, n, q_star=0.5, weights=weights, seed=1)
                t = time.perf_counter() - t0
                t_svd = best(lambda: sla.svdvals(a), 1)
                g = 0.5 * (g0 + gemm_now())
                prod = t - t_svd
                gf = depth * flops / prod / 1e9
                print(f"  L={depth:4d} {weights:10s} total {t:6.2f} s  product {prod:6.2f} s = {prod / depth / g:4.2f} GEMM/layer,"
                      f" {gf:5.1f} GFLOP/s = {g * depth / prod:5.1%} of the GEMM rate ({flops / g / 1e9:.1f} GFLOP/s)")
        sd = args.stable_depth
        g0 = gemm_now()
        t_plain = best(lambda: isometry.empirical_eigenvalues("tanh", sd, n, q_star=0.5, seed=2), 1)
        t_st = best(lambda: isometry.empirical_eigenvalues("tanh", sd, n, q_star=0.5, seed=2, stable=True), 1)
        t_svd = best(lambda: sla.svdvals(a), 1)
        g = 0.5 * (g0 + gemm_now())
        print(f"  stable mode, L={sd}: {t_st:.2f} s vs plain {t_plain:.2f} s -> "
              f"{(t_st - t_svd) / (t_plain - t_svd):.2f}x per layer ({(t_st - t_svd) / sd / g:.2f} GEMM/layer)")

    # ---------------------------------------------------------------- memory
    import tracemalloc

    print(f"\nmemory at N = {n}, L = 4: peak traced by tracemalloc vs memory_estimate (refusal threshold):")
    for weights in ("gaussian", "orthogonal"):
        for stable in (False, True):
            tracemalloc.start()
            isometry.empirical_eigenvalues("tanh", 4, n, q_star=0.5, weights=weights, stable=stable, seed=4)
            peak = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()
            est = memory_estimate(n, weights=weights, stable=stable)
            print(f"  {weights:10s} stable={stable!s:5s} peak {peak / 2**20:7.1f} MiB = {peak / (8 * n * n):5.2f} N^2 doubles,"
                  f" estimate {est / 2**20:7.1f} MiB ({est / peak:.2f}x the peak)")

    # ---------------------------------------------------------------- straightforward route
    if args.no_naive or torch is None:
        return
    from torch.func import jacrev

    print("\nstraightforward route: ortho_group weights, torch float64 model, jacrev, torch svdvals:")
    w0 = torch.randn(50, 50, dtype=torch.float64)
    jacrev(lambda x: torch.tanh(w0 @ x))(torch.randn(50, dtype=torch.float64))  # warm up torch.func (~seconds, once)
    sw, sb, q = network_parameters("tanh", q_star=0.5)
    for depth in args.depths:
        t0 = time.perf_counter()
        ws = [torch.from_numpy(np.sqrt(sw) * ortho_group.rvs(n, random_state=rng)) for _ in range(depth)]
        bs = [torch.from_numpy(rng.standard_normal(n) * np.sqrt(sb)) for _ in range(depth)]
        t1 = time.perf_counter()

        def f(x):
            for w, b in zip(ws, bs):
                x = torch.tanh(w @ x + b)
            return x

        x0 = torch.tanh(torch.from_numpy(rng.standard_normal(n) * np.sqrt(q)))
        j = jacrev(f)(x0)
        t2 = time.perf_counter()
        torch.linalg.svdvals(j)
        t3 = time.perf_counter()
        t_ours = best(lambda: isometry.empirical_eigenvalues("tanh", depth, n, q_star=0.5, seed=3), 1)
        print(f"  L={depth:4d}: sampling {t1 - t0:6.2f} s, jacrev {t2 - t1:6.2f} s, svdvals {t3 - t2:5.2f} s, "
              f"total {t3 - t0:6.2f} s vs empirical_eigenvalues {t_ours:5.2f} s -> {(t3 - t0) / t_ours:.1f}x")
        del j


if __name__ == "__main__":
    main()
