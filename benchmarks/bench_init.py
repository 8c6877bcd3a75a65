"""``critical_init_`` against PyTorch's default initialisation on the models of tests/test_torch_models.py.

All on one CPU thread, in one process. For each model:

* the cost: CPU time of ``critical_init_(model, example_input=x)`` (tracing, theory, calibration
  and the measurements it reports) against PyTorch's own initialisation of the same model (every
  module's ``reset_parameters``), as a ratio, and the calibration passes;
* the result: the mean and variance of the eigenvalues of J J^T over the report's body at fresh
  inputs (exact ``jacobian_eigenvalues`` for small bodies, ``spectrum_estimate`` for the 16 x 32 x 32
  feature map), after ``critical_init_`` and after the default initialisation, beside the report's
  prediction and tolerance.

And the bookkeeping cost per layer of ``critical_init_`` on a meta-device MLP (what
``isometry init-report`` estimates requests with).

    python benchmarks/bench_init.py [--quick]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import warnings

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import torch  # noqa: E402
from threadpoolctl import threadpool_limits  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests"))
import test_torch_models as zoo  # noqa: E402  (the models, defined once, with the tests that check them)

from isometry.torch import critical_init_, mlp  # noqa: E402


def default_init(model: torch.nn.Module) -> None:
    for m in model.modules():
        if hasattr(m, "reset_parameters") and m is not model:
            m.reset_parameters()


def cases(quick: bool):
    data, tokens, norm = zoo._data, zoo._tokens, zoo._normalise
    out = [
        ("CNN 3->16, 6 x conv16 + tanh, pool, head", zoo.cnn, data((8, 3, 8, 8), 1), data((4, 3, 8, 8), 2), False),
        ("CNN with stride 2, 16 x 32 x 32 body", zoo.strided_cnn, data((4, 3, 32, 32), 1), data((2, 3, 32, 32), 2),
         True),
        ("ResNet (BatchNorm2d, ReLU after +), 3 blocks", zoo.ResNet, data((16, 3, 8, 8), 1), data((4, 3, 8, 8), 2),
         False),
        ("pre-activation ResNet, 6 blocks", zoo.PreActResNet, data((16, 3, 8, 8), 1), data((4, 3, 8, 8), 2), False),
        ("3 x TransformerEncoderLayer (post-LN)", zoo.transformer, tokens((8, 6, 32), 1), tokens((4, 6, 32), 2),
         False),
        ("3 x TransformerEncoderLayer (pre-LN)", lambda: zoo.transformer(norm_first=True), tokens((8, 6, 32), 1),
         tokens((4, 6, 32), 2), False),
        ("MLP with torch.tanh in forward", zoo.FunctionalMLP, norm(data((16, 16), 1)), norm(data((4, 16), 2)), False),
        ("residual MLP x + a tanh(W x + b), 16 blocks", zoo.ResidualMLP, norm(data((16, 16), 1)),
         norm(data((4, 16), 2)), False),
    ]
    for name, make in (("tied weights (3 of 6 layers share one)", zoo.Tied), ("two layers each applied twice", zoo.Twice)):
        probe = critical_init_(make(), generator=0)  # no stem: the data comes at input_q
        out.append((name, make, zoo._at_input_q(64, 1)(probe), zoo._at_input_q(64, 2)(probe)[:4], False))
    return out[:3] if quick else out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="three models only")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    warnings.filterwarnings("ignore", message=".*performance drop.*")
    with threadpool_limits(limits=1):
        print(f"{'model':<46}{'init CPU s':>11}{'default s':>10}{'ratio':>8}{'passes':>7} | "
              f"{'mean':>7}{'var':>8}{'pred var':>9}{'tol':>7} | {'dflt mean':>10}{'dflt var':>10}")
        for name, make, x, xt, estimate in cases(args.quick):
            torch.manual_seed(0)
            model = make()
            t = time.process_time()
            report = critical_init_(model, example_input=x, generator=0)
            t_ours = time.process_time() - t
            default = make()
            t = time.process_time()
            for _ in range(5):
                default_init(default)
            t_default = (time.process_time() - t) / 5
            torch.manual_seed(0)
            default = make()
            n = xt.shape[0]
            mean, var = zoo._body_moments(model, report, xt, n, estimate)
            d_mean, d_var = zoo._body_moments(default, report, xt, n, estimate)
            print(f"{name:<46}{t_ours:>11.3f}{t_default:>10.4f}{t_ours / max(t_default, 1e-9):>8.0f}"
                  f"{report.calibration_passes:>7} | {mean:>7.3f}{var:>8.3f}{report.predicted_variance:>9.3f}"
                  f"{report.variance_tolerance:>7.2f} | {d_mean:>10.3g}{d_var:>10.3g}")
        print("\nbookkeeping per layer, critical_init_ of a meta-device tanh MLP (no example input):")
        for depth in ((200, 1000) if args.quick else (200, 1000, 4000)):
            model = mlp(depth, 64, "tanh", device="meta")
            t = time.process_time()
            report = critical_init_(model)
            dt = time.process_time() - t
            t = time.process_time()
            report.to_dict()
            dd = time.process_time() - t
            print(f"  depth {depth:>5}: {1e3 * dt / depth:.2f} ms per layer (+ {1e3 * dd / depth:.2f} ms for to_dict)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
