"""Stochastic Lanczos quadrature (``isometry.torch.spectrum_estimate``) against the exact route.

All on one CPU thread. Models: the body of a CNN, ``depth`` x (Conv2d C->C 3x3 + tanh) at the
tanh critical point with q* = 0.5 (Gaussian kernels of variance sigma_w2 / (9 C), biases of
variance sigma_b2), fed an input of variance q*; J is the (C H W) x (C H W) Jacobian.

1. Where the exact route is feasible (C x H x W = 8 x 16 x 16, a 2048-dim Jacobian): the exact
   eigenvalues (``isometry.torch.jacobian_eigenvalues``: 2048 VJPs + a float64 SVD) against the
   estimate at its defaults: errors of mean and variance in units of the stated standard errors,
   the Kolmogorov distance of the quadrature law to the exact eigenvalues, median and lambda_max,
   and the ratio of the times, measured in this process.
2. A (n_probes, n_lanczos) grid on the same model (several seeds): what the defaults are chosen
   from.
3. The 16384-dim case (16 x 32 x 32, 8 layers): the time of the defaults, with circular and
   zero padding; and its linear (no tanh) circular version, whose exact spectrum is known
   through the FFT (J is block circulant: per spatial frequency the 16 x 16 product of the
   kernels' symbols), so accuracy is measured at full size too.

    python benchmarks/bench_estimate.py [--quick]
"""

from __future__ import annotations

import argparse
import os
import sys
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from threadpoolctl import threadpool_limits  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _timing import best  # noqa: E402

import isometry  # noqa: E402
from isometry.torch import jacobian_eigenvalues  # noqa: E402
from isometry.torch.estimate import DEFAULT_N_LANCZOS, DEFAULT_N_PROBES, spectrum_estimate  # noqa: E402

Q_STAR = 0.5


def cnn_body(channels: int, depth: int, *, padding_mode: str = "circular", nonlinear: bool = True,
             seed: int = 0) -> torch.nn.Sequential:
    cp = isometry.critical_point("tanh", Q_STAR)
    sigma_w2 = cp.sigma_w2 if nonlinear else 1.0  # a linear stack is critical at sigma_w2 = 1
    g = torch.Generator().manual_seed(seed)
    layers: list[torch.nn.Module] = []
    for _ in range(depth):
        conv = torch.nn.Conv2d(channels, channels, 3, padding=1, padding_mode=padding_mode, bias=nonlinear)
        with torch.no_grad():
            conv.weight.copy_(torch.randn(conv.weight.shape, generator=g) * (sigma_w2 / (9 * channels)) ** 0.5)
            if nonlinear:
                conv.bias.copy_(torch.randn(channels, generator=g) * cp.sigma_b2**0.5)
        layers += [conv, torch.nn.Tanh()] if nonlinear else [conv]
    return torch.nn.Sequential(*layers)


def feature_map(channels: int, size: int, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(1, channels, size, size, generator=g) * Q_STAR**0.5


def circulant_eigenvalues(net: torch.nn.Sequential, size: int) -> np.ndarray:
    """Eigenvalues of J J^T of a stack of circular 3x3 convolutions (no bias, no activation):
    at each of the size^2 spatial frequencies the kernels act as C x C matrices (their symbols);
    J's singular values are those of the products of the symbols."""
    w = np.arange(size)
    total = None
    for conv in net:
        k = conv.weight.detach().double().numpy()  # (out, in, 3, 3), cross-correlation
        ph = np.exp(2j * np.pi * np.outer(w, np.arange(-1, 2)) / size)  # (size, 3)
        sym = np.einsum("oiab,ua,vb->uvoi", k, ph, ph)  # (size, size, out, in)
        total = sym if total is None else np.einsum("uvij,uvjk->uvik", sym, total)
    s = np.linalg.svd(total.reshape(-1, *total.shape[2:]), compute_uv=False)
    return np.sort((s**2).ravel())


def ks_distance(est, eigenvalues: np.ndarray) -> float:
    """sup_x |F_est(x) - F_exact(x)| over both laws' jump points (right and left limits)."""
    ev = np.sort(eigenvalues)
    pts = np.concatenate([ev, est.ppf(np.linspace(0, 1, 2001))])
    pts = np.unique(pts)
    left = np.nextafter(pts, -np.inf)
    d = 0.0
    for x in (pts, left):
        fe = np.searchsorted(ev, x, side="right") / ev.size
        d = max(d, float(np.max(np.abs(est.cdf(x) - fe))))
    return d


def report(est, ev: np.ndarray) -> dict:
    m, v = ev.mean(), ev.var()
    lo, hi = est.cdf_bounds(np.concatenate([ev, est.ppf(np.linspace(0, 1, 2001))]))
    return {
        "bracket": float(np.max(hi - lo)),
        "q90_rel": abs(est.ppf(0.9) - np.quantile(ev, 0.9)) / np.quantile(ev, 0.9),
        "mean_z": (est.mean() - m) / est.mean_se(),
        "mean_rel": abs(est.mean() - m) / m,
        "var_z": (est.var() - v) / est.var_se(),
        "var_rel": abs(est.var() - v) / v,
        "se_mean_rel": est.mean_se() / m,
        "se_var_rel": est.var_se() / v,
        "ks": ks_distance(est, ev),
        "median_rel": abs(est.median() - np.median(ev)) / np.median(ev),
        "max_rel": abs(est.max_eigenvalue - ev.max()) / ev.max(),
    }


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="smaller grid, fewer repeats")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    threadpool_limits(1)
    reps = 1 if args.quick else 3
    print(f"defaults: n_probes={DEFAULT_N_PROBES}, n_lanczos={DEFAULT_N_LANCZOS}; one CPU thread; "
          f"tanh critical point q*={Q_STAR}")

    # ---------------------------------------------------------------- 1. exact route feasible
    depth = 8
    for c, size in [(8, 16)] + ([] if args.quick else [(16, 16)]):
        net, x = cnn_body(c, depth), feature_map(c, size)
        t0 = time.perf_counter()
        ev = jacobian_eigenvalues(net, x)
        t_exact = time.perf_counter() - t0
        t_est = best(lambda: spectrum_estimate(net, x, generator=0), reps)
        est = spectrum_estimate(net, x, generator=0)
        r = report(est, ev)
        pb = est.ppf_bounds(0.5)
        print(f"\n[1] tanh CNN body {c}x{size}x{size} (n = m = {c * size * size}), depth {depth}")
        print(f"    exact (jacobian_eigenvalues)  {t_exact:8.2f} s   mean {ev.mean():.5g}  var {ev.var():.5g}  "
              f"median {np.median(ev):.4g}  max {ev.max():.5g}")
        print(f"    estimate (defaults)           {t_est:8.2f} s   mean {est.mean():.5g} +- {est.mean_se():.2g}  "
              f"var {est.var():.5g} +- {est.var_se():.2g}  median {est.median():.4g}  max {est.max_eigenvalue:.5g}")
        print(f"    time ratio exact/estimate {t_exact / t_est:.1f}x;  mean error {r['mean_z']:+.2f} se "
              f"({r['mean_rel']:.2%}), var error {r['var_z']:+.2f} se ({r['var_rel']:.2%}); KS {r['ks']:.3f} "
              f"(widest cdf bracket {r['bracket']:.3f}); 90% quantile {r['q90_rel']:.2%}; median "
              f"{r['median_rel']:.2%}, bracketed by [{pb[0]:.2g}, {pb[1]:.2g}]; lambda_max {r['max_rel']:.2e} "
              f"(residual {est.max_eigenvalue_residual:.1e})")
    c, size = 8, 16
    net, x = cnn_body(c, depth), feature_map(c, size)
    ev = jacobian_eigenvalues(net, x)

    # ---------------------------------------------------------------- 2. the (P, k) grid
    probes_grid = (4, 16) if args.quick else (4, 8, 16, 32)
    steps_grid = (10, 40) if args.quick else (10, 20, 40, 80)
    seeds = range(2 if args.quick else 5)
    print(f"\n[2] grid on the same model, mean over {len(seeds)} seeds: relative se of mean / var, "
          "|error|/se of mean / var, KS, widest cdf bracket, 90% quantile error, time")
    print(f"    {'P':>3} {'k':>3}  {'se_mean':>8} {'se_var':>8}  {'|z_mean|':>8} {'|z_var|':>8}  "
          f"{'KS':>6} {'bracket':>7} {'q90':>7}  {'time':>7}")
    for p in probes_grid:
        for k in steps_grid:
            rows, ts = [], []
            for s in seeds:
                t0 = time.perf_counter()
                e = spectrum_estimate(net, x, n_probes=p, n_lanczos=k, generator=s)
                ts.append(time.perf_counter() - t0)
                rows.append(report(e, ev))
            a = {key: np.mean([abs(rw[key]) for rw in rows]) for key in rows[0]}
            print(f"    {p:3d} {k:3d}  {a['se_mean_rel']:8.2%} {a['se_var_rel']:8.2%}  {a['mean_z']:8.2f} "
                  f"{a['var_z']:8.2f}  {a['ks']:6.3f} {a['bracket']:7.3f} {a['q90_rel']:7.2%}  {np.median(ts):6.2f}s")

    # ---------------------------------------------------------------- 3. 16384 dims
    c, size, depth = 16, 32, 8
    x = feature_map(c, size)
    print(f"\n[3] CNN body {c}x{size}x{size} (n = m = {c * size * size}), depth {depth}, defaults")
    for mode in ("circular", "zeros"):
        net = cnn_body(c, depth, padding_mode=mode)
        t = best(lambda: spectrum_estimate(net, x, generator=0), reps)
        e = spectrum_estimate(net, x, generator=0)
        print(f"    tanh, {mode:8s} padding: {t:6.2f} s   mean {e.mean():.5g} +- {e.mean_se():.2g} "
              f"({e.mean_se() / e.mean():.2%})  var {e.var():.5g} +- {e.var_se():.2g} ({e.var_se() / e.var():.2%})  "
              f"max {e.max_eigenvalue:.5g} (residual {e.max_eigenvalue_residual:.1e})")
    lin = cnn_body(c, depth, nonlinear=False)
    ev = circulant_eigenvalues(lin, size)
    t = best(lambda: spectrum_estimate(lin, x, generator=0), reps)
    e = spectrum_estimate(lin, x, generator=0)
    r = report(e, ev)
    print(f"    linear, circular: {t:6.2f} s   mean {e.mean():.5g} +- {e.mean_se():.2g} (exact {ev.mean():.5g}, "
          f"{r['mean_z']:+.2f} se)  var {e.var():.5g} +- {e.var_se():.2g} (exact {ev.var():.5g}, "
          f"{r['var_z']:+.2f} se)  KS {r['ks']:.3f} (bracket {r['bracket']:.3f})  90% quantile "
          f"{r['q90_rel']:.2%}  lambda_max {r['max_rel']:.1e}")
    zs = []
    for s in range(3 if args.quick else 10):
        e = spectrum_estimate(lin, x, generator=100 + s)
        zs.append(((e.mean() - ev.mean()) / e.mean_se(), (e.var() - ev.var()) / e.var_se()))
    zs = np.array(zs)
    print(f"    errors / stated se over {len(zs)} seeds (calibrated: mean 0, sd 1): mean {zs[:, 0].mean():+.2f} "
          f"sd {zs[:, 0].std(ddof=1):.2f}; var {zs[:, 1].mean():+.2f} sd {zs[:, 1].std(ddof=1):.2f}")
    small = cnn_body(4, 3, nonlinear=False)
    xs = feature_map(4, 6)
    check = np.max(np.abs(circulant_eigenvalues(small, 6) - jacobian_eigenvalues(small, xs, dtype=torch.float64)))
    print(f"    (FFT route checked against jacobian_eigenvalues on 4x6x6, 3 layers: max abs difference {check:.1e})")


if __name__ == "__main__":
    main()
