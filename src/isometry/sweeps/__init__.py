"""Sweeps: run the training experiments' grids as independent, resumable tasks (issue 8).

``engine="local"`` runs them on a ``spawn`` process pool (no Ray needed); ``engine="ray"`` as Ray
core tasks with stated resources, on a local cluster (``ray.init()``) or a running one (``address``).
Every finished run is one atomically written ``DIR/runs/<run_id>.json``; re-running a sweep skips
those, so a killed driver or worker loses at most the runs in flight and no run is ever duplicated.

    >>> from isometry.sweeps import sweep_experiment
    >>> res = sweep_experiment("E2", "out/E2", quick=True, max_parallel=2)  # doctest: +SKIP
    >>> res.as_dict()                                                       # doctest: +SKIP
"""

from .engine import ENGINES, SweepResult, import_ray, pending_tasks, record_exists, run_key, run_tasks, stable_hash
from .experiments import load_grid, sweep_configs, sweep_experiment

__all__ = [
    "ENGINES", "SweepResult", "import_ray", "pending_tasks", "record_exists", "run_key", "run_tasks", "stable_hash",
    "load_grid", "sweep_configs", "sweep_experiment",
]
