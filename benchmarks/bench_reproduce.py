"""Time `isometry reproduce` part by part: wall and CPU time, each as a share of the whole.

Each part runs on its own (``reproduce(..., only=[part], force=True)``, into a fresh folder per
scale), as ``isometry reproduce`` runs it: the theory parts in this process, the training part on
the local process pool (all cores). CPU time is this process's plus its finished workers'
(``getrusage``), so it is meaningful on a shared machine where wall time is not: the load average
seen before and after each part is printed beside it. For the training part the runs trained and
the runs per minute of wall time are printed too.

    python benchmarks/bench_reproduce.py                       # --scale quick and default
    python benchmarks/bench_reproduce.py --scale quick          # CI size only
    python benchmarks/bench_reproduce.py --scale default --parts training --max-parallel 2
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time

from _timing import cpu_seconds, load_average


def bench_scale(scale: str, parts: list[str], out: str, engine_opts: dict) -> list[dict]:
    """Run each part of ``parts`` at ``scale`` into ``out``; one row of timings per part."""
    from isometry.report.reproduce import reproduce

    rows = []
    for name in parts:
        load_before = load_average()
        c0, w0 = cpu_seconds(), time.perf_counter()
        summary = reproduce(out, scale=scale, only=[name], force=True, progress=False, log=lambda line: None,
                            **engine_opts)
        wall, cpu = time.perf_counter() - w0, cpu_seconds() - c0
        part = next(p for p in summary["parts"] if p["name"] == name)
        row = {"part": name, "wall": wall, "cpu": cpu, "part_seconds": part["seconds"], "load": f"{load_before} -> "
               f"{load_average()}", "checks": f"{part['n_passed']}/{part['n_checks']}"}
        if name == "training":
            with open(os.path.join(out, "parts", "training.json"), encoding="utf-8") as fh:
                data = json.load(fh)["result"]["data"]
            trained = {k: v for k, v in data.items() if k.endswith("_runs")}
            runs = len({r for n in ("E1", "E2", "E3") for r in _run_ids(out, n)})
            row["runs"] = runs
            row["trained"] = sum(v["trained_now"] for v in trained.values())
            row["runs_per_minute"] = 60.0 * runs / part["seconds"] if part["seconds"] > 0 else float("nan")
        rows.append(row)
    return rows


def _run_ids(out: str, name: str) -> list[str]:
    path = os.path.join(out, "training", name, "summary.json")
    with open(path, encoding="utf-8") as fh:
        return [r["run_id"] for r in json.load(fh)]


def print_rows(scale: str, rows: list[dict]) -> None:
    wall = sum(r["wall"] for r in rows)
    cpu = sum(r["cpu"] for r in rows)
    print(f"\nisometry reproduce --scale {scale}: {wall:.1f} s wall, {cpu:.1f} s CPU ({os.cpu_count()} CPUs)")
    print(f"{'part':10s} {'wall s':>8s} {'share':>6s} {'CPU s':>8s} {'share':>6s}  {'checks':>8s}  load (1/5/15 min)")
    for r in rows:
        print(f"{r['part']:10s} {r['wall']:8.1f} {100 * r['wall'] / wall:5.1f}% {r['cpu']:8.1f} "
              f"{100 * r['cpu'] / cpu:5.1f}%  {r['checks']:>8s}  {r['load']}")
        if "runs" in r:
            print(f"{'':10s} training: {r['runs']} runs (E1, E2, E3 shared), {r['runs_per_minute']:.0f} runs per "
                  "minute "
                  f"of wall time, {60.0 * r['runs'] / r['cpu']:.0f} per CPU-minute")


def main(argv: list[str] | None = None) -> None:
    from isometry.report.reproduce import PARTS, SCALES

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--scale", nargs="+", choices=SCALES, default=["quick", "default"])
    p.add_argument("--parts", nargs="+", choices=[n for n, _ in PARTS], default=[n for n, _ in PARTS])
    p.add_argument("--out", default=None, help="keep the reports here (default: a temporary folder, removed)")
    p.add_argument("--engine", choices=("local", "sequential", "ray"), default="local")
    p.add_argument("--max-parallel", type=int, default=None)
    args = p.parse_args(argv)
    root = args.out or tempfile.mkdtemp(prefix="bench-reproduce-")
    try:
        for scale in args.scale:
            out = os.path.join(root, scale)
            shutil.rmtree(out, ignore_errors=True)
            rows = bench_scale(scale, args.parts, out, dict(engine=args.engine, max_parallel=args.max_parallel))
            print_rows(scale, rows)
    finally:
        if args.out is None:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
