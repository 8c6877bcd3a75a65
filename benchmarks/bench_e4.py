"""Time the E4 benchmark (the report's e4 part) and break its cost down.

Runs the e4 part of `isometry reproduce` at each scale into a fresh folder, as the report runs it
(the local process pool, all cores), and prints its wall and CPU time (this process and its
workers, ``getrusage``; CPU time is what is meaningful on a shared machine, so the load average
before and after is printed beside it), the runs it trained (tuning and reported), the run steps
they took and the CPU cost per run step; then, in this process on one thread, the cost of one
initialisation and Jacobian measurement per initialiser at the scale's deepest MLP, the part of
the budget that does not scale with the training steps.

    python benchmarks/bench_e4.py                      # --scale quick and default
    python benchmarks/bench_e4.py --scale default
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time

from _timing import cpu_seconds, load_average


def bench_part(scale: str, out: str) -> dict:
    """The e4 part at ``scale`` into ``out``: wall, CPU, runs and run steps."""
    from isometry.report.reproduce import reproduce

    load = load_average()
    c0, w0 = cpu_seconds(), time.perf_counter()
    summary = reproduce(out, scale=scale, only=["e4"], force=True, progress=False, log=lambda line: None)
    wall, cpu = time.perf_counter() - w0, cpu_seconds() - c0
    part = next(p for p in summary["parts"] if p["name"] == "e4")
    with open(os.path.join(out, "e4", "summary.json"), encoding="utf-8") as fh:
        rows = json.load(fh)
    steps = 0
    for r in rows:
        with open(os.path.join(out, "e4", "runs", f"{r['run_id']}.json"), encoding="utf-8") as fh:
            steps += json.load(fh)["steps_run"]
    from isometry.experiments.benchmark import TUNING_SEED

    return {"scale": scale, "wall": wall, "cpu": cpu, "checks": f"{part['n_passed']}/{part['n_checks']}",
            "runs": len(rows), "tuning": sum(r["seed"] == TUNING_SEED for r in rows), "run_steps": steps,
            "load": f"{load} -> {load_average()}"}


def bench_inits(scale: str) -> list[tuple[str, float, float]]:
    """(initialiser, seconds to build and initialise, seconds to measure the body's J J^T) at the
    scale's deepest MLP, tanh, one thread, CPU time."""
    import torch

    from isometry.experiments import INITIALIZERS, OUR_INITIALIZERS
    from isometry.experiments.benchmark import SIZES, default_q_star
    from isometry.experiments.data import load_digits
    from isometry.experiments.initializers import initialize, prepare_inputs
    from isometry.experiments.networks import build_network, measure_body

    torch.set_num_threads(1)
    z = SIZES[scale]
    depth = max(z.mlp_depths)
    ds = load_digits()
    out = []
    for name in INITIALIZERS:
        x = torch.from_numpy(prepare_inputs(name, ds.x_train[: z.batch_size]))
        t0 = time.process_time()
        net = build_network("mlp", d_in=x.shape[1], n_classes=10, depth=depth, width=z.width, activation="tanh",
                            generator=0)
        net, _ = initialize(name, net, activation="tanh", architecture="mlp", depth=depth, seed=0, batch=x,
                            q_star=default_q_star("tanh", depth), normalize_input=name in OUR_INITIALIZERS)
        t1 = time.process_time()
        measure_body(net, "mlp", depth, x[: z.jacobian_inputs])
        out.append((name, t1 - t0, time.process_time() - t1))
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--scale", choices=("quick", "default", "full"), action="append")
    args = p.parse_args()
    for scale in args.scale or ["quick", "default"]:
        out = tempfile.mkdtemp(prefix=f"bench_e4_{scale}_")
        try:
            r = bench_part(scale, out)
        finally:
            shutil.rmtree(out, ignore_errors=True)
        print(f"\ne4 part, --scale {scale}: {r['wall']:.1f} s wall, {r['cpu']:.1f} s CPU on {os.cpu_count()} CPUs "
              f"(load {r['load']}); checks {r['checks']}")
        print(f"  {r['runs']} runs ({r['tuning']} tuning, {r['runs'] - r['tuning']} reported), {r['run_steps']} run "
              f"steps: {1e3 * r['cpu'] / max(r['run_steps'], 1):.2f} ms of CPU per run step, all costs included")
        inits = bench_inits(scale)
        print("  one initialisation at the deepest MLP (tanh, CPU s, one thread): "
              + ", ".join(f"{n} {a:.2f} + {b:.2f} (Jacobian)" for n, a, b in inits))


if __name__ == "__main__":
    main()
