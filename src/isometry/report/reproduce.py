"""`isometry reproduce`: regenerate the paper's figures with a report of checked claims."""

from __future__ import annotations

import time
from pathlib import Path

from . import core
from .core import Context, load_cached, run_parts, write_report
from .mean_field_parts import dphi_part, phase_part
from .residual_part import residual_part
from .spectrum_parts import densities_part, moments_part, universal_part
from .e4_part import e4_part
from .training_parts import training_part

PARTS = [
    ("phase", phase_part),
    ("densities", densities_part),
    ("moments", moments_part),
    ("dphi", dphi_part),
    ("universal", universal_part),
    ("residual", residual_part),
    ("training", training_part),
    ("e4", e4_part),
]

#: The sizes of a reproduction, smallest first: ``quick`` (CI), ``default``, ``full`` (the larger
#: CPU training grids of isometry 0.1) and ``paper`` (the paper's sizes for training; a GPU). The
#: training part runs the experiments at the scale of the same name (:data:`isometry.experiments.SCALES`).
SCALES = core.SCALES


def reproduce(out, *, scale: str = "default", seed: int = 0, force: bool = False, progress: bool = True,
              only: list[str] | None = None, engine: str = "local", max_parallel: int | None = None,
              address: str | None = None, num_cpus: float = 1, num_gpus: float = 0, retries: int = 2,
              log=None) -> dict:
    """Run every part (or ``only`` those named), reusing finished parts in ``out``; write the report.

    ``scale``: one of :data:`SCALES`. ``out`` may be relative (to the working directory); the
    report inside it refers to its figures relative to ``out``. The report covers every finished
    part in ``out``, including those ``only`` left out. ``engine``, ``max_parallel``, ``address``,
    ``num_cpus``, ``num_gpus``, ``retries``: how the training runs are executed
    (:func:`isometry.experiments.run_experiments`). ``log``: where status lines go (a callable
    taking one line; default: stdout).

    Returns the checks summary (also written to ``out/checks.json``), with ``wall_seconds``, the
    time this call took.
    """
    from ..sweeps import check_options

    if not isinstance(scale, str) or scale not in SCALES:
        raise ValueError(f"scale must be one of {', '.join(SCALES)}, got {scale!r}")
    opts = dict(engine=engine, max_parallel=max_parallel, address=address, num_cpus=num_cpus, num_gpus=num_gpus,
                retries=retries)
    check_options(**opts)
    names = [n for n, _ in PARTS]
    if only:
        unknown = sorted(set(only) - set(names))
        if unknown:
            raise ValueError(f"unknown report part(s) {', '.join(unknown)}; valid parts: {', '.join(names)}")
    t0 = time.perf_counter()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    parts = [(n, f) for n, f in PARTS if not only or n in only]
    ctx = Context(out=out, scale=scale, seed=int(seed), progress=progress, log=log, **opts)
    ran = {r.name: r for r in run_parts(ctx, parts, force=force)}
    # the report covers every finished part, also those --only did not run this time
    results = [ran[n] if n in ran else load_cached(ctx, n) for n in names]
    summary = write_report(ctx, [r for r in results if r is not None], wall_seconds=time.perf_counter() - t0)
    ctx.status(f"wrote {out / 'report.md'}, {out / 'index.html'}, {out / 'checks.json'}: "
               f"{summary['n_passed']}/{summary['n_checks']} checks passed")
    return summary
