"""`isometry reproduce`: regenerate the paper's figures with a report of checked claims."""

from __future__ import annotations

from pathlib import Path

from .core import Context, load_cached, run_parts, write_report
from .mean_field_parts import dphi_part, phase_part
from .spectrum_parts import densities_part, moments_part, universal_part
from .training_parts import training_part

PARTS = [
    ("phase", phase_part),
    ("densities", densities_part),
    ("moments", moments_part),
    ("dphi", dphi_part),
    ("universal", universal_part),
    ("training", training_part),
]

SCALES = ("quick", "cpu", "paper")


def reproduce(out, *, quick: bool = False, paper_scale: bool = False, seed: int = 0, force: bool = False,
              progress: bool = True, only: list[str] | None = None, engine: str = "local",
              max_parallel: int | None = None, address: str | None = None, num_cpus: float = 1,
              num_gpus: float = 0, retries: int = 2, log=print) -> dict:
    """Run every part (or ``only`` those named), reusing finished parts in ``out``; write the report.

    ``out`` may be relative (to the working directory); the report inside it refers to its figures
    relative to ``out``. The report covers every finished part in ``out``, including those
    ``only`` left out. ``engine``, ``max_parallel``, ``address``, ``num_cpus``, ``num_gpus``,
    ``retries``: how the training runs are executed (:func:`isometry.experiments.run_experiment`).

    Returns the checks summary (also written to ``out/checks.json``).
    """
    from ..sweeps import check_options

    if quick and paper_scale:
        raise ValueError("quick and paper_scale are exclusive: choose one scale")
    opts = dict(engine=engine, max_parallel=max_parallel, address=address, num_cpus=num_cpus, num_gpus=num_gpus,
                retries=retries)
    check_options(**opts)
    scale = "quick" if quick else "paper" if paper_scale else "cpu"
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    names = [n for n, _ in PARTS]
    if only:
        unknown = sorted(set(only) - set(names))
        if unknown:
            raise ValueError(f"unknown report part(s) {unknown}; valid parts: {', '.join(names)}")
    parts = [(n, f) for n, f in PARTS if not only or n in only]
    ctx = Context(out=out, scale=scale, seed=int(seed), progress=progress, **opts)
    ran = {r.name: r for r in run_parts(ctx, parts, force=force, log=log)}
    # the report covers every finished part, also those --only did not run this time
    results = [ran[n] if n in ran else load_cached(ctx, n) for n in names]
    summary = write_report(ctx, [r for r in results if r is not None])
    log(f"wrote {out / 'report.md'}, {out / 'index.html'}, {out / 'checks.json'}: "
        f"{summary['n_passed']}/{summary['n_checks']} checks passed")
    return summary
