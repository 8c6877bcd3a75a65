"""Kernel-shaping speed: dks_transform / tat_transform against the reference solve of the dks package.

Prints, per (method, activation, depth), the best-of-n time of our solve and of
``dks.base.activation_transform`` (the NumPy solve behind dks's JAX/PyTorch/TF front-ends) measured
in the same run, with their ratio. Without dks installed, a 1000 x 1000 float64 GEMM is the baseline.

    python benchmarks/bench_shaping.py
"""

from __future__ import annotations

import warnings

import numpy as np

from _timing import best
from isometry.shaping import Chain, dks_transform, tat_transform

CASES = [("DKS", "tanh", 16), ("DKS", "gelu", 100), ("DKS", "leaky_relu", 16), ("TAT", "tanh", 16),
         ("TAT", "softplus", 100), ("TAT", "elu", 16), ("TAT", "leaky_relu", 100)]
DKS_NAME = {"tanh": "tanh", "softplus": "softplus", "gelu": "gelu_exact", "elu": "elu", "leaky_relu": "leaky_relu"}


def _reference():
    try:
        from dks.base import activation_transform
    except ImportError:
        return None
    return activation_transform


def main() -> None:
    ref = _reference()
    a = np.random.default_rng(0).standard_normal((1000, 1000))
    gemm = best(lambda: a @ a, 5)
    print(f"baseline: 1000x1000 GEMM {gemm * 1e3:.1f} ms; reference: {'dks ' + __import__('dks').__version__ if ref else 'dks not installed'}")
    for method, name, depth in CASES:
        ours = (lambda: dks_transform(name, depth)) if method == "DKS" else (lambda: tat_transform(name, depth))
        ours()
        t = best(ours, 3)
        line = f"{method} {name:10s} depth {depth:4d}: ours {t * 1e3:8.1f} ms = {t / gemm:7.1f} GEMMs"
        if ref is not None:
            def theirs():
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    ref._get_activations_params([DKS_NAME[name]], method=method, subnet_max_func=Chain(depth))

            theirs()
            r = best(theirs, 3)
            line += f"   dks {r * 1e3:8.1f} ms   dks / ours = {r / t:6.1f}x"
        print(line, flush=True)


if __name__ == "__main__":
    main()
